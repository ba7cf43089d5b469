// Command elasti-cluster starts and stops the local cluster of the e2e tier and `make demo`:
//
//	elasti-cluster up                   create the network namespace and start everything inside it
//	elasti-cluster down                 stop everything it started and remove the namespace
//	elasti-cluster status               list the recorded processes and whether they run
//	elasti-cluster kubeconfig           print the admin kubeconfig's path (valid inside the namespace)
//	elasti-cluster load-image TAR...    import image tarballs into the cluster's containerd
//	elasti-cluster exec -- CMD...       run CMD inside the namespace with KUBECONFIG set
//
// Ctrl-C during up tears down whatever was started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/elasti-dev/elasti/test/localcluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "elasti-cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	var o localcluster.Options
	var images string
	flag.StringVar(&o.Dir, "dir", ".cache/cluster", "State directory.")
	flag.StringVar(&o.BinDir, "bin", ".cache/cluster/bin", "Directory of the pinned binaries.")
	flag.StringVar(&o.Netns, "netns", "elasti", "Network namespace name.")
	flag.StringVar(&images, "images", "dist/images", "Directory of image tarballs to import on up.")
	flag.StringVar(&o.IstioCRDs, "istio-crds", "", "Istio CRD file.")
	flag.Parse()
	o.Log = os.Stdout
	for _, p := range []*string{&o.Dir, &o.BinDir, &images} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := flag.Args()
	if len(args) == 0 {
		return errors.New("usage: elasti-cluster [flags] up|down|status|kubeconfig|load-image TAR...|restart DAEMON...|exec -- CMD [ARGS...]")
	}
	switch args[0] {
	case "up":
		o.Images, _ = filepath.Glob(filepath.Join(images, "*.tar"))
		_, err := localcluster.Start(ctx, o)
		return err
	case "down":
		start := time.Now()
		if err := localcluster.Down(o); err != nil {
			return err
		}
		fmt.Printf("down in %s\n", time.Since(start).Round(100*time.Millisecond))
		return nil
	case "status":
		s, err := localcluster.Status(o)
		fmt.Print(s)
		return err
	case "kubeconfig":
		fmt.Println(o.Kubeconfig())
		return nil
	}
	c, err := localcluster.Attach(o)
	if err != nil {
		return err
	}
	switch args[0] {
	case "load-image":
		for _, tar := range args[1:] {
			if err := c.LoadImage(ctx, tar); err != nil {
				return err
			}
		}
		return nil
	case "restart":
		for _, name := range args[1:] {
			if err := c.Restart(ctx, name); err != nil {
				return err
			}
		}
		return nil
	case "exec":
		cmdArgs := args[1:]
		if len(cmdArgs) > 0 && cmdArgs[0] == "--" {
			cmdArgs = cmdArgs[1:]
		}
		if len(cmdArgs) == 0 {
			return errors.New("usage: elasti-cluster exec -- CMD [ARGS...]")
		}
		cmd := c.Command(ctx, cmdArgs[0], cmdArgs[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		return cmd.Run()
	}
	return fmt.Errorf("unknown command %q", args[0])
}
