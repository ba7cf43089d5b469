//go:build envtest

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	activityv1 "github.com/elasti-dev/elasti/api/activity/v1"
	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/internal/testsupport/testenv"
	"github.com/elasti-dev/elasti/resolver/internal/sources"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childArgs, when set, makes the test binary the resolver: run() with these flags (one a
// line). Each test that starts one gets what run() sets up once per process (the signal
// handler, the flags, the metrics registry) to itself, and a real exit at the end.
const childArgs = "ELASTI_RESOLVER_TEST_ARGS"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(childArgs); ok {
		os.Args = append([]string{"elasti-resolver"}, strings.Split(args, "\n")...)
		flag.CommandLine = flag.NewFlagSet(os.Args[0], flag.ExitOnError)
		main()
		os.Exit(0)
	}
	// The logger run() would set, so that envtest's client has one before any run() in this
	// process (controller-runtime complains after 30 s) and TestBinary's output is unchanged.
	ctrl.SetLogger(zap.New())
	os.Exit(m.Run())
}

// resolverProcess is a resolver started by startResolver.
type resolverProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited
	err  error         // its exit, once done is closed
}

// startResolver runs the resolver with args in a child process against the API server of
// kubeconfig. It is killed, if still running, when the test ends; its output is logged if the
// test failed.
func startResolver(t *testing.T, kubeconfig string, args ...string) *resolverProcess {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "resolver.log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &resolverProcess{cmd: exec.Command(self), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), childArgs+"="+strings.Join(args, "\n"), "KUBECONFIG="+kubeconfig)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); _ = out.Close(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("resolver output:\n%s", b)
		}
	})
	return p
}

// exited says whether the resolver exited within d, and how.
func (p *resolverProcess) exited(d time.Duration) (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(d):
		return false, nil
	}
}

// apiServer starts envtest for the test; it returns its admin's config, a client and a
// kubeconfig file for the resolver.
func apiServer(t *testing.T) (*rest.Config, client.Client, string) {
	t.Helper()
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, k8s, kubeconfig
}

// fakeController accepts the resolver's activity signals and passes them on; it returns its URL.
func fakeController(t *testing.T) (string, <-chan activityv1.Signal) {
	t.Helper()
	signals := make(chan activityv1.Signal, 100)
	ctl := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s activityv1.Signal
		_ = json.NewDecoder(r.Body).Decode(&s)
		signals <- s
		w.WriteHeader(http.StatusAccepted)
	}), ReadHeaderTimeout: time.Minute}
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = ctl.Serve(cl) }()
	t.Cleanup(func() { _ = ctl.Close() })
	return "http://" + cl.Addr().String(), signals
}

// createTarget creates namespace ns with the ElastiService web-es for Service web, and its
// private Service. With a slice, the Service has an endpoint that is never ready, so its
// requests are held. It returns the ElastiService.
func createTarget(t *testing.T, k8s client.Client, ns string, slice bool, probes ...v1alpha1.ProbeResponse) *v1alpha1.ElastiService {
	t.Helper()
	es := &v1alpha1.ElastiService{
		// The finalizer, as the controller adds it before it makes anything for Proxy mode.
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-es", Finalizers: []string{v1alpha1.Finalizer}},
		Spec: v1alpha1.ElastiServiceSpec{
			Service:        "web",
			ScaleTargetRef: v1alpha1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			Triggers: []v1alpha1.Trigger{{Type: v1alpha1.TriggerPrometheus,
				Metadata: v1alpha1.TriggerMetadata{ServerAddress: "http://prometheus.monitoring:9090"}}},
			ProbeResponses: probes,
		},
	}
	private := names.PrivateService("web")
	labels := map[string]string{v1alpha1.LabelComponent: sources.ComponentPrivateService}
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, es, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: private, Labels: labels},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}}
	if slice {
		objs = append(objs, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: private + "-x", Labels: map[string]string{
				discoveryv1.LabelServiceName: private, v1alpha1.LabelComponent: sources.ComponentPrivateService}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
			// Never ready, so never dialled: the API server refuses loopback addresses in slices
			// and these tests send nothing off the machine. Replay is covered by the handler's
			// protocol tests; here the wiring from the API server to the held request is.
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}}},
		})
	}
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	return es
}

// resolverArgs are the flags every test passes, plus extra.
func resolverArgs(t *testing.T, listen, probes, controllerURL string, extra ...string) []string {
	return append([]string{"--listen=" + listen, "--metrics-bind-address=0", "--health-probe-bind-address=" + probes,
		"--controller-url=" + controllerURL, "--token-file=" + filepath.Join(t.TempDir(), "absent"),
		// No tombstones: a forward to the public Service would ask DNS off the machine.
		"--upstream=pods", "--deleted-grace=0"}, extra...)
}

type response struct {
	code             int
	retryAfter, body string
	err              error
}

func (r response) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	return fmt.Sprintf("%d (Retry-After %q) %s", r.code, r.retryAfter, r.body)
}

// send sends GET path with host to the resolver at listen; the response arrives on the channel.
func send(listen, host, path string) <-chan response {
	got := make(chan response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+listen+path, nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- response{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		got <- response{code: res.StatusCode, retryAfter: res.Header.Get("Retry-After"), body: string(b), err: err}
	}()
	return got
}

// receive waits, boundedly, for the response to what.
func receive(t *testing.T, what string, got <-chan response) response {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("no response to %s", what)
		return response{}
	}
}

// readyz is the status /readyz answers at probes, or 0 when nothing answers.
func readyz(probes string) int {
	res, err := http.Get("http://" + probes + "/readyz")
	if err != nil {
		return 0
	}
	_ = res.Body.Close()
	return res.StatusCode
}

// TestBinary runs the resolver's run() against a real API server: it serves once its caches
// have synced, holds a request for a target at zero while signalling a fake controller,
// releases it when the ElastiService is deleted, refuses unknown hosts, and drains on SIGTERM.
func TestBinary(t *testing.T) {
	_, k8s, kubeconfig := apiServer(t)
	t.Setenv("KUBECONFIG", kubeconfig)
	ctx := context.Background()
	controllerURL, signals := fakeController(t)
	ns := "bin"
	es := createTarget(t, k8s, ns, true)

	listen, probes := freeAddr(t), freeAddr(t)
	os.Args = append([]string{"elasti-resolver"}, resolverArgs(t, listen, probes, controllerURL,
		"--shutdown-delay=200ms", "--drain-timeout=10s")...)
	flag.CommandLine = flag.NewFlagSet(os.Args[0], flag.ContinueOnError)
	done := make(chan error, 1)
	go func() { done <- run() }()

	eventually(t, "/readyz answers 200", func() bool { return readyz(probes) == http.StatusOK })

	got := send(listen, "web."+ns+".svc.cluster.local", "/held")
	select {
	case s := <-signals:
		if want := (activityv1.Signal{Namespace: ns, Name: "web-es", Held: true}); s != want {
			t.Errorf("first signal = %+v, want %+v", s, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no activity signal reached the controller")
	}
	// Deleting the ElastiService releases its held request at once: once the controller's
	// finalizer has run (here, at once), the object is gone.
	if err := k8s.Delete(ctx, es); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Patch(ctx, es, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, "the held request", got); r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "removed") {
		t.Errorf("held request after deletion = %v, want 503 saying the target was removed", r)
	}

	// An unknown host is refused, not forwarded.
	if r := receive(t, "an unknown host", send(listen, "example.com", "/")); r.code != http.StatusNotFound {
		t.Errorf("unknown host answered %v, want 404", r)
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run() after SIGTERM = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run() did not return after SIGTERM")
	}
}

// stallingAPIProxy serves the API server of cfg on a loopback address, acting as cfg's user,
// and holds every list and watch of resource until release is called; discovery and everything
// else pass. It returns a kubeconfig for it and a channel closed when the first one arrived.
func stallingAPIProxy(t *testing.T, cfg *rest.Config, resource string) (kubeconfig string, stalled <-chan struct{}, release func()) {
	t.Helper()
	apiURL, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(apiURL) },
		Transport:     rt,
		FlushInterval: -1, // watches stream
	}
	seen, gate := make(chan struct{}), make(chan struct{})
	var seenOnce, releaseOnce sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && path.Base(r.URL.Path) == resource {
			seenOnce.Do(func() { close(seen) })
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	release = func() { releaseOnce.Do(func() { close(gate) }) }
	t.Cleanup(func() { release(); srv.Close() })

	raw, err := clientcmd.Write(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"proxy": {Server: srv.URL}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"proxy": {}},
		Contexts:       map[string]*clientcmdapi.Context{"proxy": {Cluster: "proxy", AuthInfo: "proxy"}},
		CurrentContext: "proxy",
	})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig = filepath.Join(t.TempDir(), "kubeconfig-proxy")
	if err := os.WriteFile(kubeconfig, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return kubeconfig, seen, release
}

// TestNoConnectionBeforeCachesSync holds the resolver's list and watch of ElastiServices at a
// proxy in front of the API server. Until they pass, its listener refuses connections, so no
// caller waits in a backlog for a resolver that knows no host yet, and /readyz fails; then it
// answers for the hosts its caches brought.
func TestNoConnectionBeforeCachesSync(t *testing.T) {
	cfg, k8s, _ := apiServer(t)
	ns := "sync"
	createTarget(t, k8s, ns, false, v1alpha1.ProbeResponse{Path: "/healthz", StatusCode: http.StatusOK, Body: "probe ok"})
	kubeconfig, stalled, release := stallingAPIProxy(t, cfg, "elastiservices")
	listen, probes := freeAddr(t), freeAddr(t)
	p := startResolver(t, kubeconfig, resolverArgs(t, listen, probes, "http://127.0.0.1:1", "--shutdown-delay=0s")...)

	select {
	case <-stalled:
	case <-p.done:
		t.Fatalf("the resolver exited before listing ElastiServices: %v", p.err)
	case <-time.After(30 * time.Second):
		t.Fatal("the resolver never listed ElastiServices")
	}
	// The informer is waiting, so the process is past everything before WaitForCacheSync.
	answered := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			_ = c.Close()
			t.Fatal("the resolver accepted a connection before its caches synced")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial before the caches synced = %v, want connection refused", err)
		}
		switch code := readyz(probes); code {
		case 0:
		case http.StatusOK:
			t.Fatal("/readyz answered 200 before the caches synced")
		default:
			answered++
		}
	}
	// A refusal from a process that died, or before its probes are up, would prove nothing.
	select {
	case <-p.done:
		t.Fatalf("the resolver exited while its caches synced: %v", p.err)
	default:
	}
	if answered == 0 {
		t.Fatal("/readyz never answered while the caches synced")
	}

	release()
	eventually(t, "/readyz answers 200", func() bool { return readyz(probes) == http.StatusOK })
	if r := receive(t, "the probe path", send(listen, "web."+ns+".svc.cluster.local", "/healthz")); r.code != http.StatusOK || r.body != "probe ok" {
		t.Errorf("probe path of a known target = %v, want 200 probe ok", r)
	}
	if r := receive(t, "an unknown host", send(listen, "example.com", "/")); r.code != http.StatusNotFound {
		t.Errorf("unknown host answered %v, want 404", r)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if done, err := p.exited(30 * time.Second); !done || err != nil {
		t.Errorf("resolver after SIGTERM: exited %v, %v; want a clean exit", done, err)
	}
}

// TestDrainTimeoutAnswers503 holds a request for a target at zero across SIGTERM: when the
// drain timeout runs out its caller gets 503 with Retry-After, not a connection cut by the
// exit, and then the resolver exits cleanly.
func TestDrainTimeoutAnswers503(t *testing.T) {
	_, k8s, kubeconfig := apiServer(t)
	controllerURL, signals := fakeController(t)
	ns := "drain"
	createTarget(t, k8s, ns, true)
	listen, probes := freeAddr(t), freeAddr(t)
	const delay, drain = 200 * time.Millisecond, time.Second
	p := startResolver(t, kubeconfig, resolverArgs(t, listen, probes, controllerURL,
		"--shutdown-delay="+delay.String(), "--drain-timeout="+drain.String())...)
	eventually(t, "/readyz answers 200", func() bool { return readyz(probes) == http.StatusOK })

	got := send(listen, "web."+ns+".svc.cluster.local", "/held")
	select {
	case <-signals: // held
	case <-time.After(30 * time.Second):
		t.Fatal("no activity signal reached the controller")
	}
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := receive(t, "the held request", got)
	if r.err != nil || r.code != http.StatusServiceUnavailable || r.retryAfter == "" || !strings.Contains(r.body, "shutting down") {
		t.Errorf("held request at the drain timeout = %v, want 503 with Retry-After saying the resolver is shutting down", r)
	}
	// Held through the whole drain, not refused at SIGTERM.
	if waited := time.Since(sent); waited < delay+drain {
		t.Errorf("answered %v after SIGTERM, before the shutdown delay and drain timeout (%v)", waited, delay+drain)
	}
	if done, err := p.exited(30 * time.Second); !done || err != nil {
		t.Errorf("resolver after the drain: exited %v, %v; want a clean exit", done, err)
	}
}
