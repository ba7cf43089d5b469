package v1alpha1

// Headers that the controller's VirtualService rewrite sets for the resolver. They tell the
// resolver which ElastiService a request is for and where the original route pointed, so that the
// replay reaches the same subset and port.
const (
	// HeaderElastiService carries "namespace/name" of the ElastiService.
	HeaderElastiService = "X-Elasti-Service"
	// HeaderElastiServiceOld is HeaderElastiService's name in the previous release. Routes that
	// release rewrote carry it until the controller renames it; the resolver reads it too
	// meanwhile. Remove it in the next release.
	HeaderElastiServiceOld = "X-Elasti-Target"
	// HeaderPort carries the Service port the original route named, if any.
	HeaderPort = "X-Elasti-Port"
	// HeaderSubset carries the DestinationRule subset the original route named, if any.
	HeaderSubset = "X-Elasti-Subset"
	// HeaderRestoreKey links a rewritten destination to its recorded original.
	HeaderRestoreKey = "X-Elasti-Restore-Key"
	// HeaderSignature authenticates HeaderElastiService, HeaderPort and HeaderSubset: without a
	// valid one the resolver ignores them (package internal/routesig).
	HeaderSignature = "X-Elasti-Signature"
)

// Headers lists every header above: they are for the resolver, and none may reach a target.
func Headers() []string {
	return []string{HeaderElastiService, HeaderElastiServiceOld, HeaderPort, HeaderSubset,
		HeaderRestoreKey, HeaderSignature}
}

// Labels and annotations that elasti puts on the objects it creates or edits.
const (
	// LabelElastiService names the ElastiService that owns or edited an object.
	LabelElastiService = "elasti.dev/elastiservice"
	// LabelManagedBy marks objects elasti creates.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the LabelManagedBy value.
	ManagedByValue = "elasti"
	// EndpointSliceManager is the endpointslice.kubernetes.io/managed-by value of the slices
	// that point a Service at the resolver; the EndpointSlice controller leaves them alone.
	EndpointSliceManager = "controller.elasti.dev"
	// AnnotationOriginalRoutes on a VirtualService records, per restore key, the destinations
	// that elasti rewrote, so that Serve mode restores them exactly.
	AnnotationOriginalRoutes = "elasti.dev/original-routes"
	// Finalizer lets the controller restore routes and replicas before an ElastiService goes.
	Finalizer = "elasti.dev/finalizer"
	// FieldManager is the field manager of every write the controller makes, so that
	// managedFields name elasti, and GitOps tools can be told to ignore what it owns.
	FieldManager = "elasti-controller"
)

// Condition types.
const (
	// ConditionReady is true when the routes match the mode and the mode matches the target.
	ConditionReady = "Ready"
	// ConditionRoutesProgrammed is true when every route points where the mode says.
	ConditionRoutesProgrammed = "RoutesProgrammed"
	// ConditionTargetReady is true when the target has ready endpoints.
	ConditionTargetReady = "TargetReady"
	// ConditionResolverReady is true when at least one resolver endpoint is ready.
	ConditionResolverReady = "ResolverReady"
	// ConditionTriggersHealthy is true when every trigger answered its last query.
	ConditionTriggersHealthy = "TriggersHealthy"
	// ConditionDirectProbing is true when the last wake's pod was probed by elasti itself and
	// passed, and false, with the reason, when elasti waited for the kubelet instead.
	ConditionDirectProbing = "DirectProbing"
)

// Reasons of the Ready condition that the controller's decision gives (controller/internal/decide).
// Events of a transition reuse them.
const (
	ReasonActive          = "Active"
	ReasonIdle            = "Idle"
	ReasonDraining        = "Draining"
	ReasonScaledToZero    = "ScaledToZero"
	ReasonWaking          = "Waking"
	ReasonWoken           = "Woken"
	ReasonTargetNotReady  = "TargetNotReady"
	ReasonNoResolverReady = "NoResolverReady"
	// ReasonWakeFailed makes Ready False: the last wake did not reach a ready endpoint within
	// spec.wakeTimeout, and the target has not served since.
	ReasonWakeFailed = "WakeFailed"
	// ReasonServiceClaimed makes Ready False: another ElastiService claimed spec.service first,
	// and this one does nothing while it exists.
	ReasonServiceClaimed = "ServiceClaimed"
	// ReasonUnsupportedPort makes Ready False: the Service has a port whose traffic is not HTTP,
	// which the resolver cannot hold, so the target is kept awake and never goes to zero.
	ReasonUnsupportedPort = "UnsupportedPort"
	// ReasonUnsupportedAuthorization makes Ready False: an Istio AuthorizationPolicy applies to
	// the target's pods that the resolver cannot check for it (a CUSTOM action, or a field such
	// as requestPrincipals or ipBlocks), or that would deny the resolver's own replays. Holding
	// requests would then widen who can reach the target, or lose them, so the target is kept
	// awake and never goes to zero.
	ReasonUnsupportedAuthorization = "UnsupportedAuthorization"
)

// Reasons of conditions that say what the controller observed or could not do.
const (
	// ReasonEndpointsReady: TargetReady or ResolverReady is True, with the count.
	ReasonEndpointsReady = "EndpointsReady"
	// ReasonNoReadyEndpoints: TargetReady or ResolverReady is False; with no resolver, elasti
	// stays in Serve mode.
	ReasonNoReadyEndpoints = "NoReadyEndpoints"
	// ReasonTriggerActive and ReasonTriggersIdle: TriggersHealthy is True, and a trigger was,
	// or none was, above its threshold in the last cooldown.
	ReasonTriggerActive = "Active"
	ReasonTriggersIdle  = "Idle"
	// ReasonListFailed makes Ready False: a read from the API server failed; nothing changed,
	// and the controller retries.
	ReasonListFailed = "ListFailed"
	// ReasonServiceNotFound and ReasonServiceHasNoSelector make Ready False: spec.service is
	// missing or selects no pods, so callers are sent straight to it.
	ReasonServiceNotFound      = "ServiceNotFound"
	ReasonServiceHasNoSelector = "ServiceHasNoSelector"
	// ReasonTargetNotFound makes Ready and TargetReady False: /scale of spec.scaleTargetRef could
	// not be read.
	ReasonTargetNotFound = "TargetNotFound"
	// ReasonProgrammingFailed makes RoutesProgrammed False: a route or slice write failed.
	ReasonProgrammingFailed = "ProgrammingFailed"
	// ReasonScaleFailed makes Ready False: a write to /scale failed.
	ReasonScaleFailed = "ScaleFailed"
)

// Reasons of the DirectProbing condition.
const (
	// ReasonProbePassed: elasti's own probe of the new pod passed, before the kubelet's.
	ReasonProbePassed = "Passed"
	// ReasonProbeFailed: the pod failed elasti's probe after passing it, or never passed within
	// the wake timeout; held requests wait for the kubelet.
	ReasonProbeFailed = "ProbeFailed"
	// ReasonNotProbeable: the pod's probes cannot be run by elasti (exec, none, a probe host,
	// readiness gates, host network); held requests wait for the kubelet.
	ReasonNotProbeable = "NotProbeable"
	// ReasonProbingDisabled: spec.coldStart.readiness is Kubelet.
	ReasonProbingDisabled = "Disabled"
	// ReasonProbingDestinationRule: the Service has a DestinationRule, whose subsets and traffic
	// policy elasti mirrors for replays to the private Service only; held requests wait for the
	// kubelet.
	ReasonProbingDestinationRule = "DestinationRule"
)

// Key returns "namespace/name", the form HeaderElastiService and the activity signal use.
func (es *ElastiService) Key() string { return es.Namespace + "/" + es.Name }

// LabelComponent says which part of elasti an object is. The EndpointSlice controller copies it
// from a Service to its slices, and the resolver's cache selects private Services and their
// slices by it; the controller finds slices by kubernetes.io/service-name.
const LabelComponent = "elasti.dev/component"

// LabelProbedFor on a probed slice names the private Service whose target's pods it lists.
const LabelProbedFor = "elasti.dev/probed-for"

// LabelComponent values. The resolver selects private Services (and, through the label the
// EndpointSlice controller copies, their slices) by ComponentPrivateService.
const (
	ComponentPrivateService = "private-service"
	// ComponentProbedService marks the Service whose slices list the new pods elasti's own probe
	// passed (names.ProbedService); the slices carry ComponentPrivateService and LabelProbedFor,
	// so the resolver reads them as its private Service's.
	ComponentProbedService = "probed-service"
	ComponentResolverSlice = "resolver-slice"
	ComponentProxyService  = "proxy-service"
	ComponentReplayRoute   = "replay-route"
	// ComponentAuthorization marks the AuthorizationPolicy that lets the resolver's replays
	// through a target's ALLOW policies; the resolver checks each caller against those first.
	ComponentAuthorization = "resolver-authorization"
)
