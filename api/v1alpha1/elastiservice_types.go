package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Mode says who receives the traffic of an ElastiService's Service.
// +kubebuilder:validation:Enum=Serve;Proxy
type Mode string

const (
	// ModeServe sends callers straight to the target's pods; elasti is not in the path.
	ModeServe Mode = "Serve"
	// ModeProxy sends callers to the resolver, which holds requests while the target wakes.
	ModeProxy Mode = "Proxy"
)

// DefaultWakeTimeout is spec.wakeTimeout's default, for objects stored before the field existed.
const DefaultWakeTimeout = 5 * time.Minute

// ElastiServiceSpec says which Service may scale to zero, which workload backs it, and when it is idle.
type ElastiServiceSpec struct {
	// Service is the name of the Service, in the ElastiService's namespace, whose callers elasti
	// holds while the target is at zero.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="service is immutable; create a new ElastiService instead"
	Service string `json:"service"`

	// ScaleTargetRef names the workload that serves the Service. It may be any resource with a
	// /scale subresource: a Deployment, a StatefulSet, an Argo Rollout, or a custom resource.
	ScaleTargetRef ScaleTargetRef `json:"scaleTargetRef"`

	// MinTargetReplicas is the replica count that a wake-up restores.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MinTargetReplicas int32 `json:"minTargetReplicas,omitempty"`

	// CooldownPeriod is how many seconds the target must be idle before it goes to zero.
	// +kubebuilder:default=900
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=604800
	// +optional
	CooldownPeriod int32 `json:"cooldownPeriod,omitempty"`

	// WakeTimeout is how long a target woken from zero may take to have a ready endpoint, such
	// as 5m. Past it the wake has failed: the Ready condition turns False with reason WakeFailed
	// and a Warning event says why the pods are not ready. The target then goes back to zero once
	// it has been idle for the cooldown, and the next request wakes it again.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('1h')",message="wakeTimeout must be between 10s and 1h"
	// +optional
	WakeTimeout *metav1.Duration `json:"wakeTimeout,omitempty"`

	// Triggers report activity while the Service is in Serve mode, when elasti is not in the path.
	// The target is idle only when every trigger is at or below its threshold.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	Triggers []Trigger `json:"triggers"`

	// Autoscaler hands scaling between 1 and N replicas to KEDA or an HPA. elasti only moves the
	// target between zero and minTargetReplicas.
	// +optional
	Autoscaler *Autoscaler `json:"autoscaler,omitempty"`

	// ProbeResponses are answered by the resolver itself while the target is at zero, so that
	// health checks and similar requests do not wake it.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	ProbeResponses []ProbeResponse `json:"probeResponses,omitempty"`

	// Queue bounds how the resolver holds this Service's requests while the target wakes.
	// +optional
	Queue *QueueSettings `json:"queue,omitempty"`

	// ColdStart says how a wake from zero ends.
	// +optional
	ColdStart *ColdStart `json:"coldStart,omitempty"`
}

// Readiness is when held requests may go to a new pod of the target.
// +kubebuilder:validation:Enum=Probe;Kubelet
type Readiness string

const (
	// ReadinessProbe sends held requests to a new pod as soon as elasti has seen it pass its own
	// startup and readiness probes, which elasti runs itself at short intervals, before the
	// kubelet's next periodic probe marks it Ready. A pod whose probes elasti cannot run (exec,
	// none, a probe host, readiness gates) is waited for as with Kubelet.
	ReadinessProbe Readiness = "Probe"
	// ReadinessKubelet waits for the kubelet to mark the pod Ready.
	ReadinessKubelet Readiness = "Kubelet"
)

// ColdStart configures the end of a wake.
type ColdStart struct {
	// Readiness is when held requests may go to a new pod: Probe (the default) once elasti saw
	// it pass its own probes, or Kubelet once the kubelet marks it Ready.
	// +optional
	Readiness Readiness `json:"readiness,omitempty"`
}

// ReadinessOf is es's spec.coldStart.readiness, with its default.
func (es *ElastiService) ReadinessOf() Readiness {
	if es.Spec.ColdStart == nil || es.Spec.ColdStart.Readiness == "" {
		return ReadinessProbe
	}
	return es.Spec.ColdStart.Readiness
}

// ScaleTargetRef names a resource with a /scale subresource in the ElastiService's namespace.
type ScaleTargetRef struct {
	// APIVersion of the target, such as apps/v1 or argoproj.io/v1alpha1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:Pattern=`^([a-z0-9.-]+/)?v[0-9]+((alpha|beta)[0-9]+)?$`
	APIVersion string `json:"apiVersion"`

	// Kind of the target, such as Deployment, StatefulSet or Rollout. The plural resource name
	// (deployments) is accepted as well.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`

	// Name of the target.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// TriggerType names a source of activity.
// +kubebuilder:validation:Enum=prometheus
type TriggerType string

// TriggerPrometheus is an instant PromQL query compared with a threshold.
const TriggerPrometheus TriggerType = "prometheus"

// Trigger is a source of activity for a Service in Serve mode.
type Trigger struct {
	// Type of the trigger.
	Type TriggerType `json:"type"`

	// Metadata configures the trigger.
	Metadata TriggerMetadata `json:"metadata"`
}

// TriggerMetadata configures a prometheus trigger.
type TriggerMetadata struct {
	// ServerAddress is the base URL of the Prometheus server, such as
	// http://prometheus.monitoring:9090.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'http' || url(self).getScheme() == 'https')",message="serverAddress must be an http or https URL"
	ServerAddress string `json:"serverAddress"`

	// Query is an instant PromQL query that returns one number. When it is empty, elasti asks
	// for the rate of Istio's standard request metric for the Service over the last minute.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Query string `json:"query,omitempty"`

	// Threshold is the value at or below which the Service counts as idle, as a decimal string.
	// +kubebuilder:default="0"
	// +kubebuilder:validation:Pattern=`^-?[0-9]+(\.[0-9]+)?$`
	// +optional
	Threshold string `json:"threshold,omitempty"`
}

// AutoscalerType names the autoscaler that owns replicas above zero.
// +kubebuilder:validation:Enum=keda;hpa
type AutoscalerType string

const (
	// AutoscalerKEDA is a KEDA ScaledObject; elasti pauses it while the target is at zero.
	AutoscalerKEDA AutoscalerType = "keda"
	// AutoscalerHPA is a HorizontalPodAutoscaler, which is idle by itself while replicas are zero.
	AutoscalerHPA AutoscalerType = "hpa"
)

// Autoscaler names the autoscaler that owns the range 1..N.
type Autoscaler struct {
	// Type of the autoscaler.
	Type AutoscalerType `json:"type"`

	// Name of the ScaledObject or HorizontalPodAutoscaler in the ElastiService's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ProbeResponse is a canned answer for requests that must not wake the target.
// +kubebuilder:validation:XValidation:rule="has(self.path) != has(self.pathPrefix)",message="exactly one of path and pathPrefix must be set"
type ProbeResponse struct {
	// Path matches the request path exactly.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	// +optional
	Path string `json:"path,omitempty"`

	// PathPrefix matches any request path that starts with it.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	// +optional
	PathPrefix string `json:"pathPrefix,omitempty"`

	// Method matches the request method; empty matches any method.
	// +kubebuilder:validation:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS
	// +optional
	Method string `json:"method,omitempty"`

	// Headers must all be present with these values; an empty value only requires presence.
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	// +optional
	Headers []HeaderMatch `json:"headers,omitempty"`

	// StatusCode of the answer.
	// +kubebuilder:default=200
	// +kubebuilder:validation:Minimum=100
	// +kubebuilder:validation:Maximum=599
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`

	// Body of the answer.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Body string `json:"body,omitempty"`

	// ContentType of the answer; text/plain when empty.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	ContentType string `json:"contentType,omitempty"`
}

// HeaderMatch matches one request header.
type HeaderMatch struct {
	// Name of the header, matched without regard to case.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Name string `json:"name"`

	// Value the header must have; empty only requires the header to be present.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Value string `json:"value,omitempty"`
}

// QueueSettings bound how the resolver holds one Service's requests.
type QueueSettings struct {
	// MaxPending is how many requests the resolver holds for this Service at once, per replica.
	// Requests beyond it get 503 with Retry-After.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxPending *int32 `json:"maxPending,omitempty"`

	// HoldTimeout is how long a request is held before it gets 504, such as 2m.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="holdTimeout must be between 1s and 1h"
	// +optional
	HoldTimeout *metav1.Duration `json:"holdTimeout,omitempty"`
}

// RouteRef names a route object that elasti has rewritten.
type RouteRef struct {
	// Kind of the object, such as VirtualService or EndpointSlice.
	Kind string `json:"kind"`
	// Namespace of the object.
	Namespace string `json:"namespace"`
	// Name of the object.
	Name string `json:"name"`
}

// ElastiServiceStatus is what the controller last observed and did.
type ElastiServiceStatus struct {
	// ObservedGeneration is the generation of the spec that the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Mode says where callers are sent now.
	// +optional
	Mode Mode `json:"mode,omitempty"`

	// Conditions: Ready, RoutesProgrammed, TargetReady, ResolverReady and TriggersHealthy.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// LastActivityTime is the last time a request or a trigger showed the Service in use.
	// +optional
	LastActivityTime *metav1.Time `json:"lastActivityTime,omitempty"`

	// LastScaledUpTime is the last time elasti woke the target from zero.
	// +optional
	LastScaledUpTime *metav1.Time `json:"lastScaledUpTime,omitempty"`

	// LastScaledToZeroTime is the last time elasti scaled the target to zero.
	// +optional
	LastScaledToZeroTime *metav1.Time `json:"lastScaledToZeroTime,omitempty"`

	// LastWakeFailureTime is the last time a wake did not reach a ready endpoint within
	// spec.wakeTimeout. While it is later than modeSince (the target has not served since), the
	// Ready condition stays False with reason WakeFailed.
	// +optional
	LastWakeFailureTime *metav1.Time `json:"lastWakeFailureTime,omitempty"`

	// ModeSince is when the current mode was programmed.
	// +optional
	ModeSince *metav1.Time `json:"modeSince,omitempty"`

	// Routes are the objects whose routes elasti currently points at the resolver.
	// +listType=atomic
	// +optional
	Routes []RouteRef `json:"routes,omitempty"`

	// TargetReplicas is the target's replica count as last seen through /scale.
	// +optional
	TargetReplicas int32 `json:"targetReplicas"`

	// ReadyEndpoints is how many target endpoints were ready when last seen.
	// +optional
	ReadyEndpoints int32 `json:"readyEndpoints"`

	// AuthorizationPolicies are the Istio AuthorizationPolicies ("namespace/name") that apply
	// to the target's pods. The resolver checks every caller against them, as the target's own
	// sidecar would, before it holds, wakes or replays a request: its replays reach the target
	// with the resolver's identity, so they must not carry a caller the policies would refuse.
	// +listType=set
	// +optional
	AuthorizationPolicies []string `json:"authorizationPolicies,omitempty"`
}

// ElastiService lets a Service scale to zero and wakes it on the first request.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=es,categories=elasti
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.status.mode`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.scaleTargetRef.name`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.targetReplicas`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Last Active",type=date,JSONPath=`.status.lastActivityTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ElastiService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ElastiServiceSpec   `json:"spec"`
	Status ElastiServiceStatus `json:"status,omitempty"`
}

// ElastiServiceList is a list of ElastiServices.
// +kubebuilder:object:root=true
type ElastiServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ElastiService `json:"items"`
}
