package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/activity"
	"github.com/elasti-dev/elasti/controller/internal/decide"
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
// +kubebuilder:rbac:groups="",resources=pods,verbs=list
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices;destinationrules,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=*,resources=*/scale,verbs=get;update;patch
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

// Reconciler reconciles ElastiServices.
type Reconciler struct {
	client.Client
	Config
	Scaler   *scaler.Scaler
	Activity *activity.Store
	Recorder EventRecorder
	// Events carries the activity endpoint's signals into the workqueue.
	Events <-chan event.GenericEvent
	// Triggers reads triggers; triggers.Evaluate when nil.
	Triggers func(context.Context, *v1alpha1.ElastiService, time.Duration) triggers.Result
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	// pods reads the pods of a target whose wake failed, and a target's pod template for a policy
	// selector, straight from the API server: a cache
	// would watch every pod in the cluster to answer a question asked once per failed wake.
	// SetupWithManager sets it; without it a failure names only what /scale says.
	pods client.Reader
}

// SetupWithManager registers the indexes, watches and the controller.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	if r.pods == nil {
		r.pods = mgr.GetAPIReader()
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
	return b.Complete(r)
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) target(es *v1alpha1.ElastiService) routes.Target {
	return routes.Target{
		Key:          es.Key(),
		Service:      es.Spec.Service,
		Namespace:    es.Namespace,
		Domain:       r.ClusterDomain,
		ProxyHost:    names.ServiceFQDN(names.ProxyService(es.Spec.Service), es.Namespace, r.ClusterDomain),
		ResolverHost: names.ServiceFQDN(r.ResolverService, r.ResolverNamespace, r.ClusterDomain),
		Signer:       r.RouteSigner,
	}
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	es := &v1alpha1.ElastiService{}
	if err := r.Get(ctx, req.NamespacedName, es); err != nil {
		if apierrors.IsNotFound(err) {
			r.Activity.Forget(req.NamespacedName)
			forgetMetrics(req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !es.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, es)
	}
	if controllerutil.AddFinalizer(es, v1alpha1.Finalizer) {
		if err := r.Update(ctx, es); err != nil {
			return ctrl.Result{}, err
		}
	}

	before := es.DeepCopy()
	result, err := r.reconcile(ctx, es)
	es.Status.ObservedGeneration = es.Generation
	if !equalStatus(&before.Status, &es.Status) {
		// A merge patch without a lock: this controller is the status's only writer, and a
		// conflict caused by the cache lagging behind its own last write must not drop what
		// this pass did (such as the time it woke the target).
		if perr := r.Status().Patch(ctx, es, client.MergeFrom(before)); perr != nil {
			return ctrl.Result{}, errors.Join(err, perr)
		}
	}
	return result, err
}

func (r *Reconciler) reconcile(ctx context.Context, es *v1alpha1.ElastiService) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	switch owner, err := r.claimedBy(ctx, es); {
	case err != nil:
		r.setCondition(es, v1alpha1.ConditionReady, false, "ListFailed", err.Error())
		return ctrl.Result{}, err
	case owner != nil:
		return ctrl.Result{}, r.refuse(ctx, es, owner)
	}
	now := r.now()
	obs, err := r.gather(ctx, es, now)
	if err != nil {
		r.setCondition(es, v1alpha1.ConditionReady, false, obs.reason, err.Error())
		if !obs.terminal {
			// A passing failure (a list, a read of /scale): change nothing and retry, rather
			// than move callers off a resolver that is holding their requests.
			return ctrl.Result{}, err
		}
		// The Service or the target is gone or unusable: the resolver could never wake it,
		// so callers must not be left pointing at the resolver.
		if rerr := r.programRoutes(ctx, es, v1alpha1.ModeServe, obs); rerr != nil {
			return ctrl.Result{}, errors.Join(err, rerr)
		}
		r.setMode(es, v1alpha1.ModeServe, now)
		return ctrl.Result{}, nil
	}

	d := decide.Decide(decide.Input{
		Mode:            es.Status.Mode,
		ModeSince:       timeOf(es.Status.ModeSince),
		Replicas:        obs.scale.Spec,
		ReadyEndpoints:  obs.ready,
		ResolverReady:   len(obs.resolvers) > 0,
		WokeAt:          timeOf(es.Status.LastScaledUpTime),
		LastActivity:    obs.lastActivity,
		TriggersHealthy: obs.triggers.Err == nil,
		Cooldown:        time.Duration(es.Spec.CooldownPeriod) * time.Second,
		DrainDelay:      r.DrainDelay,
		WakeTimeout:     wakeTimeout(es),
		WakeFailedAt:    timeOf(es.Status.LastWakeFailureTime),
		Unsupported:     obs.unsupported(),
	}, now)
	logger.V(1).Info("decided", "mode", d.Mode, "scale", d.Scale, "reason", d.Reason,
		"replicas", obs.scale.Spec, "ready", obs.ready, "resolvers", len(obs.resolvers),
		"modeSince", timeOf(es.Status.ModeSince), "wokeAt", timeOf(es.Status.LastScaledUpTime),
		"wakeFailedAt", timeOf(es.Status.LastWakeFailureTime))

	// 1. The private Service, and the replay routes on its host; the policy that lets replays
	// through the target's ALLOW policies, before any caller is held for it.
	if err := r.ensurePrivateService(ctx, es, obs.public); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.ensureResolverAuthorization(ctx, es, obs); err != nil {
		return ctrl.Result{}, err
	}
	if r.Istio {
		if err := r.ensureReplayRoutes(ctx, es, obs.destinationRule); err != nil {
			return ctrl.Result{}, err
		}
		// The proxy Service that rewritten routes name, before any route names it.
		if err := r.ensureProxyService(ctx, es, obs); err != nil {
			return ctrl.Result{}, err
		}
	}
	// 2. Routes. Mode is recorded only once they are programmed: make before break.
	if err := r.programRoutes(ctx, es, d.Mode, obs); err != nil {
		r.setCondition(es, v1alpha1.ConditionRoutesProgrammed, false, "ProgrammingFailed", err.Error())
		return ctrl.Result{}, err
	}
	r.setCondition(es, v1alpha1.ConditionRoutesProgrammed, true, string(d.Mode), "routes send callers to the "+modeTarget(d.Mode))
	if es.Status.Mode != d.Mode {
		r.Recorder.Eventf(es, nil, corev1.EventTypeNormal, "ModeChanged", "Program",
			"%s mode: %s", d.Mode, d.Reason)
		if d.Mode == v1alpha1.ModeServe && d.Reason == v1alpha1.ReasonWoken {
			observeWake(es, now)
		}
		r.setMode(es, d.Mode, now)
	}
	observeMode(es)
	// 3. Replicas. A failed wake is told before the scale-down it allows.
	if d.RecordWakeFailure {
		r.recordWakeFailure(ctx, es, obs, now)
	}
	if err := r.scale(ctx, es, d, now); err != nil {
		r.setCondition(es, v1alpha1.ConditionReady, false, "ScaleFailed", err.Error())
		return ctrl.Result{}, err
	}
	// 4. Status.
	r.recordActivity(es, obs.lastActivity)
	msg := readyMessage(d, es)
	switch d.Reason {
	case v1alpha1.ReasonUnsupportedPort:
		msg = decide.PortsMessage(obs.nonHTTP)
	case v1alpha1.ReasonUnsupportedAuthorization:
		msg = obs.authorization.unsupported
	}
	r.setCondition(es, v1alpha1.ConditionReady, d.Ready(), d.Reason, msg)

	after := d.RequeueAfter
	if obs.triggers.Err != nil {
		// Try the triggers again; until they answer, nothing is idle.
		after = r.TriggerInterval
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// observed is what gather saw.
type observed struct {
	public          *corev1.Service
	scale           scaler.Scale
	ready           int32
	resolvers       []discoveryv1.Endpoint
	virtualServices []*networkingv1.VirtualService
	destinationRule *apinetworking.DestinationRule
	triggers        triggers.Result
	lastActivity    time.Time
	// nonHTTP are the Service's ports whose traffic the resolver could not hold.
	nonHTTP []decide.NonHTTPPort
	// authorization is what the target's AuthorizationPolicies ask of elasti.
	authorization authorization
	// reason and terminal describe a gather error: a CamelCase reason, and whether only a
	// change to some object (which a watch will report) can fix it.
	reason   string
	terminal bool
}

// unsupported is why the resolver may not take the target's traffic (decide.Input.Unsupported).
func (o *observed) unsupported() string {
	switch {
	case len(o.nonHTTP) > 0:
		return v1alpha1.ReasonUnsupportedPort
	case o.authorization.unsupported != "":
		return v1alpha1.ReasonUnsupportedAuthorization
	}
	return ""
}

func (r *Reconciler) gather(ctx context.Context, es *v1alpha1.ElastiService, now time.Time) (*observed, error) {
	obs := &observed{}
	var err error
	if r.Istio {
		// Needed even when the rest fails, so that a failure can still restore the routes.
		if obs.virtualServices, err = r.virtualServicesFor(ctx, es); err != nil {
			obs.reason = "ListFailed"
			return obs, err
		}
	}

	obs.public = &corev1.Service{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: es.Namespace, Name: es.Spec.Service}, obs.public); err != nil {
		obs.reason, obs.terminal = "ServiceNotFound", apierrors.IsNotFound(err)
		return obs, fmt.Errorf("reading Service %s: %w", es.Spec.Service, err)
	}
	if len(obs.public.Spec.Selector) == 0 {
		obs.reason, obs.terminal = "ServiceHasNoSelector", true
		return obs, fmt.Errorf("the Service %s has no selector, so elasti cannot find the target's pods", es.Spec.Service)
	}
	if obs.nonHTTP, err = r.nonHTTPPorts(ctx, es, obs.public); err != nil {
		obs.reason = "ListFailed"
		return obs, err
	}
	if obs.authorization, err = r.authorizationFor(ctx, es, obs.public); err != nil {
		obs.reason = "ListFailed"
		return obs, err
	}
	es.Status.AuthorizationPolicies = obs.authorization.applies

	if obs.scale, err = r.Scaler.Get(ctx, es.Namespace, es.Spec.ScaleTargetRef); err != nil {
		obs.reason, obs.terminal = "TargetNotFound", apierrors.IsNotFound(err) || meta.IsNoMatchError(err)
		r.setCondition(es, v1alpha1.ConditionTargetReady, false, obs.reason, err.Error())
		return obs, err
	}
	es.Status.TargetReplicas = obs.scale.Spec

	if obs.ready, err = r.readyEndpoints(ctx, es.Namespace, names.PrivateService(es.Spec.Service)); err != nil {
		obs.reason = "ListFailed"
		return obs, err
	}
	es.Status.ReadyEndpoints = obs.ready
	if obs.ready > 0 {
		r.setCondition(es, v1alpha1.ConditionTargetReady, true, "EndpointsReady", fmt.Sprintf("%d ready endpoints", obs.ready))
	} else {
		r.setCondition(es, v1alpha1.ConditionTargetReady, false, "NoReadyEndpoints", fmt.Sprintf("%d replicas, none ready", obs.scale.Spec))
	}

	if obs.resolvers, err = r.resolverEndpoints(ctx); err != nil {
		obs.reason = "ListFailed"
		return obs, err
	}
	if len(obs.resolvers) > 0 {
		r.setCondition(es, v1alpha1.ConditionResolverReady, true, "EndpointsReady", fmt.Sprintf("%d ready resolver endpoints", len(obs.resolvers)))
	} else {
		r.setCondition(es, v1alpha1.ConditionResolverReady, false, "NoReadyEndpoints",
			fmt.Sprintf("no ready endpoints for Service %s/%s; staying in Serve mode", r.ResolverNamespace, r.ResolverService))
	}

	if r.Istio {
		if obs.destinationRule, err = r.destinationRuleFor(ctx, es); err != nil {
			obs.reason = "ListFailed"
			return obs, err
		}
	}

	obs.lastActivity = latest(r.Activity.Last(types.NamespacedName{Namespace: es.Namespace, Name: es.Name}),
		timeOf(es.Status.LastActivityTime), timeOf(es.Status.LastScaledUpTime), es.CreationTimestamp.Time)
	cooldown := time.Duration(es.Spec.CooldownPeriod) * time.Second
	if obs.scale.Spec > 0 && now.Sub(obs.lastActivity) >= cooldown {
		// Idle as far as elasti saw; only the triggers can say otherwise. They are asked
		// only now, when the cooldown would expire, for the whole window at once.
		eval := r.Triggers
		if eval == nil {
			eval = triggers.Evaluate
		}
		obs.triggers = eval(ctx, es, cooldown)
		switch {
		case obs.triggers.Err != nil:
			// The detail goes to the controller's log only: the condition is the tenant's to
			// read, and must not tell it what answers at an address it chose.
			log.FromContext(ctx).Error(obs.triggers.Err, "reading the triggers")
			r.setCondition(es, v1alpha1.ConditionTriggersHealthy, false, obs.triggers.Reason,
				obs.triggers.Message+"; elasti will not scale to zero until the triggers answer")
		case obs.triggers.LastActive.After(obs.lastActivity):
			obs.lastActivity = obs.triggers.LastActive
			r.setCondition(es, v1alpha1.ConditionTriggersHealthy, true, "Active",
				"a trigger was above its threshold at "+obs.triggers.LastActive.UTC().Format(time.RFC3339))
		default:
			r.setCondition(es, v1alpha1.ConditionTriggersHealthy, true, "Idle",
				fmt.Sprintf("no trigger was above its threshold in the last %ds", es.Spec.CooldownPeriod))
		}
	}
	return obs, nil
}

func (r *Reconciler) readyEndpoints(ctx context.Context, namespace, service string) (int32, error) {
	addrs, err := r.readyAddresses(ctx, namespace, service, nil)
	return int32(len(addrs)), err
}

// resolverEndpoints lists the resolver's ready endpoints with their Pod references, which the
// slices elasti writes keep for istiod (resources.slicesFor).
func (r *Reconciler) resolverEndpoints(ctx context.Context) ([]discoveryv1.Endpoint, error) {
	return r.endpointsOf(ctx, r.ResolverNamespace, r.ResolverService, nil)
}

// notElastis keeps the EndpointSlices that elasti did not write: a public Service's own.
func notElastis(s *discoveryv1.EndpointSlice) bool {
	return s.Labels[discoveryv1.LabelManagedBy] != v1alpha1.EndpointSliceManager
}

// readyAddresses lists the ready, non-terminating addresses of a Service's EndpointSlices, of
// the slices that keep says to keep (all when nil).
func (r *Reconciler) readyAddresses(ctx context.Context, namespace, service string, keep func(*discoveryv1.EndpointSlice) bool) ([]string, error) {
	eps, err := r.endpointsOf(ctx, namespace, service, keep)
	var addrs []string
	for _, ep := range eps {
		addrs = append(addrs, ep.Addresses...)
	}
	return addrs, err
}

// endpointsOf is readyAddresses with each endpoint whole.
func (r *Reconciler) endpointsOf(ctx context.Context, namespace, service string, keep func(*discoveryv1.EndpointSlice) bool) ([]discoveryv1.Endpoint, error) {
	var slices discoveryv1.EndpointSliceList
	if err := r.List(ctx, &slices, client.InNamespace(namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return nil, fmt.Errorf("listing EndpointSlices of %s/%s: %w", namespace, service, err)
	}
	var eps []discoveryv1.Endpoint
	for i, s := range slices.Items {
		if keep != nil && !keep(&slices.Items[i]) {
			continue
		}
		for _, ep := range s.Endpoints {
			if (ep.Conditions.Ready == nil || *ep.Conditions.Ready) &&
				(ep.Conditions.Terminating == nil || !*ep.Conditions.Terminating) {
				eps = append(eps, ep)
			}
		}
	}
	return eps, nil
}

func (r *Reconciler) virtualServicesFor(ctx context.Context, es *v1alpha1.ElastiService) ([]*networkingv1.VirtualService, error) {
	t := r.target(es)
	seen := map[types.NamespacedName]bool{}
	var out []*networkingv1.VirtualService
	for _, value := range []string{t.FQDN(), rewrittenFor(es.Key())} {
		var list networkingv1.VirtualServiceList
		if err := r.List(ctx, &list, client.MatchingFields{indexRoutesTo: value}); err != nil {
			return nil, fmt.Errorf("listing VirtualServices: %w", err)
		}
		for _, vs := range list.Items {
			key := client.ObjectKeyFromObject(vs)
			if seen[key] || vs.Labels[v1alpha1.LabelComponent] != "" || !routes.RoutesTo(vs, t) {
				continue // elasti's own replay routes, or a delegate-only match
			}
			seen[key] = true
			out = append(out, vs)
		}
	}
	return out, nil
}

// destinationRuleFor returns the DestinationRules of the public host merged as istiod merges
// them for a sidecar in the Service's namespace. The resolver sends the replay, but the subsets
// and traffic policy that a route means are its caller's: the Service's namespace is, but for its
// rules exported nowhere else, the view of every caller without a rule of its own for the host
// (istiod falls back to the Service's namespace's exported rules, then the root namespace's), and
// the one the Service's owner writes. A caller whose own namespace has a rule for the host is
// replayed by the Service's view: a subset defined only there goes to any pod.
func (r *Reconciler) destinationRuleFor(ctx context.Context, es *v1alpha1.ElastiService) (*apinetworking.DestinationRule, error) {
	fqdn := names.ServiceFQDN(es.Spec.Service, es.Namespace, r.ClusterDomain)
	var drs []*networkingv1.DestinationRule
	for _, value := range []string{fqdn, wildcardHost} {
		var list networkingv1.DestinationRuleList
		if err := r.List(ctx, &list, client.MatchingFields{indexRoutesTo: value}); err != nil {
			return nil, fmt.Errorf("listing DestinationRules: %w", err)
		}
		for _, dr := range list.Items {
			if dr.Labels[v1alpha1.LabelComponent] == "" {
				drs = append(drs, dr)
			}
		}
	}
	return routes.EffectiveDestinationRule(drs, fqdn, routes.DestinationRuleScope{
		Caller: es.Namespace, Service: es.Namespace, Root: r.rootNamespace(), Domain: r.ClusterDomain,
	}), nil
}

func (r *Reconciler) setCondition(es *v1alpha1.ElastiService, typ string, ok bool, reason, msg string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&es.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: es.Generation,
	})
}

func (r *Reconciler) setMode(es *v1alpha1.ElastiService, mode v1alpha1.Mode, now time.Time) {
	if es.Status.Mode == mode {
		return
	}
	es.Status.Mode = mode
	es.Status.ModeSince = &metav1.Time{Time: now}
}

// recordActivity persists the leader's in-memory activity coarsely: a new leader reading it is
// off by at most 30 s or a tenth of the cooldown (the triggers' window still covers the whole
// cooldown), and an active Service does not write its status on every request.
func (r *Reconciler) recordActivity(es *v1alpha1.ElastiService, last time.Time) {
	granularity := max(30*time.Second, time.Duration(es.Spec.CooldownPeriod)*time.Second/10)
	if old := es.Status.LastActivityTime; old == nil || last.Sub(old.Time) >= granularity {
		es.Status.LastActivityTime = &metav1.Time{Time: last.Truncate(time.Second)}
	}
}

func modeTarget(m v1alpha1.Mode) string {
	if m == v1alpha1.ModeProxy {
		return "resolver"
	}
	return "target"
}

func readyMessage(d decide.Decision, es *v1alpha1.ElastiService) string {
	switch d.Reason {
	case v1alpha1.ReasonScaledToZero:
		return "the target is at zero; the resolver holds requests and wakes it"
	case v1alpha1.ReasonWoken:
		return "woken from zero and ready; callers go straight to the target again"
	case v1alpha1.ReasonWaking:
		return fmt.Sprintf("woken from zero; waiting up to %s for the target's endpoints to be ready", wakeTimeout(es))
	case v1alpha1.ReasonWakeFailed:
		// The message recordWakeFailure wrote names the pods' reason; it stands until the
		// target serves, through the retries.
		if c := meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Reason == v1alpha1.ReasonWakeFailed {
			return c.Message
		}
		return fmt.Sprintf("the last wake had no ready endpoint within %s; %s", wakeTimeout(es), wakeFailedNext(es))
	case v1alpha1.ReasonDraining:
		return "idle; waiting for callers to follow the routes to the resolver before scaling to zero"
	case v1alpha1.ReasonIdle:
		return fmt.Sprintf("idle for %ds; switching to the resolver before scaling to zero", es.Spec.CooldownPeriod)
	case v1alpha1.ReasonTargetNotReady:
		return "the target has no ready endpoints; the resolver holds requests until it does"
	case v1alpha1.ReasonNoResolverReady:
		return "no resolver is ready, so callers go straight to the target, which stays up"
	default:
		return "callers go straight to the target"
	}
}

func wakeFailedNext(es *v1alpha1.ElastiService) string {
	return fmt.Sprintf("it goes back to zero once idle for %ds, and the next request wakes it again", es.Spec.CooldownPeriod)
}

// wakeTimeout is spec.wakeTimeout, or its default for an object stored before the field existed.
func wakeTimeout(es *v1alpha1.ElastiService) time.Duration {
	if t := es.Spec.WakeTimeout; t != nil && t.Duration > 0 {
		return t.Duration
	}
	return v1alpha1.DefaultWakeTimeout
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

func latest(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}
