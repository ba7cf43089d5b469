// Command elasti-cluster starts and stops the local cluster of the e2e tier and `make demo`:
//
//	elasti-cluster up      create the network namespace and start everything inside it
//	elasti-cluster down    stop everything it started and remove the namespace
//	elasti-cluster exec -- CMD...   run CMD inside the namespace with KUBECONFIG set
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

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
	flag.StringVar(&images, "images", "dist/images", "Directory of image tarballs to import.")
	flag.StringVar(&o.IstioCRDs, "istio-crds", "", "Istio CRD file.")
	inside := flag.Bool("inside", false, "Internal: already inside the namespace.")
	flag.Parse()
	o.Log = os.Stdout
	for _, p := range []*string{&o.Dir, &o.BinDir, &images} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	o.Images, _ = filepath.Glob(filepath.Join(images, "*.tar"))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch flag.Arg(0) {
	case "up":
		if *inside {
			return localcluster.Up(ctx, o)
		}
		if err := localcluster.CreateNetns(o); err != nil {
			return err
		}
		// Re-run inside the namespace, so every process and every readiness check is there.
		self, err := os.Executable()
		if err != nil {
			return err
		}
		args := append([]string{"--net=" + o.NetnsPath(), self, "-inside"}, os.Args[1:]...)
		cmd := exec.CommandContext(ctx, "nsenter", args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "elasti-cluster: starting failed; tearing down")
			return errors.Join(err, localcluster.Down(o))
		}
		return nil
	case "down":
		return localcluster.Down(o)
	case "exec":
		if flag.NArg() < 2 {
			return errors.New("usage: elasti-cluster exec -- CMD [ARGS...]")
		}
		cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + o.NetnsPath()}, flag.Args()[1:]...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+o.Kubeconfig())
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		return cmd.Run()
	default:
		return fmt.Errorf("usage: elasti-cluster [flags] up|down|exec -- CMD")
	}
}
