// Package dashboard checks the Grafana dashboard that the chart ships
// (charts/elasti/dashboards/elasti.json): every metric its PromQL names must be one that
// elasti-controller or elasti-resolver registers. Its tests run in the unit tier.
package dashboard
