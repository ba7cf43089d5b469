// Command etcd is etcd's own server main, built here so that the envtest and e2e tiers get
// etcd >= 3.6 from the module proxy (older etcd lacks the watch progress requests that current
// client-go informers rely on).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
