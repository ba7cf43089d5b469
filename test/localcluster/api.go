package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is a running local cluster, usable from a process in any network namespace: its
// methods run commands and open connections inside the cluster's namespace.
type Cluster struct {
	o Options
}

// Start checks for root, installs missing Debian packages, creates the network namespace and
// starts every component inside it. On any failure, and when ctx ends first (Ctrl-C), it tears
// down what it started before returning.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the local cluster (the e2e tier, make demo) needs root: it creates a network namespace, a bridge, iptables rules, mounts and cgroups; the unit and envtest tiers do not")
	}
	start := time.Now()
	if err := ensurePackages(ctx, o); err != nil {
		return nil, err
	}
	if missing := o.missingBinaries(); len(missing) > 0 && o.Repo != "" {
		// Cold: kube-apiserver, istiod and kube-controller-manager take minutes on two cores.
		o.logf("building %s with make cluster-tools", strings.Join(missing, ", "))
		cmd := exec.CommandContext(ctx, "make", "-C", o.Repo, "cluster-tools")
		cmd.Stdout, cmd.Stderr = o.Log, o.Log
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("make cluster-tools: %w", err)
		}
	}
	if err := CreateNetns(o); err != nil {
		return nil, err
	}
	if err := Up(ctx, o); err != nil {
		o.logf("starting failed (%v); tearing down", err)
		return nil, errors.Join(err, Down(o))
	}
	o.logf("start took %s including the namespace and package check", time.Since(start).Round(100*time.Millisecond))
	return &Cluster{o: o}, nil
}

// Attach returns a handle on a cluster that is already running, e.g. one that `make cluster-up`
// started before the e2e suite.
func Attach(o Options) (*Cluster, error) {
	if _, err := os.Stat(o.NetnsPath()); err != nil {
		return nil, fmt.Errorf("no cluster: network namespace %s is missing (run make cluster-up)", o.Netns)
	}
	if _, err := os.Stat(o.Kubeconfig()); err != nil {
		return nil, fmt.Errorf("no cluster in %s: %w", o.Dir, err)
	}
	return &Cluster{o: o}, nil
}

// Options returns the options the cluster was started with.
func (c *Cluster) Options() Options { return c.o }

// Kubeconfig is the admin kubeconfig's path. Its server, https://127.0.0.1:6443, is reachable
// only inside the namespace: use it from Exec, or use RESTConfig from anywhere.
func (c *Cluster) Kubeconfig() string { return c.o.Kubeconfig() }

// RESTConfig is the admin client configuration with a dialer into the namespace, so client-go
// and controller-runtime clients work from a test process on the host.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.o.Kubeconfig())
	if err != nil {
		return nil, err
	}
	cfg.Dial = c.o.DialContext
	return cfg, nil
}

// HTTPClient returns a client whose connections start inside the namespace, so Service
// ClusterIPs, pod IPs and cluster DNS names (target.default.svc.cluster.local) all work.
// Redirects are not followed, so tests see exactly what the server answered.
func (c *Cluster) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:       30 * time.Second,
		Transport:     &http.Transport{DialContext: c.o.DialContext, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// DialContext connects from inside the namespace, resolving names with the cluster's DNS. Use
// it for clients other than HTTP, e.g. grpc.WithContextDialer or a WebSocket dialer's transport.
func (c *Cluster) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.o.DialContext(ctx, network, addr)
}

// Command returns a command that runs inside the namespace with KUBECONFIG and PATH set to the
// cluster's, for tools such as helm, kubectl or xdsprobe.
func (c *Cluster) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := c.o.command(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.o.Kubeconfig(), "PATH="+c.o.BinDir+":"+os.Getenv("PATH"))
	return cmd
}

// Exec runs a command inside the namespace and returns its combined output.
func (c *Cluster) Exec(ctx context.Context, name string, args ...string) (string, error) {
	out, err := c.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Kubectl runs the pinned kubectl against the cluster.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.o.kubectl(ctx, args...)
}

// XDSRoutes asks istiod, as a sidecar in namespace ns would, for the RDS route named route
// (a port number such as "80") and returns xdsprobe's JSON. host, if set, keeps only the virtual
// host with that domain.
func (c *Cluster) XDSRoutes(ctx context.Context, ns, route, host string) (string, error) {
	args := []string{"-namespace", ns, "-route", route}
	if host != "" {
		args = append(args, "-host", host)
	}
	out, err := c.o.runIn(ctx, c.o.bin("xdsprobe"), args...)
	return out, err
}

// LoadImage imports an image tarball into the cluster's containerd.
func (c *Cluster) LoadImage(ctx context.Context, tarball string) error {
	abs, err := filepath.Abs(tarball)
	if err != nil {
		return err
	}
	return c.o.loadImage(ctx, abs)
}

// Down ends everything Start started and removes the namespace; see the package Down.
func (c *Cluster) Down() error { return Down(c.o) }

// Status reports which recorded processes are alive, one "name pid state" line each.
func Status(o Options) (string, error) {
	entries, err := os.ReadDir(o.pids())
	if err != nil {
		return "", fmt.Errorf("no cluster in %s", o.Dir)
	}
	var b strings.Builder
	for _, e := range entries {
		name, isPID := strings.CutSuffix(e.Name(), ".pid")
		if !isPID {
			continue // a recorded command
		}
		pid, ok := readPID(filepath.Join(o.pids(), e.Name()))
		state := "stopped"
		if ok && alive(pid) {
			state = "running"
		}
		fmt.Fprintf(&b, "%-24s %-8d %s\n", name, pid, state)
	}
	return b.String(), nil
}

// packages maps a command the cluster needs to the Debian package that ships it.
var packages = map[string]string{
	"containerd":              "containerd",
	"ctr":                     "containerd",
	"runc":                    "runc",
	"/usr/lib/cni/bridge":     "containernetworking-plugins",
	"/usr/lib/cni/host-local": "containernetworking-plugins",
	"iptables":                "iptables",
	"conntrack":               "conntrack",
	"nsenter":                 "util-linux",
	"ip":                      "iproute2",
}

// ensurePackages installs the Debian packages whose commands are missing, with one apt-get
// update first. Nothing is installed when everything is present.
func ensurePackages(ctx context.Context, o Options) error {
	var missing []string
	for cmd, pkg := range packages {
		if _, err := exec.LookPath(cmd); err != nil && !strings.Contains(strings.Join(missing, " "), pkg) {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	o.logf("installing %s with apt-get", strings.Join(missing, " "))
	if out, err := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w: %s", err, out)
	}
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "--no-install-recommends"}, missing...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install: %w: %s", err, out)
	}
	return nil
}
