package reconciler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// Metrics are the reconciler's. Labels are bounded by the number of ElastiServices: namespace and
// name, plus a small fixed set of values; never a URI or an error text.
type Metrics struct {
	mode         *prometheus.GaugeVec
	scaleEvents  *prometheus.CounterVec
	wakeSeconds  *prometheus.HistogramVec
	wakeFailures *prometheus.CounterVec
	routeWrites  *prometheus.CounterVec
	probeReady   *prometheus.HistogramVec
}

// NewMetrics returns the reconciler's metrics, unregistered.
func NewMetrics() *Metrics {
	return &Metrics{
		mode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "elasti_controller_mode",
			Help: "1 for the mode each ElastiService is in (Serve or Proxy), 0 for the other.",
		}, []string{"namespace", "name", "mode"}),
		scaleEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elasti_controller_scale_events_total",
			Help: "Replica changes made by elasti, by direction (to_zero, up).",
		}, []string{"namespace", "name", "direction"}),
		wakeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "elasti_controller_wake_duration_seconds",
			Help:    "Time from a scale-up from zero to the switch back to Serve mode.",
			Buckets: []float64{0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300},
		}, []string{"namespace", "name"}),
		wakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elasti_controller_wake_failures_total",
			Help: "Wakes from zero that had no ready endpoint within spec.wakeTimeout.",
		}, []string{"namespace", "name"}),
		routeWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elasti_controller_route_writes_total",
			Help: "Writes to routing objects, by kind (VirtualService, EndpointSlice, Service, DestinationRule, AuthorizationPolicy).",
		}, []string{"kind"}),
		probeReady: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "elasti_controller_probe_ready_seconds",
			Help:    "Time from a woken pod's start to the first pass of elasti's own probe of it, when held requests may go to it.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60, 120},
		}, []string{"namespace", "name"}),
	}
}

// Collectors returns the metrics, for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.mode, m.scaleEvents, m.wakeSeconds, m.wakeFailures, m.routeWrites, m.probeReady}
}

func (m *Metrics) observeMode(es *v1alpha1.ElastiService) {
	for _, mode := range []v1alpha1.Mode{v1alpha1.ModeServe, v1alpha1.ModeProxy} {
		v := 0.0
		if es.Status.Mode == mode {
			v = 1
		}
		m.mode.WithLabelValues(es.Namespace, es.Name, string(mode)).Set(v)
	}
}

func (m *Metrics) observeWake(es *v1alpha1.ElastiService, now time.Time) {
	if es.Status.LastScaledUpTime != nil {
		m.wakeSeconds.WithLabelValues(es.Namespace, es.Name).Observe(now.Sub(es.Status.LastScaledUpTime.Time).Seconds())
	}
}

func (m *Metrics) forget(namespace, name string) {
	labels := prometheus.Labels{"namespace": namespace, "name": name}
	m.mode.DeletePartialMatch(labels)
	m.scaleEvents.DeletePartialMatch(labels)
	m.wakeSeconds.DeletePartialMatch(labels)
	m.wakeFailures.DeletePartialMatch(labels)
	m.probeReady.DeletePartialMatch(labels)
}
