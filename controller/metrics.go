// Package controller exports, outside internal/, what checks spanning both binaries need to know
// about elasti-controller: the Prometheus collectors it registers. The Grafana dashboard's test
// compares the metrics its queries name with these and the resolver's.
package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elasti-dev/elasti/controller/internal/activity"
	"github.com/elasti-dev/elasti/controller/internal/reconciler"
)

// Collectors returns the collectors elasti-controller registers next to controller-runtime's own.
func Collectors() []prometheus.Collector {
	return append(activity.Collectors(), reconciler.NewMetrics().Collectors()...)
}
