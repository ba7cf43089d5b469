// Package localcluster runs a real single-node Kubernetes cluster with Istio's control plane for
// elasti's e2e tier and `make demo`. Every process runs inside a network namespace the package
// creates, so no packet can reach a real network: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, containerd, kubelet, kube-proxy, CoreDNS and istiod. The binaries are built
// from the Go module proxy at pinned versions (see the Makefile's cluster-tools target); the
// container runtime comes from Debian's containerd, runc and CNI plugins.
//
// Start returns a Cluster whose methods work from any network namespace: RESTConfig and
// HTTPClient open their sockets inside the cluster's, Exec and Kubectl run commands there, and
// XDSRoutes asks istiod for a sidecar's routes. Attach gives the same handle on a running cluster.
//
// Up writes every PID it starts under Dir/run/pids, and Down ends exactly those, then the
// containers under containerd's shims for this cluster's socket, their network namespaces, the
// mounts under Dir, the cluster's cgroup tree, and the namespace itself.
package localcluster
