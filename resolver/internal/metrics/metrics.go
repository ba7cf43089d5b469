package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

const prefix = "elasti_resolver_"

// Outcomes of a request, the outcome label of Responses.
const (
	OutcomePassed    = "passed"     // the target was ready; forwarded without holding
	OutcomeReplayed  = "replayed"   // held, then forwarded
	OutcomeProbe     = "probe"      // answered locally from spec.probeResponses
	OutcomeQueueFull = "queue_full" // 503: the target's or the global queue was full
	OutcomeTimeout   = "timeout"    // 504: held past the hold timeout
	OutcomeCancelled = "cancelled"  // the caller went away while held
	OutcomeGone      = "gone"       // 503: the ElastiService was deleted while held, and no tombstone
	OutcomeDraining  = "draining"   // 503: still held when the resolver's drain timeout ran out
	OutcomeDenied    = "denied"     // 403: the target's AuthorizationPolicies refuse the caller
	// OutcomeGoneForwarded: the ElastiService was deleted within the grace period; the request
	// went to the public Service, which points at the target's pods again.
	OutcomeGoneForwarded = "gone_forwarded"
	// OutcomeNotProxied: the ElastiService has never been in Proxy mode, so it has no private
	// Service and its routes and endpoints were never changed; the request went to the public
	// Service, which points at the target's pods.
	OutcomeNotProxied = "not_proxied"
)

// Results of an activity signal, the result label of ActivitySignals.
const (
	ResultAccepted    = "accepted"
	ResultNotLeader   = "not_leader"
	ResultRejected    = "rejected"
	ResultRateLimited = "rate_limited"
	ResultUnreachable = "unreachable"
)

// Metrics are the resolver's collectors.
type Metrics struct {
	Held            *prometheus.GaugeVec
	PendingTotal    prometheus.Gauge
	Responses       *prometheus.CounterVec
	HoldDuration    *prometheus.HistogramVec
	ColdStart       *prometheus.HistogramVec
	QueueFull       *prometheus.CounterVec
	HoldTimeouts    *prometheus.CounterVec
	ActivitySignals *prometheus.CounterVec
	UnknownHosts    prometheus.Counter
	Unsigned        prometheus.Counter
	UpstreamError   *prometheus.CounterVec

	// responses caches the Responses children by label values: looking one up in the vector
	// hashes four labels under a lock shared by every request. mu orders creating a child
	// against Forget, so the cache never keeps a child that Forget removed from the vector.
	mu        sync.Mutex
	responses sync.Map // responseKey -> prometheus.Counter
}

type responseKey struct {
	namespace, name string
	class, outcome  string
}

// New makes unregistered collectors.
func New() *Metrics {
	target := []string{"namespace", "name"}
	return &Metrics{
		Held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: prefix + "requests_held", Help: "Requests held now, waiting for the target to be ready.",
		}, target),
		PendingTotal: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: prefix + "pending_requests", Help: "Requests held now across all targets.",
		}),
		Responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "responses_total",
			Help: "Responses by status class (1xx..5xx) and outcome (passed, replayed, probe, queue_full, timeout, cancelled, gone, gone_forwarded, draining).",
		}, []string{"namespace", "name", "class", "outcome"}),
		HoldDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prefix + "hold_duration_seconds",
			Help:    "How long held requests waited for the target, whatever the outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300},
		}, target),
		ColdStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: prefix + "cold_start_seconds",
			Help: "From a held request's arrival to the first byte of its answer, by outcome: the cold start its caller saw.",
			// Finer than hold_duration below 5 s, where an app's own start usually ends.
			Buckets: []float64{.05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300},
		}, []string{"namespace", "name", "outcome"}),
		QueueFull: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "queue_full_total", Help: "Requests refused with 503 because a queue was full.",
		}, target),
		HoldTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "hold_timeouts_total", Help: "Requests answered 504 after the hold timeout.",
		}, target),
		ActivitySignals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "wake_signals_total",
			Help: "Activity signals sent to the controller, by kind (held, active) and result (accepted, not_leader, rejected, unreachable).",
		}, []string{"kind", "result"}),
		UnknownHosts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "unknown_host_total", Help: "Requests for no known ElastiService, answered 404 or 421.",
		}),
		Unsigned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "unsigned_headers_total",
			Help: "Requests whose X-Elasti-* headers were ignored because elasti's route rewrite did not sign them; the Host decided.",
		}),
		UpstreamError: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "upstream_errors_total", Help: "Forwarded requests that got no response from the target (502).",
		}, target),
	}
}

// Collectors lists every collector, for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Held, m.PendingTotal, m.Responses, m.HoldDuration, m.ColdStart, m.QueueFull,
		m.HoldTimeouts, m.ActivitySignals, m.UnknownHosts, m.Unsigned, m.UpstreamError}
}

// Response counts one response of the ElastiService namespace/name.
func (m *Metrics) Response(namespace, name string, code int, outcome string) {
	k := responseKey{namespace: namespace, name: name, class: Class(code), outcome: outcome}
	if c, ok := m.responses.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	m.mu.Lock()
	c := m.Responses.WithLabelValues(namespace, name, k.class, outcome)
	m.responses.Store(k, c)
	m.mu.Unlock()
	c.Inc()
}

// Forget drops the series of a deleted ElastiService.
func (m *Metrics) Forget(namespace, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.responses.Range(func(k, _ any) bool {
		if k := k.(responseKey); k.namespace == namespace && k.name == name {
			m.responses.Delete(k)
		}
		return true
	})
	l := prometheus.Labels{"namespace": namespace, "name": name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.Held, m.Responses, m.HoldDuration, m.QueueFull, m.HoldTimeouts, m.UpstreamError,
	} {
		v.DeletePartialMatch(l)
	}
}

var classes = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Class is the status class label of a status code: "2xx", or "hijacked" for 0.
func Class(code int) string {
	if code < 100 || code > 599 {
		return "hijacked"
	}
	return classes[code/100-1]
}
