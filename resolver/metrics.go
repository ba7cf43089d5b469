// Package resolver exports, outside internal/, what checks spanning both binaries need to know
// about elasti-resolver: the Prometheus collectors it registers. The Grafana dashboard's test
// compares the metrics its queries name with these and the controller's.
package resolver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elasti-dev/elasti/resolver/internal/metrics"
)

// Collectors returns a fresh set of the collectors elasti-resolver registers next to
// controller-runtime's own: cmd/main.go registers metrics.New().Collectors().
func Collectors() []prometheus.Collector { return metrics.New().Collectors() }
