//go:build bench

// The controller benchmark: on a real API server (envtest), how long 1,000 and 10,000
// ElastiServices take to converge after the controller starts, with how many API writes and how
// much memory; how many reconciles a minute the controller spends when nothing changes; and what
// a restarted controller writes when everything is already right. Run it with `make bench`;
// BENCH_CONTROLLER_COUNTS=1000 runs one size.

package reconciler_test

import (
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/activity"
	"github.com/elasti-dev/elasti/controller/internal/reconciler"
	"github.com/elasti-dev/elasti/controller/internal/scaler"
	"github.com/elasti-dev/elasti/internal/testsupport/testenv"
	"github.com/elasti-dev/elasti/internal/testsupport/workload"
)

const (
	benchWorkers = 8
	benchNS      = "bench"
	benchIdle    = time.Minute
)

func TestControllerConvergence(t *testing.T) {
	counts := []int{1000, 10000}
	if v := os.Getenv("BENCH_CONTROLLER_COUNTS"); v != "" {
		counts = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				t.Fatalf("BENCH_CONTROLLER_COUNTS: %q is not a positive count", f)
			}
			counts = append(counts, n)
		}
	}
	ctrl.SetLogger(logr.Discard())
	t.Logf("%d cores; the controller's defaults: 4 concurrent reconciles, 100 QPS / 200 burst to the API server", goruntime.NumCPU())
	for i, n := range counts {
		benchConverge(t, n, i == 0)
	}
}

// benchConverge runs one size on its own API server.
func benchConverge(t *testing.T, count int, idleToo bool) {
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for _, ns := range []string{benchNS, "elasti-system"} {
		benchMust(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	benchMust(t, c.Create(ctx, benchSlice("elasti-system", "elasti-resolver", "10.0.0.5")))

	// The workloads, Services, routes and ready endpoints exist first, as in a cluster where
	// elasti is installed after the apps; their creation is not timed.
	benchParallel(t, count, func(i int) error {
		name := fmt.Sprintf("app-%05d", i)
		app := workload.SampleApp(benchNS, name, map[string]string{"app": name})
		for _, o := range []client.Object{app, benchService(name), benchVirtualService(name), benchSlice(benchNS, name, "10.244.1.1")} {
			if err := c.Create(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
	// Baseline: how long the API server takes to accept the ElastiServices.
	start := time.Now()
	benchParallel(t, count, func(i int) error {
		return c.Create(ctx, workload.ElastiService(benchNS, fmt.Sprintf("app-%05d", i), "http://127.0.0.1:9", 3600))
	})
	createTime := time.Since(start)

	cfg.QPS, cfg.Burst = 100, 200 // elasti-controller's defaults
	heapBefore := benchHeap()
	var writes atomic.Int64
	stop, err := benchController(ctx, cfg, scheme, &writes)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	before := benchReconciles(t)
	benchWaitConverged(t, ctx, c, count, start)
	converge := time.Since(start)
	convergeReconciles := benchReconciles(t) - before
	convergeWrites := writes.Load()
	heap := benchHeap() - heapBefore

	t.Logf("%d ElastiServices (each with a Deployment, Service, VirtualService and ready endpoints)", count)
	t.Logf("  baseline: the API server accepted the %d ElastiServices in %v", count, createTime.Round(time.Millisecond))
	t.Logf("  converge: all %d Ready in Serve mode %v after the controller started (%.2f x baseline), %d reconciles, %d API writes (%.2f each)",
		count, converge.Round(time.Millisecond), converge.Seconds()/createTime.Seconds(), int(convergeReconciles), convergeWrites, float64(convergeWrites)/float64(count))
	t.Logf("  memory: the controller's heap grew %.1f MiB (%.1f KiB per ElastiService), after a GC, with its caches full", float64(heap)/(1<<20), float64(heap)/1024/float64(count))

	if idleToo {
		// Nothing changes from here on: every reconcile is overhead.
		mark := benchReconciles(t)
		time.Sleep(benchIdle)
		idle := benchReconciles(t) - mark
		t.Logf("  idle: %d reconciles in the next %v with nothing changing (%.1f per minute)", int(idle), benchIdle, idle/benchIdle.Minutes())
	}

	// A restart (a new leader, an upgrade): the new controller reconciles everything once and
	// must find it right.
	stop()
	writes.Store(0)
	mark := benchReconciles(t)
	start = time.Now()
	if _, err := benchController(ctx, cfg, scheme, &writes); err != nil {
		t.Fatal(err)
	}
	for benchReconciles(t)-mark < float64(count) {
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("the restarted controller reconciled %d of %d in 10 minutes", int(benchReconciles(t)-mark), count)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resync := time.Since(start)
	time.Sleep(5 * time.Second) // anything a first pass requeued
	t.Logf("  restart: a new controller reconciled all %d in %v and wrote %d times to the API server",
		count, resync.Round(time.Millisecond), writes.Load())
}

// benchController starts a manager running the reconciler with the controller's defaults, its
// client counting writes, and returns what stops it.
func benchController(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, writes *atomic.Int64) (func(), error) {
	// The cache as elasti-controller has it (cacheOptions): workloads kept as their replica counts.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}: {Transform: scaler.KeepReplicas}, &appsv1.StatefulSet{}: {Transform: scaler.KeepReplicas},
		}},
		NewClient: func(cfg *rest.Config, opts client.Options) (client.Client, error) {
			c, err := client.NewWithWatch(cfg, opts)
			if err != nil {
				return nil, err
			}
			count := func() { writes.Add(1) }
			return interceptor.NewClient(c, interceptor.Funcs{
				Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
					count()
					return c.Create(ctx, o, opts...)
				},
				Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
					count()
					return c.Update(ctx, o, opts...)
				},
				Patch: func(ctx context.Context, c client.WithWatch, o client.Object, p client.Patch, opts ...client.PatchOption) error {
					count()
					return c.Patch(ctx, o, p, opts...)
				},
				Delete: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
					count()
					return c.Delete(ctx, o, opts...)
				},
				SubResourcePatch: func(ctx context.Context, c client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
					count()
					return c.SubResource(sub).Patch(ctx, o, p, opts...)
				},
				SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, o client.Object, opts ...client.SubResourceUpdateOption) error {
					count()
					return c.SubResource(sub).Update(ctx, o, opts...)
				},
			}), nil
		}})
	if err != nil {
		return nil, err
	}
	r := &reconciler.Reconciler{
		Client: mgr.GetClient(),
		Config: reconciler.Config{
			ResolverNamespace: "elasti-system", ResolverService: "elasti-resolver", ResolverPort: 8012,
			ClusterDomain: "cluster.local", DrainDelay: 5 * time.Second, TriggerInterval: 30 * time.Second, Istio: true,
		},
		Scaler:   &scaler.Scaler{Client: mgr.GetClient(), Mapper: mgr.GetRESTMapper(), Cache: mgr.GetClient()},
		Activity: activity.NewStore(),
		Recorder: mgr.GetEventRecorder("elasti-controller"),
	}
	// Every manager after the first in this process reuses the controller's name in the metrics.
	if err := r.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: 4, SkipNameValidation: ptr.To(true)}); err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Start(mctx)
	}()
	return func() { cancel(); <-done }, nil
}

func benchWaitConverged(t *testing.T, ctx context.Context, c client.Client, count int, start time.Time) {
	t.Helper()
	for {
		var list v1alpha1.ElastiServiceList
		benchMust(t, c.List(ctx, &list, client.InNamespace(benchNS)))
		done := 0
		for _, es := range list.Items {
			if cond := meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady); cond != nil &&
				cond.Status == metav1.ConditionTrue && es.Status.ObservedGeneration == es.Generation && es.Status.Mode == v1alpha1.ModeServe {
				done++
			}
		}
		if done == count {
			return
		}
		if time.Since(start) > 15*time.Minute {
			t.Fatalf("only %d of %d ElastiServices converged in 15 minutes", done, count)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// benchHeap is the process's live heap after a full collection.
func benchHeap() int64 {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// reconciles reads controller-runtime's reconcile counter for the elastiservice controller.
func benchReconciles(t *testing.T) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "elastiservice" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

func benchParallel(t *testing.T, n int, fn func(int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range benchWorkers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func benchMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func benchService(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNS},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
}

func benchVirtualService(name string) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNS}}
	vs.Spec.Hosts = []string{name}
	vs.Spec.Http = []*apinetworking.HTTPRoute{{Route: []*apinetworking.HTTPRouteDestination{
		{Destination: &apinetworking.Destination{Host: name}},
	}}}
	return vs
}

func benchSlice(ns, service, ip string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: service + "-bench", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
}
