package localcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Addresses inside the cluster's network namespace.
const (
	NodeIP      = "10.200.0.1"
	ServiceCIDR = "10.96.0.0/16"
	PodCIDR     = "10.244.0.0/24"
	apiserverIP = "10.96.0.1"
	nodeName    = "local-node"
)

// Options says where the cluster keeps its state and finds its binaries.
type Options struct {
	// Dir holds the cluster's state: PKI, data, logs and PIDs.
	Dir string
	// BinDir holds the pinned binaries (see the Makefile's cluster-tools target).
	BinDir string
	// Netns names the network namespace the cluster runs in.
	Netns string
	// Images are OCI or docker-archive tarballs imported into containerd.
	Images []string
	// IstioCRDs is the Istio CRD file from the pinned istio.io/api module.
	IstioCRDs string
	// Log receives progress lines.
	Log io.Writer
	// Repo is the repository root. When set, Start builds missing binaries with
	// `make cluster-tools`, which puts them in .cache/cluster/bin.
	Repo string
}

// binaries are the pinned programs the cluster runs, all in BinDir.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl", "coredns", "pilot-discovery", "xdsprobe"}

func (o Options) missingBinaries() []string {
	var missing []string
	for _, b := range binaries {
		if _, err := os.Stat(o.bin(b)); err != nil {
			missing = append(missing, b)
		}
	}
	return missing
}

func (o Options) run() string         { return filepath.Join(o.Dir, "run") }
func (o Options) pki() string         { return filepath.Join(o.run(), "pki") }
func (o Options) logs() string        { return filepath.Join(o.run(), "logs") }
func (o Options) pids() string        { return filepath.Join(o.run(), "pids") }
func (o Options) sock() string        { return filepath.Join(o.run(), "containerd", "containerd.sock") }
func (o Options) bin(n string) string { return filepath.Join(o.BinDir, n) }

// Kubeconfig is the admin kubeconfig, valid inside the namespace.
func (o Options) Kubeconfig() string { return filepath.Join(o.pki(), "admin.kubeconfig") }

// NetnsPath is the namespace's bind mount, for nsenter --net.
func (o Options) NetnsPath() string { return "/var/run/netns/" + o.Netns }

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

// CreateNetns makes the cluster's network namespace with loopback, the node address and the
// pod bridge. It runs in the host namespace; everything else runs inside.
func CreateNetns(o Options) error {
	if os.Geteuid() != 0 {
		return errors.New("the e2e tier and make demo need root: they create a network namespace, bridges, iptables rules, mounts and cgroups")
	}
	if _, err := os.Stat(o.NetnsPath()); err == nil {
		return fmt.Errorf("network namespace %s exists: run the cluster's down command first", o.Netns)
	}
	steps := [][]string{
		{"ip", "netns", "add", o.Netns},
		{"ip", "-n", o.Netns, "link", "set", "lo", "up"},
		{"ip", "-n", o.Netns, "addr", "add", NodeIP + "/32", "dev", "lo"},
		{"ip", "-n", o.Netns, "link", "add", "cni0", "type", "bridge"},
		{"ip", "-n", o.Netns, "link", "set", "cni0", "up"},
		// Locally sent packets to Service IPs need a route to reach kube-proxy's DNAT; with no
		// uplink there is no default route to carry them.
		{"ip", "-n", o.Netns, "route", "replace", ServiceCIDR, "dev", "cni0"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	return nil
}

// Up starts the cluster inside the namespace that CreateNetns made. It may run in any network
// namespace: every process is started with nsenter and every check dials from inside.
func Up(ctx context.Context, o Options) error {
	start := time.Now()
	for _, d := range []string{o.logs(), o.pids(), o.pki()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if missing := o.missingBinaries(); len(missing) > 0 {
		return fmt.Errorf("missing %s in %s: run 'make cluster-tools'", strings.Join(missing, ", "), o.BinDir)
	}
	for _, kv := range [][2]string{{"net/ipv4/ip_forward", "1"}, {"net/ipv4/conf/all/route_localnet", "1"}} {
		if err := o.sysctl(kv[0], kv[1]); err != nil {
			return fmt.Errorf("sysctl %s: %w", kv[0], err)
		}
	}
	_ = run("modprobe", "br_netfilter")
	_ = o.sysctl("net/bridge/bridge-nf-call-iptables", "1")
	if _, err := os.Stat("/sys/fs/cgroup/hugetlb"); err != nil {
		// kubelet on a cgroup v1 host expects every controller mounted.
		_ = os.MkdirAll("/sys/fs/cgroup/hugetlb", 0o755)
		_ = run("mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", "/sys/fs/cgroup/hugetlb")
	}
	if err := o.makeCgroupRoot(); err != nil {
		return fmt.Errorf("cgroup root: %w", err)
	}
	if err := writePKI(o.pki(), net.ParseIP(NodeIP), net.ParseIP(apiserverIP)); err != nil {
		return err
	}
	if err := os.WriteFile(o.Kubeconfig(), []byte(kubeconfig(o.pki(), "https://127.0.0.1:6443")), 0o600); err != nil {
		return err
	}
	if err := writeConfigs(o); err != nil {
		return err
	}
	p, r := o.pki(), o.run()

	if err := o.start(ctx, "etcd", o.bin("etcd"), "--name=local", "--data-dir="+r+"/etcd",
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=local=http://127.0.0.1:2380", "--listen-metrics-urls=http://127.0.0.1:2381",
		"--unsafe-no-fsync"); err != nil {
		return err
	}
	if err := o.wait(ctx, "etcd", "http://127.0.0.1:2379/health"); err != nil {
		return err
	}
	if err := o.start(ctx, "kube-apiserver", o.bin("kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--advertise-address="+NodeIP, "--secure-port=6443",
		"--tls-cert-file="+p+"/apiserver.crt", "--tls-private-key-file="+p+"/apiserver.key", "--client-ca-file="+p+"/ca.crt",
		"--service-account-key-file="+p+"/sa.pub", "--service-account-signing-key-file="+p+"/sa.key",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local", "--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--kubelet-client-certificate="+p+"/admin.crt", "--kubelet-client-key="+p+"/admin.key",
		"--kubelet-certificate-authority="+p+"/ca.crt", "--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=Node,RBAC", "--service-cluster-ip-range="+ServiceCIDR,
		"--allow-privileged=true", "--enable-priority-and-fairness=false"); err != nil {
		return err
	}
	if err := o.wait(ctx, "kube-apiserver", "https://127.0.0.1:6443/readyz"); err != nil {
		return err
	}
	kc := o.Kubeconfig()
	if err := o.start(ctx, "kube-controller-manager", o.bin("kube-controller-manager"), "--kubeconfig="+kc,
		"--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc, "--bind-address=127.0.0.1",
		"--leader-elect=false", "--use-service-account-credentials=true", "--service-account-private-key-file="+p+"/sa.key",
		"--root-ca-file="+p+"/ca.crt", "--cluster-signing-cert-file="+p+"/ca.crt", "--cluster-signing-key-file="+p+"/ca.key",
		"--allocate-node-cidrs=true", "--cluster-cidr=10.244.0.0/16", "--node-cidr-mask-size=24",
		"--service-cluster-ip-range="+ServiceCIDR, "--controllers=*"); err != nil {
		return err
	}
	if err := o.start(ctx, "kube-scheduler", o.bin("kube-scheduler"), "--kubeconfig="+kc,
		"--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc, "--bind-address=127.0.0.1", "--leader-elect=false"); err != nil {
		return err
	}
	if err := o.start(ctx, "containerd", "containerd", "--config="+r+"/containerd/config.toml"); err != nil {
		return err
	}
	if err := o.waitFunc(ctx, "containerd", func() error { _, err := o.ctr(ctx, "version"); return err }); err != nil {
		return err
	}
	for _, img := range o.Images {
		if err := o.loadImage(ctx, img); err != nil {
			return err
		}
	}
	if err := o.start(ctx, "kubelet", o.bin("kubelet"), "--config="+r+"/kubelet/config.yaml", "--kubeconfig="+kc,
		"--hostname-override="+nodeName, "--node-ip="+NodeIP, "--root-dir="+r+"/kubelet/root", "--cert-dir="+r+"/kubelet/pki"); err != nil {
		return err
	}
	if err := o.start(ctx, "kube-proxy", o.bin("kube-proxy"), "--config="+r+"/kube-proxy.yaml"); err != nil {
		return err
	}
	if err := o.start(ctx, "coredns", o.bin("coredns"), "-conf", r+"/coredns/Corefile"); err != nil {
		return err
	}
	if err := o.waitFunc(ctx, "node Ready", func() error {
		out, err := o.kubectl(ctx, "get", "node", nodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return fmt.Errorf("node not ready: %w", err)
		}
		if strings.TrimSpace(out) != "True" {
			return fmt.Errorf("node not ready: %s", out)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := o.startIstiod(ctx); err != nil {
		return err
	}
	o.logf("cluster up in %s; kubeconfig %s (inside netns %s)", time.Since(start).Round(100*time.Millisecond), kc, o.Netns)
	return nil
}

func (o Options) startIstiod(ctx context.Context) error {
	if _, err := o.kubectl(ctx, "apply", "--server-side", "-f", o.IstioCRDs); err != nil {
		return err
	}
	if _, err := o.kubectl(ctx, "wait", "--for=condition=established", "crd", "--all", "--timeout=60s"); err != nil {
		return err
	}
	if _, err := o.kubectl(ctx, "create", "namespace", "istio-system"); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		return err
	}
	d := filepath.Join(o.run(), "istiod")
	// Not tied to ctx: the daemon outlives Up, and Down ends it by PID.
	cmd := o.command(context.Background(), o.bin("pilot-discovery"), "discovery", "--kubeconfig="+o.Kubeconfig(),
		"--meshConfig="+d+"/mesh", "--networksConfig="+d+"/meshNetworks",
		"--httpAddr=127.0.0.1:8080", "--grpcAddr=127.0.0.1:15010", "--secureGRPCAddr=127.0.0.1:15012",
		"--monitoringAddr=127.0.0.1:15014", "--httpsAddr=127.0.0.1:15017", "--ctrlz_address=127.0.0.1")
	cmd.Dir = d
	cmd.Env = append(os.Environ(), "POD_NAMESPACE=istio-system", "POD_NAME=istiod-local", "REVISION=default",
		"PILOT_ENABLE_ANALYSIS=false", "INJECTION_WEBHOOK_CONFIG_NAME=", "VALIDATION_WEBHOOK_CONFIG_NAME=",
		"ISTIOD_CUSTOM_HOST=istiod.istio-system.svc")
	if err := o.spawn("istiod", cmd); err != nil {
		return err
	}
	return o.wait(ctx, "istiod", "http://127.0.0.1:8080/ready")
}

func (o Options) ctr(ctx context.Context, args ...string) (string, error) {
	return o.runIn(ctx, "ctr", append([]string{"--address", o.sock(), "-n", "k8s.io"}, args...)...)
}

// loadImage imports an OCI or docker-archive tarball into the namespace containerd gives to
// Kubernetes. Images must carry fully qualified names, since pods say imagePullPolicy: Never.
func (o Options) loadImage(ctx context.Context, tarball string) error {
	_, err := o.ctr(ctx, "images", "import", "--all-platforms", tarball)
	return err
}

func (o Options) kubectl(ctx context.Context, args ...string) (string, error) {
	return o.runIn(ctx, o.bin("kubectl"), append([]string{"--kubeconfig", o.Kubeconfig()}, args...)...)
}

// start runs a daemon inside the namespace, detached from this process, logging to
// logs/<name>.log, and records its PID.
func (o Options) start(_ context.Context, name, bin string, args ...string) error {
	return o.spawn(name, o.command(context.Background(), bin, args...))
}

func (o Options) spawn(name string, cmd *exec.Cmd) error {
	logf, err := os.Create(filepath.Join(o.logs(), name+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr, cmd.Stdin = logf, logf, nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := o.recordCommand(name, cmd); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(o.pids(), name+".pid"), []byte(strconv.Itoa(pid)), 0o644)
}

// wait polls url until it answers 200, for at most a minute.
func (o Options) wait(ctx context.Context, name, url string) error {
	cert, err := tls.LoadX509KeyPair(o.pki()+"/admin.crt", o.pki()+"/admin.key")
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:     o.DialContext,
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}, //nolint:gosec // loopback inside a private netns
	}}
	return o.waitFunc(ctx, name, func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %d", url, resp.StatusCode)
		}
		return nil
	})
}

func (o Options) waitFunc(ctx context.Context, name string, check func() error) error {
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			o.logf("  %-24s ready in %s", name, time.Since(start).Round(10*time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after 2m (see %s): %w", name, o.logs(), err)
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
