package reconciler

import (
	"context"
	"fmt"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/activity"
	"github.com/elasti-dev/elasti/controller/internal/podprobe"
	"github.com/elasti-dev/elasti/controller/internal/routes"
	"github.com/elasti-dev/elasti/controller/internal/scaler"
	"github.com/elasti-dev/elasti/controller/internal/triggers"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/internal/routesig"
)

// +kubebuilder:rbac:groups=elasti.dev,resources=elastiservices,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=elasti.dev,resources=elastiservices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=elasti.dev,resources=elastiservices/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices;destinationrules,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=*,resources=*/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch
// +kubebuilder:rbac:groups=keda.sh,resources=scaledobjects,verbs=get;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// Leader election needs its Lease, and announces a new leader with a core/v1 Event, only in its
// own namespace: a Role there (controller-gen writes one for a marker with a namespace; the
// chart and config/ put it in elasti's namespace), not a ClusterRole. client-go's LeaseLock only
// gets, creates and updates. The reconciler's own Events are events.k8s.io ones, above.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update,namespace=elasti-system
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=elasti-system

// EventRecorder records Kubernetes events; declared here, where it is used.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Config is what the controller knows about its installation.
type Config struct {
	// ResolverNamespace and ResolverService name the resolver's Service.
	ResolverNamespace, ResolverService string
	// ResolverPort is the resolver's HTTP port, the one rewritten routes name.
	ResolverPort int32
	// ClusterDomain is the cluster's DNS domain, such as cluster.local.
	ClusterDomain string
	// DrainDelay is how long Proxy mode stays programmed before the target goes to zero.
	DrainDelay time.Duration
	// TriggerInterval is how soon triggers that could not be read are asked again.
	TriggerInterval time.Duration
	// Istio is true when the VirtualService and DestinationRule kinds exist.
	Istio bool
	// MeshRootNamespace is Istio's root namespace (meshConfig.rootNamespace), whose
	// DestinationRules apply mesh-wide; istio-system when empty.
	MeshRootNamespace string
	// RouteSigner signs the headers of rewritten routes; the resolver believes no unsigned one.
	RouteSigner *routesig.Signer
	// AuthorizationPolicies is true when Istio's AuthorizationPolicy kind exists.
	AuthorizationPolicies bool
	// ResolverPrincipal is the resolver's mTLS identity as AuthorizationPolicies name it
	// ("cluster.local/ns/elasti-system/sa/elasti-resolver"): its replays carry it.
	ResolverPrincipal string
}

// Scaler reads and writes a target's replicas (scaler.Scaler, through /scale), and pauses its
// autoscaler while it is at zero.
type Scaler interface {
	Get(ctx context.Context, namespace string, ref v1alpha1.ScaleTargetRef) (scaler.Scale, error)
	Set(ctx context.Context, namespace string, ref v1alpha1.ScaleTargetRef, from scaler.Scale, replicas int32) error
	PauseAutoscaler(ctx context.Context, namespace string, as *v1alpha1.Autoscaler) error
	ResumeAutoscaler(ctx context.Context, namespace string, as *v1alpha1.Autoscaler) error
}

// Reconciler reconciles ElastiServices.
type Reconciler struct {
	client.Client
	Config
	Scaler   Scaler
	Activity *activity.Store
	Recorder EventRecorder
	// Events carries the activity endpoint's signals into the workqueue.
	Events <-chan event.GenericEvent
	// Triggers reads triggers; triggers.Evaluate when nil.
	Triggers func(context.Context, *v1alpha1.ElastiService, time.Duration) triggers.Result
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock
	// Metrics are recorded here; SetupWithManager makes an unregistered set when nil.
	Metrics *Metrics
	// Prober, if set, probes a woken target's new pods so that held requests can go to them
	// before the kubelet marks them Ready (spec.coldStart.readiness). SetupWithManager sets its
	// Changed.
	Prober *podprobe.Prober

	// pods reads the pods of a target whose wake failed, and a target's pod template for a policy
	// selector, straight from the API server: a cache would watch every pod and Deployment in the
	// cluster to answer a question asked rarely. SetupWithManager sets it; without it a failure
	// names only what /scale says, and a policy selector the Service's cannot decide stays unsure.
	pods client.Reader
}

// SetupWithManager registers the indexes, watches and the controller.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	if r.pods == nil {
		r.pods = mgr.GetAPIReader()
	}
	if r.Triggers == nil {
		r.Triggers = triggers.Evaluate
	}
	if r.Metrics == nil {
		r.Metrics = NewMetrics()
	}
	// Without it the API server names the binary (its User-Agent) as the field manager.
	r.Client = client.WithFieldOwner(r.Client, v1alpha1.FieldManager)
	if err := r.setupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("indexing ElastiServices: %w", err)
	}
	// Status writes do not change the generation, so the controller's own writes do not
	// come back as work; deletion and finalizer changes do.
	esChanged := predicate.Or(predicate.GenerationChangedPredicate{}, predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !e.ObjectOld.GetDeletionTimestamp().Equal(e.ObjectNew.GetDeletionTimestamp()) ||
				len(e.ObjectOld.GetFinalizers()) != len(e.ObjectNew.GetFinalizers())
		},
	})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("elastiservice").
		For(&v1alpha1.ElastiService{}, builder.WithPredicates(esChanged)).
		Watches(&v1alpha1.ElastiService{}, handler.EnqueueRequestsFromMapFunc(r.mapClaimants), builder.WithPredicates(claimsChanged)).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.mapService)).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(r.mapEndpointSlice)).
		WithOptions(opts)
	if r.Istio {
		b = b.Watches(&networkingv1.VirtualService{}, handler.EnqueueRequestsFromMapFunc(r.mapVirtualService)).
			Watches(&networkingv1.DestinationRule{}, handler.EnqueueRequestsFromMapFunc(r.mapDestinationRule))
	}
	if r.AuthorizationPolicies {
		b = b.Watches(&securityv1.AuthorizationPolicy{}, handler.EnqueueRequestsFromMapFunc(r.mapAuthorizationPolicy))
	}
	if r.Events != nil {
		b = b.WatchesRawSource(source.Channel(r.Events, &handler.EnqueueRequestForObject{}))
	}
	if r.Prober != nil {
		// A pod that passed or failed is news for its ElastiService's next pass. The send
		// blocks rather than drop it; the controller drains the channel as it runs.
		probed := make(chan event.GenericEvent, 256)
		r.Prober.Changed = func(owner types.NamespacedName) {
			probed <- event.GenericEvent{Object: &v1alpha1.ElastiService{ObjectMeta: metav1.ObjectMeta{Namespace: owner.Namespace, Name: owner.Name}}}
		}
		b = b.WatchesRawSource(source.Channel(probed, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}

func (r *Reconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock.Now()
	}
	return time.Now()
}

func (r *Reconciler) routeParams(es *v1alpha1.ElastiService) routes.Params {
	return routes.Params{
		Key:          es.Key(),
		Service:      es.Spec.Service,
		Namespace:    es.Namespace,
		Domain:       r.ClusterDomain,
		ProxyHost:    names.ServiceFQDN(names.ProxyService(es.Spec.Service), es.Namespace, r.ClusterDomain),
		ResolverHost: names.ServiceFQDN(r.ResolverService, r.ResolverNamespace, r.ClusterDomain),
		Signer:       r.RouteSigner,
	}
}
