//go:build bench

// The controller benchmark: on a real API server (envtest), how long 1,000 ElastiServices take
// to converge after the controller starts, and how many reconciles a minute the controller spends
// when nothing changes. Run it with `make bench`.

package reconciler_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/activity"
	"github.com/elasti-dev/elasti/controller/internal/reconciler"
	"github.com/elasti-dev/elasti/controller/internal/scaler"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/internal/testsupport/testenv"
	"github.com/elasti-dev/elasti/internal/testsupport/workload"
)

const (
	benchCount   = 1000
	benchWorkers = 8
	benchNS      = "bench"
	benchIdle    = time.Minute
)

func TestControllerConvergence(t *testing.T) {
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
	benchParallel(t, benchCount, func(i int) error {
		name := fmt.Sprintf("app-%04d", i)
		app := workload.SampleApp(benchNS, name, map[string]string{"app": name})
		for _, o := range []client.Object{app, benchService(name), benchVirtualService(name),
			benchSlice(benchNS, names.PrivateService(name), "10.244.1.1")} {
			if err := c.Create(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
	// Baseline: how long the API server takes to accept the 1,000 ElastiServices.
	start := time.Now()
	benchParallel(t, benchCount, func(i int) error {
		return c.Create(ctx, workload.ElastiService(benchNS, fmt.Sprintf("app-%04d", i), "http://127.0.0.1:9", 3600))
	})
	createTime := time.Since(start)

	cfg.QPS, cfg.Burst = 100, 200 // elasti-controller's defaults
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &reconciler.Reconciler{
		Client: mgr.GetClient(),
		Config: reconciler.Config{
			ResolverNamespace: "elasti-system", ResolverService: "elasti-resolver", ResolverPort: 8012,
			ClusterDomain: "cluster.local", DrainDelay: 5 * time.Second, TriggerInterval: 30 * time.Second, Istio: true,
		},
		Scaler:   &scaler.Scaler{Client: mgr.GetClient(), Mapper: mgr.GetRESTMapper()},
		Activity: activity.NewStore(),
		Recorder: mgr.GetEventRecorder("elasti-controller"),
	}
	if err := r.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: 4}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	go func() { _ = mgr.Start(ctx) }()
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
		if done == benchCount {
			break
		}
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("only %d of %d ElastiServices converged in 10 minutes", done, benchCount)
		}
		time.Sleep(100 * time.Millisecond)
	}
	converge := time.Since(start)
	convergeReconciles := benchReconciles(t)

	// Nothing changes from here on: every reconcile is overhead.
	time.Sleep(benchIdle)
	idle := benchReconciles(t) - convergeReconciles

	t.Logf("%d ElastiServices (each with a Deployment, Service, VirtualService and ready endpoints)", benchCount)
	t.Logf("baseline: API server accepted the %d ElastiServices in %v", benchCount, createTime.Round(time.Millisecond))
	t.Logf("converge: all %d Ready in Serve mode %v after the controller started (%.2f x baseline), %d reconciles",
		benchCount, converge.Round(time.Millisecond), converge.Seconds()/createTime.Seconds(), int(convergeReconciles))
	t.Logf("idle: %d reconciles in the next %v with nothing changing (%.1f per minute)",
		int(idle), benchIdle, idle/benchIdle.Minutes())
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
