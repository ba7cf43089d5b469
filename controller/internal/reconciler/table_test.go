package reconciler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/activity"
	"github.com/elasti-dev/elasti/controller/internal/scaler"
	"github.com/elasti-dev/elasti/controller/internal/triggers"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/internal/routesig"
)

// The reconciler's unit tier, in the style of a table test of a Knative reconciler: given these
// objects and this clock, one Reconcile makes these writes, in this order, and asks to be
// requeued after this long. The envtest suites show the same against a real API server, slowly;
// these rows show the order of actions that make before break depends on.

var tableNow = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// fakeScaler stands for /scale, and logs its writes into the same log as the client's.
type fakeScaler struct {
	replicas int32
	log      *[]string
}

func (s *fakeScaler) Get(context.Context, string, v1alpha1.ScaleTargetRef) (scaler.Scale, error) {
	return scaler.Scale{Spec: s.replicas, Status: s.replicas}, nil
}

func (s *fakeScaler) Set(_ context.Context, _ string, _ v1alpha1.ScaleTargetRef, _ scaler.Scale, n int32) error {
	*s.log = append(*s.log, fmt.Sprintf("scale %d", n))
	s.replicas = n
	return nil
}

func (s *fakeScaler) PauseAutoscaler(context.Context, string, *v1alpha1.Autoscaler) error { return nil }
func (s *fakeScaler) ResumeAutoscaler(context.Context, string, *v1alpha1.Autoscaler) error {
	return nil
}

// fakeRecorder logs events.
type fakeRecorder struct{ log *[]string }

func (r fakeRecorder) Eventf(_ runtime.Object, _ runtime.Object, _, reason, _, _ string, _ ...any) {
	*r.log = append(*r.log, "event "+reason)
}

// indexes collects the reconciler's field indexes for the fake client builder.
type indexes struct{ b *fake.ClientBuilder }

func (i indexes) IndexField(_ context.Context, obj client.Object, field string, fn client.IndexerFunc) error {
	i.b.WithIndex(obj, field, fn)
	return nil
}

// world is the objects of one row: the ElastiService shop/shop for Service shop, its target's
// ready endpoints, the resolver's, and a VirtualService routing to it.
type world struct {
	mode          v1alpha1.Mode
	modeSince     time.Duration // before tableNow
	idle          time.Duration // since the last activity
	replicas      int32
	ready         int
	resolvers     int
	nonHTTP       bool
	triggersError bool
	// noFinalizer is a new ElastiService, or one that has never wanted Proxy mode.
	noFinalizer bool
	// proxyAge is how long ago the proxy Service was made; none when zero.
	proxyAge time.Duration
}

func (w world) objects() []client.Object {
	es := &v1alpha1.ElastiService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop", Finalizers: []string{v1alpha1.Finalizer},
			CreationTimestamp: metav1.NewTime(tableNow.Add(-24 * time.Hour)), Generation: 1},
		Spec: v1alpha1.ElastiServiceSpec{
			Service:           "shop",
			ScaleTargetRef:    v1alpha1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "shop"},
			MinTargetReplicas: 2,
			CooldownPeriod:    300,
			WakeTimeout:       &metav1.Duration{Duration: 5 * time.Minute},
		},
		Status: v1alpha1.ElastiServiceStatus{Mode: w.mode, LastActivityTime: &metav1.Time{Time: tableNow.Add(-w.idle)}},
	}
	if w.mode != "" {
		es.Status.ModeSince = &metav1.Time{Time: tableNow.Add(-w.modeSince)}
	}
	ports := []corev1.ServicePort{{Name: "http", Port: 80}}
	if w.nonHTTP {
		ports = append(ports, corev1.ServicePort{Name: "tcp-db", Port: 5432})
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "shop"}, Ports: ports}}
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop"}}
	vs.Spec.Hosts = []string{"shop"}
	vs.Spec.Http = []*apinetworking.HTTPRoute{{Route: []*apinetworking.HTTPRouteDestination{
		{Destination: &apinetworking.Destination{Host: "shop"}}}}}
	if w.noFinalizer {
		es.Finalizers = nil
	}
	objs := []client.Object{es, svc, vs,
		slice("shop", "shop", w.ready, "10.0.1."),
		slice("elasti-system", "elasti-resolver", w.resolvers, "10.0.9.")}
	if w.proxyAge > 0 {
		objs = append(objs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: names.ProxyService("shop"),
			CreationTimestamp: metav1.NewTime(tableNow.Add(-w.proxyAge))}})
	}
	return objs
}

func slice(ns, service string, n int, prefix string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: service + "-abcde",
			Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i := range n {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("%s%d", prefix, i+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("%s-%d", service, i)},
		})
	}
	return s
}

// reconcileOnce runs one Reconcile of shop/shop in w and returns the writes it made, in order:
// "create|patch|update|delete Kind name", "status Mode", "scale N", "event Reason".
func reconcileOnce(t *testing.T, w world) ([]string, ctrl.Result, *v1alpha1.ElastiService) {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, networkingv1.AddToScheme, securityv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	var log []string
	kind := func(o client.Object) string {
		gvk, err := apiutil.GVKForObject(o, scheme)
		if err != nil {
			return fmt.Sprintf("%T", o)
		}
		return gvk.Kind
	}
	write := func(verb string, o client.Object) { log = append(log, verb+" "+kind(o)+" "+o.GetName()) }
	key, err := routesig.New([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{
		Config: Config{ResolverNamespace: "elasti-system", ResolverService: "elasti-resolver", ResolverPort: 8012,
			ClusterDomain: "cluster.local", DrainDelay: 5 * time.Second, TriggerInterval: 30 * time.Second,
			Istio: true, AuthorizationPolicies: true, RouteSigner: key,
			ResolverPrincipal: "cluster.local/ns/elasti-system/sa/elasti-resolver"},
		Scaler:   &fakeScaler{replicas: w.replicas, log: &log},
		Activity: activity.NewStore(),
		Recorder: fakeRecorder{log: &log},
		Clock:    clocktesting.NewFakePassiveClock(tableNow),
		Metrics:  NewMetrics(),
		Triggers: func(context.Context, *v1alpha1.ElastiService, time.Duration) triggers.Result {
			if w.triggersError {
				return triggers.Result{Err: fmt.Errorf("connection refused"), Reason: "QueryFailed", Message: "the query failed"}
			}
			return triggers.Result{}
		},
	}
	b := fake.NewClientBuilder().WithScheme(scheme).WithObjects(w.objects()...).WithStatusSubresource(&v1alpha1.ElastiService{})
	if err := r.setupIndexes(context.Background(), indexes{b}); err != nil {
		t.Fatal(err)
	}
	r.Client = b.WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
			write("create", o)
			return c.Create(ctx, o, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
			write("update", o)
			return c.Update(ctx, o, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, o client.Object, p client.Patch, opts ...client.PatchOption) error {
			write("patch", o)
			return c.Patch(ctx, o, p, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
			write("delete", o)
			return c.Delete(ctx, o, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if es, ok := o.(*v1alpha1.ElastiService); ok && sub == "status" {
				log = append(log, "status "+string(es.Status.Mode))
			}
			return c.SubResource(sub).Patch(ctx, o, p, opts...)
		},
	}).Build()
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: "shop"}})
	if err != nil {
		t.Fatalf("Reconcile: %v (writes %v)", err, log)
	}
	es := &v1alpha1.ElastiService{}
	if err := r.Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: "shop"}, es); err != nil {
		t.Fatal(err)
	}
	return log, res, es
}

func TestReconcileTable(t *testing.T) {
	// What Proxy mode needs, made when it is first wanted (none exists in a row's world but the
	// proxy Service, where it says).
	setup := []string{"create Service shop-elasti-private", "create Service shop-elasti-proxy",
		"create EndpointSlice shop-elasti-proxy-ipv4", "create DestinationRule shop-elasti-proxy"}
	toResolver := []string{"patch VirtualService shop", "create EndpointSlice shop-elasti-ipv4"}
	tests := map[string]struct {
		world world
		// want is the writes in order; a nil want is not checked (only the other fields).
		want        []string
		wantMode    v1alpha1.Mode
		wantReady   metav1.ConditionStatus
		wantRequeue time.Duration
		// wantFinalizer is whether the ElastiService has elasti's finalizer after the pass.
		wantFinalizer *bool
	}{
		"a new ElastiService of an active target: its status alone, no finalizer, no event": {
			world:         world{idle: time.Minute, replicas: 2, ready: 2, resolvers: 2, noFinalizer: true},
			want:          []string{"status Serve"},
			wantMode:      v1alpha1.ModeServe,
			wantReady:     metav1.ConditionTrue,
			wantRequeue:   4 * time.Minute,
			wantFinalizer: ptr.To(false),
		},
		"active: Serve, nothing routed to the resolver, back when the cooldown ends": {
			world:       world{mode: v1alpha1.ModeServe, modeSince: time.Hour, idle: time.Minute, replicas: 2, ready: 2, resolvers: 2},
			want:        []string{"status Serve"},
			wantMode:    v1alpha1.ModeServe,
			wantReady:   metav1.ConditionTrue,
			wantRequeue: 4 * time.Minute,
		},
		"idle for the first time: the finalizer, then what Proxy needs; callers stay until istiod can have pushed it": {
			world:         world{mode: v1alpha1.ModeServe, modeSince: time.Hour, idle: time.Hour, replicas: 2, ready: 2, resolvers: 2, noFinalizer: true},
			want:          append(append([]string{"patch ElastiService shop"}, setup...), "status Serve"),
			wantMode:      v1alpha1.ModeServe,
			wantRequeue:   2 * time.Second,
			wantFinalizer: ptr.To(true),
		},
		"idle, the proxy Service made a second ago: callers stay for the rest of the delay": {
			world:       world{mode: v1alpha1.ModeServe, modeSince: time.Hour, idle: time.Hour, replicas: 2, ready: 2, resolvers: 2, proxyAge: time.Second},
			want:        []string{"create Service shop-elasti-private", "patch Service shop-elasti-proxy", "create EndpointSlice shop-elasti-proxy-ipv4", "create DestinationRule shop-elasti-proxy", "status Serve"},
			wantMode:    v1alpha1.ModeServe,
			wantRequeue: time.Second,
		},
		"idle in Serve, the proxy Service made long ago: routes to the resolver first, replicas kept, back after the drain delay": {
			world:       world{mode: v1alpha1.ModeServe, modeSince: time.Hour, idle: time.Hour, replicas: 2, ready: 2, resolvers: 2, proxyAge: time.Hour},
			want:        []string{"create Service shop-elasti-private", "patch Service shop-elasti-proxy", "create EndpointSlice shop-elasti-proxy-ipv4", "create DestinationRule shop-elasti-proxy", "patch VirtualService shop", "create EndpointSlice shop-elasti-ipv4", "event ModeChanged", "status Proxy"},
			wantMode:    v1alpha1.ModeProxy,
			wantReady:   metav1.ConditionTrue,
			wantRequeue: 5 * time.Second,
		},
		"idle in Proxy past the drain delay: routes stay, then scale to zero": {
			world:    world{mode: v1alpha1.ModeProxy, modeSince: time.Minute, idle: time.Hour, replicas: 2, ready: 2, resolvers: 2},
			want:     append(append(slices.Clone(setup), toResolver...), "scale 0", "event ScaledToZero", "status Proxy"),
			wantMode: v1alpha1.ModeProxy,
		},
		"idle in Proxy within the drain delay: no scale yet": {
			world:       world{mode: v1alpha1.ModeProxy, modeSince: 2 * time.Second, idle: time.Hour, replicas: 2, ready: 2, resolvers: 2},
			want:        append(append(slices.Clone(setup), toResolver...), "status Proxy"),
			wantMode:    v1alpha1.ModeProxy,
			wantRequeue: 3 * time.Second,
		},
		"no resolver ready at zero: Serve at once and wake (fail open)": {
			world:     world{mode: v1alpha1.ModeProxy, modeSince: time.Hour, idle: time.Hour, replicas: 0, ready: 0, resolvers: 0},
			wantMode:  v1alpha1.ModeServe,
			wantReady: metav1.ConditionTrue,
		},
		"a port that is not HTTP: never routed to the resolver, Ready False": {
			world:     world{mode: v1alpha1.ModeServe, modeSince: time.Hour, idle: time.Hour, replicas: 2, ready: 2, resolvers: 2, nonHTTP: true},
			want:      []string{"status Serve"},
			wantMode:  v1alpha1.ModeServe,
			wantReady: metav1.ConditionFalse,
		},
		"triggers that cannot be read: nothing is idle, asked again after the retry interval": {
			world:       world{mode: v1alpha1.ModeServe, modeSince: time.Hour, idle: time.Hour, replicas: 2, ready: 2, resolvers: 2, triggersError: true},
			want:        []string{"status Serve"},
			wantMode:    v1alpha1.ModeServe,
			wantRequeue: 30 * time.Second,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, res, es := reconcileOnce(t, tc.world)
			if tc.want != nil && !slices.Equal(got, tc.want) {
				t.Errorf("writes\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if es.Status.Mode != tc.wantMode {
				t.Errorf("mode %q, want %q (writes %v)", es.Status.Mode, tc.wantMode, got)
			}
			if tc.wantReady != "" {
				c := findCondition(es, v1alpha1.ConditionReady)
				if c == nil || c.Status != tc.wantReady {
					t.Errorf("Ready %+v, want %s", c, tc.wantReady)
				}
			}
			if tc.wantFinalizer != nil && slices.Contains(es.Finalizers, v1alpha1.Finalizer) != *tc.wantFinalizer {
				t.Errorf("finalizers %v, want elasti's: %t", es.Finalizers, *tc.wantFinalizer)
			}
			if tc.wantRequeue != 0 && res.RequeueAfter != tc.wantRequeue {
				t.Errorf("requeue after %s, want %s", res.RequeueAfter, tc.wantRequeue)
			}
		})
	}
}

// The order make before break needs, whatever else a pass writes: callers move to the resolver
// before the replicas go.
func TestReconcileMakesBeforeBreak(t *testing.T) {
	got, _, _ := reconcileOnce(t, world{mode: v1alpha1.ModeProxy, modeSince: time.Minute, idle: time.Hour, replicas: 2, ready: 2, resolvers: 2})
	route, scale := slices.Index(got, "patch VirtualService shop"), slices.Index(got, "scale 0")
	if route < 0 || scale < 0 || route > scale {
		t.Errorf("writes %v: the route to the resolver must come before the scale to zero", got)
	}
	// With no resolver to hold callers, Serve is programmed at once (fail open) and the target
	// woken in the same pass.
	got, _, es := reconcileOnce(t, world{mode: v1alpha1.ModeProxy, modeSince: time.Hour, idle: time.Hour, replicas: 0, ready: 0, resolvers: 0})
	if !slices.Contains(got, "scale 2") || es.Status.Mode != v1alpha1.ModeServe {
		t.Errorf("writes %v, mode %s: a target at zero with no resolver must be woken, in Serve", got, es.Status.Mode)
	}
}

func findCondition(es *v1alpha1.ElastiService, typ string) *metav1.Condition {
	for i := range es.Status.Conditions {
		if es.Status.Conditions[i].Type == typ {
			return &es.Status.Conditions[i]
		}
	}
	return nil
}
