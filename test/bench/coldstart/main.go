// Command coldstart measures a cold start through elasti on the local cluster, against the
// baseline a user has without it: scale the same Deployment from zero directly and poll its
// Service until the first 200. It does so for three shapes of target, as users configure pods:
//
//	defaults:  a readiness probe at the kubelet's defaults (periodSeconds 10), an app that listens
//	           1.5 s after it starts
//	period 1:  the same with periodSeconds 1
//	startup:   a startupProbe and readiness probe at the defaults, an app that listens 5 s after
//	           it starts
//
// and for each:
//
//	(a) one request at zero through elasti: from sending it to its answer
//	(b) 100 concurrent requests at zero through elasti: from sending them to the slowest answer
//	baseline: from the scale-up to the first 200 of a poll every 20 ms, on a fresh connection each
//	floor: the app's own, from its scale-up (the watch sees spec.replicas 1) to its first listen
//	       (the app logs the time)
//
// Runs are interleaved (a, baseline, b, baseline, ...), each from a true zero: no pod left and
// callers' routes settled. It installs elasti's chart with helm, so it runs inside the cluster's
// network namespace: `make bench-coldstart` starts a cluster, runs it there and tears down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/endpoints"
	"github.com/elasti-dev/elasti/internal/testsupport/fakeprom"
	"github.com/elasti-dev/elasti/internal/testsupport/workload"
	"github.com/elasti-dev/elasti/test/localcluster"
)

const (
	ns      = "coldstart"
	app     = "app"
	direct  = "app-direct" // a plain Service on the same pods: the baseline's callers
	private = "app-elasti-private"
)

type options struct {
	runs     int
	shapes   string
	burst    int
	poll     time.Duration
	cooldown int
	chart    string
	helm     string
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 3, "Runs of each of (a) and (b) per shape; the baseline runs twice as often, once before each.")
	flag.StringVar(&o.shapes, "shapes", "defaults,period1,startup", "Target shapes to run, comma-separated: defaults, period1, startup.")
	flag.IntVar(&o.burst, "burst", 100, "Concurrent requests of (b).")
	flag.DurationVar(&o.poll, "poll", 20*time.Millisecond, "Baseline poll interval.")
	flag.IntVar(&o.cooldown, "cooldown", 2, "ElastiService cooldown in seconds: how soon the target goes back to zero between runs.")
	flag.StringVar(&o.chart, "chart", "charts/elasti", "Path of elasti's chart.")
	flag.StringVar(&o.helm, "helm", os.Getenv("HELM"), "helm binary.")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "coldstart:", err)
		os.Exit(1)
	}
}

// bench is the benchmark's view of the cluster.
type bench struct {
	o         options
	k8s       client.WithWatch
	prom      *fakeprom.Server
	publicURL string
	directURL string
	tl        *timeline
	api       rest.Interface // for the API server's own /metrics
	pods      kubernetes.Interface
}

// shape is a target as a user would configure it.
type shape struct {
	name        string
	listenDelay time.Duration
	readiness   *corev1.Probe
	startup     *corev1.Probe
}

func httpProbe(period, failures int32) *corev1.Probe {
	return &corev1.Probe{PeriodSeconds: period, FailureThreshold: failures,
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}}
}

var shapes = map[string]shape{
	"defaults": {name: "defaults: periodSeconds 10, listens after 1.5 s", listenDelay: 1500 * time.Millisecond, readiness: httpProbe(10, 3)},
	"period1":  {name: "periodSeconds 1, listens after 1.5 s", listenDelay: 1500 * time.Millisecond, readiness: httpProbe(1, 3)},
	"startup":  {name: "startupProbe, listens after 5 s", listenDelay: 5 * time.Second, readiness: httpProbe(10, 3), startup: httpProbe(10, 30)},
}

func run(o options) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cfg, err := config.GetConfig()
	if err != nil {
		return err
	}
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	b := &bench{o: o, k8s: c, api: cs.Discovery().RESTClient(), pods: cs}
	fmt.Printf("machine: %d CPUs, GOMAXPROCS %d, %s, load average %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), loadavg())

	if o.helm == "" {
		return errors.New("-helm (or HELM) must name the helm binary")
	}
	start := time.Now()
	// As the e2e tier installs it: no sidecar can run here, so replays go straight to pod IPs.
	out, err := exec.CommandContext(ctx, o.helm, "upgrade", "--install", "elasti", o.chart,
		"--namespace", "elasti-system", "--create-namespace", "--wait", "--timeout", "3m",
		"--set", "image.tag=dev", "--set", "image.pullPolicy=Never",
		"--set", "resolver.istio.sidecar=false", "--set", "resolver.upstream=pods",
		"--set", "controller.drainDelay=2s").CombinedOutput()
	if err != nil {
		return fmt.Errorf("helm install: %w: %s", err, out)
	}
	fmt.Printf("elasti installed in %s\n", time.Since(start).Round(100*time.Millisecond))

	if b.prom, err = fakeprom.Start(localcluster.NodeIP + ":0"); err != nil {
		return err
	}
	defer b.prom.Close()
	if err := b.deploy(ctx); err != nil {
		return err
	}
	defer func() {
		_ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}()
	b.tl = watchTimeline(ctx, c)

	var names []string
	for _, n := range strings.Split(o.shapes, ",") {
		if _, ok := shapes[strings.TrimSpace(n)]; !ok {
			return fmt.Errorf("-shapes: unknown shape %q", n)
		}
		names = append(names, strings.TrimSpace(n))
	}
	var summary []string
	for _, n := range names {
		line, err := b.runShape(ctx, shapes[n])
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		summary = append(summary, line...)
	}
	fmt.Printf("\nsummary (medians; targets: (a) <= 1.05 x floor + 50 ms, (b) <= 1.10 x floor + 150 ms, defaults: baseline / (a) >= 2)\n")
	for _, l := range summary {
		fmt.Println(l)
	}
	fmt.Printf("load average at the end %s\n", loadavg())
	return nil
}

// runShape makes the target shape s (at zero) and runs (a), (b) and the baseline on it.
func (b *bench) runShape(ctx context.Context, s shape) ([]string, error) {
	o := b.o
	if err := b.toZero(ctx); err != nil {
		return nil, err
	}
	if err := b.reshape(ctx, s); err != nil {
		return nil, err
	}
	fmt.Printf("\n== %s\n", s.name)
	// Per kind: the answer; when the target's endpoint was seen ready; the app's floor (scale-up
	// to listening); and from listening to the answer.
	var single, burst, base, singleReady, burstReady, baseReady []time.Duration
	floors := map[string][]time.Duration{}
	afterListen := map[string][]time.Duration{}
	// API server requests during each run, all of them, and the EndpointSlice LISTs among them:
	// a held request must cost none.
	apiCalls := map[string][]float64{}
	var sliceLists float64
	for i := range o.runs {
		for _, kind := range []string{"a", "baseline", "b", "baseline"} {
			if err := b.toZero(ctx); err != nil {
				return nil, fmt.Errorf("run %d %s: %w", i+1, kind, err)
			}
			calls0, lists0, err := b.apiRequests(ctx)
			if err != nil {
				return nil, err
			}
			var d time.Duration
			var t0 time.Time
			switch kind {
			case "a":
				t0, d, err = b.elasti(ctx, 1, fmt.Sprintf("a%d", i))
				single = append(single, d)
			case "b":
				t0, d, err = b.elasti(ctx, o.burst, fmt.Sprintf("b%d", i))
				burst = append(burst, d)
			default:
				t0, d, err = b.baseline(ctx)
				base = append(base, d)
			}
			if err != nil {
				return nil, fmt.Errorf("run %d %s: %w", i+1, kind, err)
			}
			calls1, lists1, err := b.apiRequests(ctx)
			if err != nil {
				return nil, err
			}
			apiCalls[kind] = append(apiCalls[kind], calls1-calls0)
			if kind != "baseline" {
				sliceLists += lists1 - lists0
			}
			ready := b.tl.first(t0, readyStep(kind == "baseline"))
			switch kind {
			case "a":
				singleReady = append(singleReady, ready)
			case "b":
				burstReady = append(burstReady, ready)
			default:
				baseReady = append(baseReady, ready)
			}
			listened, err := b.listenedAt(ctx)
			if err != nil {
				return nil, fmt.Errorf("run %d %s: %w", i+1, kind, err)
			}
			floor := ""
			if up := b.tl.at(t0, "replicas 1"); !up.IsZero() {
				floors[kind] = append(floors[kind], listened.Sub(up))
				afterListen[kind] = append(afterListen[kind], t0.Add(d).Sub(listened))
				floor = fmt.Sprintf(", floor %d ms, listen to answer %d ms", listened.Sub(up).Milliseconds(), t0.Add(d).Sub(listened).Milliseconds())
			}
			fmt.Printf("run %d %-8s %6d ms   %s%s, API requests %.0f (EndpointSlice lists %.0f)\n", i+1, kind, d.Milliseconds(),
				b.tl.since(t0, d, kind == "baseline"), floor, calls1-calls0, lists1-lists0)
		}
	}

	mb, ma, mbu := median(base), median(single), median(burst)
	fa, fb := median(floors["a"]), median(floors["b"])
	fmt.Printf("\n%-36s %s\n", "", "median   (endpoint ready)   runs")
	fmt.Printf("%-36s %6d ms (%6d ms)   %s\n", fmt.Sprintf("baseline: scale, poll every %s", o.poll), mb.Milliseconds(), median(baseReady).Milliseconds(), ms(base))
	fmt.Printf("%-36s %6d ms (%9s)   %s\n", "(a) one request at zero", ma.Milliseconds(), readyMs(singleReady), ms(single))
	fmt.Printf("%-36s %6d ms (%9s)   %s\n", fmt.Sprintf("(b) slowest of %d at zero", o.burst), mbu.Milliseconds(), readyMs(burstReady), ms(burst))
	fmt.Printf("the app's floor, scale-up to listening: (a) runs %d ms, (b) runs %d ms, baseline runs %d ms\n",
		fa.Milliseconds(), fb.Milliseconds(), median(floors["baseline"]).Milliseconds())
	// The baseline's first 200 waits for kube-proxy to program the ready endpoint; elasti's
	// replay (upstream=pods) does not.
	fmt.Printf("after the endpoint was ready: baseline %s, (a) %s, (b) %s\n",
		readyMs(minus(base, baseReady)), readyMs(minus(single, singleReady)), readyMs(minus(burst, burstReady)))
	fmt.Printf("from the app's listen to the answer: (a) %d ms, (b) %d ms, baseline %d ms\n",
		median(afterListen["a"]).Milliseconds(), median(afterListen["b"]).Milliseconds(), median(afterListen["baseline"]).Milliseconds())
	ta, tb := time.Duration(1.05*float64(fa))+50*time.Millisecond, time.Duration(1.10*float64(fb))+150*time.Millisecond
	ra, rb := float64(ma)/float64(mb), float64(mbu)/float64(mb)
	fmt.Printf("ratio to the baseline: (a) %.3f, (b) %.3f; the baseline is %.2f x (a)\n", ra, rb, float64(mb)/float64(ma))
	fmt.Printf("API server requests per run, cluster-wide (median): baseline %.0f, (a) %.0f, (b) %.0f; EndpointSlice LISTs during all (a) and (b) runs: %.0f\n",
		medianF(apiCalls["baseline"]), medianF(apiCalls["a"]), medianF(apiCalls["b"]), sliceLists)
	return []string{
		fmt.Sprintf("%-48s (a) %5d ms vs floor %5d ms: %.3f x floor, target %5d ms %s", s.name, ma.Milliseconds(), fa.Milliseconds(), float64(ma)/float64(fa), ta.Milliseconds(), verdict(ma <= ta)),
		fmt.Sprintf("%-48s (b) %5d ms vs floor %5d ms: %.3f x floor, target %5d ms %s", "", mbu.Milliseconds(), fb.Milliseconds(), float64(mbu)/float64(fb), tb.Milliseconds(), verdict(mbu <= tb)),
		fmt.Sprintf("%-48s baseline %5d ms: %.2f x (a)%s", "", mb.Milliseconds(), float64(mb)/float64(ma), twice(s, mb, ma)),
	}, nil
}

// twice says whether elasti beat the baseline by 2x, the target for the defaults shape.
func twice(s shape, base, a time.Duration) string {
	if s.startup != nil || s.readiness.PeriodSeconds != 10 {
		return ""
	}
	return ", target >= 2: " + verdict(float64(base) >= 2*float64(a))
}

// reshape gives the app, at zero, shape s's probes and listen delay.
func (b *bench) reshape(ctx context.Context, s shape) error {
	d := &appsv1.Deployment{}
	if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, d); err != nil {
		return err
	}
	patch := client.MergeFrom(d.DeepCopy())
	c := &d.Spec.Template.Spec.Containers[0]
	c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "LISTEN_DELAY" })
	c.Env = append(c.Env, corev1.EnvVar{Name: "LISTEN_DELAY", Value: s.listenDelay.String()})
	c.ReadinessProbe, c.StartupProbe = s.readiness, s.startup
	return b.k8s.Patch(ctx, d, patch)
}

// listenedAt reads, from the app's log, when its one pod started listening.
func (b *bench) listenedAt(ctx context.Context) (time.Time, error) {
	var pods corev1.PodList
	if err := b.k8s.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
		return time.Time{}, err
	}
	var latest time.Time
	for _, p := range pods.Items {
		raw, err := b.pods.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			return time.Time{}, fmt.Errorf("reading the log of %s: %w", p.Name, err)
		}
		for line := range strings.Lines(string(raw)) {
			_, at, ok := strings.Cut(strings.TrimSpace(line), "listening on :8080 at ")
			if !ok {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, at)
			if err == nil && t.After(latest) {
				latest = t
			}
		}
	}
	if latest.IsZero() {
		return latest, errors.New("no pod logged its listen")
	}
	return latest, nil
}

// readyMs is the median of ds in ms, or says that no run saw the endpoint ready before its
// answer (elasti answered from its own probe before the kubelet's Ready).
func readyMs(ds []time.Duration) string {
	if !slices.ContainsFunc(ds, func(d time.Duration) bool { return d >= 0 }) {
		return "not yet"
	}
	return fmt.Sprintf("%d ms", median(slices.DeleteFunc(slices.Clone(ds), func(d time.Duration) bool { return d < 0 })).Milliseconds())
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// deploy creates the sample app, its public Service with an ElastiService, and a plain Service
// on the same pods, and waits until the app answers.
func (b *bench) deploy(ctx context.Context) error {
	c := b.k8s
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	labels := map[string]string{"app": app}
	d := workload.SampleApp(ns, app, labels)
	d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](1) // back to zero sooner between runs
	if err := c.Create(ctx, d); err != nil {
		return err
	}
	urls := map[string]*string{app: &b.publicURL, direct: &b.directURL}
	for name, u := range urls {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
		}
		if err := c.Create(ctx, svc); err != nil {
			return err
		}
		*u = "http://" + svc.Spec.ClusterIP
	}
	if err := until(ctx, time.Minute, func() error {
		_, err := get(b.directURL+"/healthz", "", time.Second)
		return err
	}); err != nil {
		return fmt.Errorf("the app never answered: %w", err)
	}
	es := workload.ElastiService(ns, app, b.prom.URL, int32(b.o.cooldown))
	es.Spec.ProbeResponses = []v1alpha1.ProbeResponse{{Path: "/probe", Body: "canned\n"}}
	return c.Create(ctx, es)
}

// toZero lets elasti take the app to zero and waits until the next run starts from a true zero:
// no pod, the plain Service refusing connections, and the public Service reaching the resolver.
func (b *bench) toZero(ctx context.Context) error {
	b.prom.Active.Store(false)
	err := until(ctx, 2*time.Minute, func() error {
		d := &appsv1.Deployment{}
		if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, d); err != nil {
			return err
		}
		if *d.Spec.Replicas != 0 {
			return fmt.Errorf("%d replicas", *d.Spec.Replicas)
		}
		es := &v1alpha1.ElastiService{}
		if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, es); err != nil {
			return err
		}
		if es.Status.Mode != v1alpha1.ModeProxy {
			return fmt.Errorf("mode %s", es.Status.Mode)
		}
		var pods corev1.PodList
		if err := b.k8s.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods left", len(pods.Items))
		}
		// kube-proxy may keep a gone pod in its rules for a moment; a connection sent there hangs.
		ips, err := localcluster.KubeProxyTargets(ns + "/" + direct + ":http")
		if err != nil {
			return err
		}
		if len(ips) > 0 {
			return fmt.Errorf("kube-proxy still sends the plain Service to %v", ips)
		}
		var resolvers corev1.PodList
		if err := b.k8s.List(ctx, &resolvers, client.InNamespace("elasti-system"), client.MatchingLabels{"app": "elasti-resolver"}); err != nil {
			return err
		}
		ips, err = localcluster.KubeProxyTargets(ns + "/" + app + ":http")
		if err != nil {
			return err
		}
		if len(ips) == 0 {
			return errors.New("kube-proxy sends the public Service nowhere")
		}
		for _, ip := range ips {
			if !slices.ContainsFunc(resolvers.Items, func(p corev1.Pod) bool { return p.Status.PodIP == ip }) {
				return fmt.Errorf("kube-proxy still sends the public Service to %s, not a resolver", ip)
			}
		}
		if _, err := get(b.directURL+"/healthz", "", time.Second); err == nil {
			return errors.New("the plain Service still reaches a pod")
		}
		// Both resolvers must answer: try a few fresh connections.
		for range 4 {
			body, err := get(b.publicURL+"/probe", app+"."+ns, time.Second)
			if err != nil {
				return err
			}
			if body != "canned\n" {
				return fmt.Errorf("probe answered %q, not by the resolver", body)
			}
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // let the controller's last writes after the scale-down land
	return err
}

// elasti sends n concurrent GETs through the public Service, each on its own connection, and
// returns when it sent them and how long the slowest answer took.
func (b *bench) elasti(ctx context.Context, n int, prefix string) (time.Time, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	begin := make(chan struct{})
	ends := make([]time.Time, n)
	errs := make([]error, n)
	var ready, wg sync.WaitGroup
	ready.Add(n)
	for i := range n {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.publicURL+"/echo", nil)
		req.Host = app + "." + ns
		req.Header.Set("X-Request-Id", fmt.Sprintf("%s-%03d", prefix, i))
		wg.Go(func() {
			ready.Done()
			<-begin
			resp, err := c.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			ends[i], errs[i] = time.Now(), err
		})
	}
	ready.Wait()
	t0 := time.Now()
	close(begin)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return t0, 0, err
	}
	return t0, slices.MaxFunc(ends, func(a, b time.Time) int { return a.Compare(b) }).Sub(t0), nil
}

// baseline scales the Deployment from zero itself and polls the plain Service until the first
// 200. The trigger says busy meanwhile, so that elasti leaves the target up.
func (b *bench) baseline(ctx context.Context) (time.Time, time.Duration, error) {
	b.prom.Active.Store(true)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := b.k8s.Patch(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns}},
		client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":1}}`))); err != nil {
		return t0, 0, err
	}
	// A fresh connection every tick, each in its own goroutine so that a slow attempt does not
	// delay the next; the first 200 ends the poll.
	var first atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	tick := time.NewTicker(b.o.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return t0, 0, errors.New("no 200 from the plain Service within 2 minutes")
		case <-done:
			return t0, time.Duration(first.Load()), nil
		case <-tick.C:
			go func() {
				if _, err := get(b.directURL+"/echo", "", time.Second); err == nil {
					once.Do(func() { first.Store(int64(time.Since(t0))); close(done) })
				}
			}()
		}
	}
}

// get sends a GET on a fresh connection and returns the body of a 200.
func get(url, host string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(body), err
}

// until calls f every 100 ms until it succeeds or timeout passes.
func until(ctx context.Context, timeout time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// timeline records when the benchmark's watches saw each step of a cold start, to show where
// the time goes: the scale-up, the pod, its readiness, the ready endpoint.
type timeline struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	at   time.Time
	what string
}

func (t *timeline) add(what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, event{time.Now(), what})
}

func readyStep(baseline bool) string {
	if baseline {
		return "plain slice ready"
	}
	return "private slice ready"
}

// first returns when the first event of a step after t0 came, after t0; -1 if none did.
func (t *timeline) first(t0 time.Time, step string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.events {
		if e.what == step && !e.at.Before(t0) {
			return e.at.Sub(t0)
		}
	}
	return -1
}

// at returns the time of the first event of a step after t0; zero if none came.
func (t *timeline) at(t0 time.Time, step string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.events {
		if e.what == step && !e.at.Before(t0) {
			return e.at
		}
	}
	return time.Time{}
}

// since describes the first event of each step after t0, in ms after t0.
func (t *timeline) since(t0 time.Time, total time.Duration, baseline bool) string {
	var parts []string
	for _, step := range []string{"replicas 1", "pod created", "pod ready", readyStep(baseline)} {
		if d := t.first(t0, step); d >= 0 {
			parts = append(parts, fmt.Sprintf("%s +%d", step, d.Milliseconds()))
		}
	}
	return fmt.Sprintf("(%s, answered +%d)", strings.Join(parts, ", "), total.Milliseconds())
}

// watchTimeline watches the benchmark namespace's Deployment, pods and EndpointSlices.
func watchTimeline(ctx context.Context, c client.WithWatch) *timeline {
	t := &timeline{}
	watch := func(list client.ObjectList, seen func(obj kruntime.Object)) {
		go func() {
			for ctx.Err() == nil {
				w, err := c.Watch(ctx, list, client.InNamespace(ns))
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				for ev := range w.ResultChan() {
					seen(ev.Object)
				}
				w.Stop()
			}
		}()
	}
	var replicas atomic.Int32
	watch(&appsv1.DeploymentList{}, func(obj kruntime.Object) {
		if d, ok := obj.(*appsv1.Deployment); ok && d.Spec.Replicas != nil {
			if old := replicas.Swap(*d.Spec.Replicas); old == 0 && *d.Spec.Replicas > 0 {
				t.add("replicas 1")
			}
		}
	})
	var podsMu sync.Mutex
	pods := map[string]bool{} // name -> ready seen
	watch(&corev1.PodList{}, func(obj kruntime.Object) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		podsMu.Lock()
		defer podsMu.Unlock()
		wasReady, known := pods[p.Name]
		if !known {
			t.add("pod created")
		}
		ready := false
		for _, c := range p.Status.Conditions {
			ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
		}
		if ready && !wasReady {
			t.add("pod ready")
		}
		pods[p.Name] = ready
	})
	var slicesMu sync.Mutex
	readyIn := map[string]bool{} // Service -> has a ready endpoint
	watch(&discoveryv1.EndpointSliceList{}, func(obj kruntime.Object) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return
		}
		svc := s.Labels[discoveryv1.LabelServiceName]
		step := map[string]string{private: "private slice ready", direct: "plain slice ready"}[svc]
		if step == "" {
			return
		}
		ready := false
		for _, ep := range s.Endpoints {
			ready = ready || endpoints.Ready(ep) // what opens the resolver's gate
		}
		slicesMu.Lock()
		defer slicesMu.Unlock()
		if ready && !readyIn[svc] {
			t.add(step)
		}
		readyIn[svc] = ready
	})
	return t
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianF(fs []float64) float64 {
	s := slices.Clone(fs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}

// apiRequests sums the API server's request counters: every request, and the LISTs of
// EndpointSlices.
func (b *bench) apiRequests(ctx context.Context) (all, sliceLists float64, err error) {
	raw, err := b.api.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, 0, err
		}
		all += v
		if strings.Contains(line, `resource="endpointslices"`) && strings.Contains(line, `verb="LIST"`) {
			sliceLists += v
		}
	}
	return all, sliceLists, nil
}

// minus returns a[i]-b[i] for the runs where b[i] is known.
func minus(a, b []time.Duration) []time.Duration {
	var out []time.Duration
	for i := range a {
		if b[i] >= 0 {
			out = append(out, a[i]-b[i])
		}
	}
	return out
}

func ms(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprint(d.Milliseconds())
	}
	return strings.Join(parts, ", ")
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
