package reconciler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
)

// Metrics. Labels are bounded by the number of ElastiServices: namespace and name, plus a
// small fixed set of values; never a URI or an error text.
var (
	modeGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "elasti_controller_mode",
		Help: "1 for the mode each ElastiService is in (Serve or Proxy), 0 for the other.",
	}, []string{"namespace", "name", "mode"})
	scaleEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "elasti_controller_scale_events_total",
		Help: "Replica changes made by elasti, by direction (to_zero, up).",
	}, []string{"namespace", "name", "direction"})
	wakeSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "elasti_controller_wake_duration_seconds",
		Help:    "Time from a scale-up from zero to the switch back to Serve mode.",
		Buckets: []float64{0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300},
	}, []string{"namespace", "name"})
	wakeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "elasti_controller_wake_failures_total",
		Help: "Wakes from zero that had no ready endpoint within spec.wakeTimeout.",
	}, []string{"namespace", "name"})
	routeWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "elasti_controller_route_writes_total",
		Help: "Writes to routing objects, by kind (VirtualService, EndpointSlice, Service, DestinationRule, AuthorizationPolicy).",
	}, []string{"kind"})
)

// Collectors returns the reconciler's metrics, for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{modeGauge, scaleEvents, wakeSeconds, wakeFailures, routeWrites}
}

func observeMode(es *v1alpha1.ElastiService) {
	for _, m := range []v1alpha1.Mode{v1alpha1.ModeServe, v1alpha1.ModeProxy} {
		v := 0.0
		if es.Status.Mode == m {
			v = 1
		}
		modeGauge.WithLabelValues(es.Namespace, es.Name, string(m)).Set(v)
	}
}

func observeWake(es *v1alpha1.ElastiService, now time.Time) {
	if es.Status.LastScaledUpTime != nil {
		wakeSeconds.WithLabelValues(es.Namespace, es.Name).Observe(now.Sub(es.Status.LastScaledUpTime.Time).Seconds())
	}
}

func forgetMetrics(namespace, name string) {
	labels := prometheus.Labels{"namespace": namespace, "name": name}
	modeGauge.DeletePartialMatch(labels)
	scaleEvents.DeletePartialMatch(labels)
	wakeSeconds.DeletePartialMatch(labels)
	wakeFailures.DeletePartialMatch(labels)
}
