package dashboard

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/elasti-dev/elasti/controller"
	"github.com/elasti-dev/elasti/internal/testsupport/repo"
	"github.com/elasti-dev/elasti/resolver"
)

func dashboardPath() string { return repo.Path("charts", "elasti", "dashboards", "elasti.json") }

// query is one PromQL expression of the dashboard and where it is.
type query struct {
	where, expr string
}

// queries walks a Grafana dashboard and returns every PromQL expression: panel targets ("expr",
// in rows and nested panels too) and the queries of template variables.
func queries(raw []byte) ([]query, error) {
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	var out []query
	var walk func(path string, v any) error
	walk = func(path string, v any) error {
		switch v := v.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok {
				out = append(out, query{where: path, expr: e})
			}
			if v["type"] == "query" && v["name"] != nil {
				q := v["query"]
				if m, ok := q.(map[string]any); ok {
					q = m["query"]
				}
				s, _ := q.(string)
				expr, err := templateQuery(s)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				if expr != "" {
					out = append(out, query{where: fmt.Sprintf("%s (variable %v)", path, v["name"]), expr: expr})
				}
			}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if err := walk(path+"."+k, v[k]); err != nil {
					return err
				}
			}
		case []any:
			for i, e := range v {
				if err := walk(fmt.Sprintf("%s[%d]", path, i), e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return out, walk("", doc)
}

// withSeries gives each vector of cs one series, so that a registry's Gather reports it:
// a vector with no series is invisible there. Label values are empty; only names matter here.
func withSeries(t *testing.T, cs []prometheus.Collector) {
	t.Helper()
	for _, c := range cs {
		var get func(...string) error
		switch v := c.(type) {
		case *prometheus.CounterVec:
			get = func(l ...string) error { _, err := v.GetMetricWithLabelValues(l...); return err }
		case *prometheus.GaugeVec:
			get = func(l ...string) error { _, err := v.GetMetricWithLabelValues(l...); return err }
		case *prometheus.HistogramVec:
			get = func(l ...string) error { _, err := v.GetMetricWithLabelValues(l...); return err }
		case *prometheus.SummaryVec:
			get = func(l ...string) error { _, err := v.GetMetricWithLabelValues(l...); return err }
		default:
			continue // a plain metric always has its one series
		}
		ok := false
		for n := 0; n <= 16 && !ok; n++ {
			ok = get(make([]string, n)...) == nil
		}
		if !ok {
			t.Fatalf("could not give %T a series", c)
		}
	}
}

// seriesNames are the names of the series a gathered family exposes: a classic histogram's
// _bucket, _sum and _count, a summary's own name with _sum and _count.
func seriesNames(mf *dto.MetricFamily) []string {
	n := mf.GetName()
	switch mf.GetType() {
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		return []string{n + "_bucket", n + "_sum", n + "_count"}
	case dto.MetricType_SUMMARY:
		return []string{n, n + "_sum", n + "_count"}
	default:
		return []string{n}
	}
}

// registered returns every series name a binary serves, mapped to the binaries that serve it.
// Each binary serves controller-runtime's registry, into which it registers its own collectors;
// here each binary's collectors go into a registry of their own, gathered with
// controller-runtime's. controller-runtime's own vectors count only once they have a series.
func registered(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for bin, cs := range map[string][]prometheus.Collector{
		"elasti-controller": controller.Collectors(),
		"elasti-resolver":   resolver.Collectors(),
	} {
		if len(cs) == 0 {
			t.Fatalf("%s registers no collector of its own", bin)
		}
		reg := prometheus.NewPedanticRegistry()
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				t.Fatalf("%s: %v", bin, err)
			}
		}
		withSeries(t, cs)
		families, err := prometheus.Gatherers{ctrlmetrics.Registry, reg}.Gather()
		if err != nil {
			t.Fatalf("gathering %s's metrics: %v", bin, err)
		}
		for _, mf := range families {
			for _, n := range seriesNames(mf) {
				out[n] = append(out[n], bin)
			}
		}
	}
	return out
}

// unknownMetrics returns, per query location, the metric names that no binary registers.
func unknownMetrics(qs []query, known map[string][]string) (map[string][]string, []string, error) {
	unknown := map[string][]string{}
	var used []string
	for _, q := range qs {
		names, err := metricNames(q.expr)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", q.where, err)
		}
		if len(names) == 0 {
			return nil, nil, fmt.Errorf("%s: %q selects no metric", q.where, q.expr)
		}
		for _, n := range names {
			if !slices.Contains(used, n) {
				used = append(used, n)
			}
			if len(known[n]) == 0 {
				unknown[q.where] = append(unknown[q.where], n)
			}
		}
	}
	return unknown, used, nil
}

func TestDashboardMetricsAreRegistered(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath())
	if err != nil {
		t.Fatal(err)
	}
	qs, err := queries(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 10 {
		t.Fatalf("found %d queries in the dashboard; the walk is missing panels", len(qs))
	}
	known := registered(t)
	unknown, used, err := unknownMetrics(qs, known)
	if err != nil {
		t.Fatal(err)
	}
	for where, names := range unknown {
		t.Errorf("%s names %v, which neither binary registers", where, names)
	}
	// What the dashboard is for: mode per service, held requests, wake latency, scale events,
	// replay status, queue-full and timeouts.
	for _, want := range []string{
		"elasti_controller_mode", "elasti_resolver_requests_held", "elasti_controller_wake_duration_seconds_bucket",
		"elasti_controller_scale_events_total", "elasti_resolver_responses_total",
		"elasti_resolver_queue_full_total", "elasti_resolver_hold_timeouts_total",
	} {
		if !slices.Contains(used, want) {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
	t.Logf("%d queries name %d metrics", len(qs), len(used))
}

// The check fails for a metric no binary registers, for a histogram named without its suffix,
// and for a name only a regular expression gives.
func TestCheckCatchesUnknownMetrics(t *testing.T) {
	known := registered(t)
	for _, n := range []string{"elasti_controller_mode", "elasti_resolver_hold_duration_seconds_bucket",
		"elasti_resolver_hold_duration_seconds_count", "elasti_controller_activity_signals_total"} {
		if len(known[n]) == 0 {
			t.Errorf("%s is not among the registered names", n)
		}
	}
	dash := []byte(`{"panels": [{"type": "row", "panels": [{"targets": [
		{"expr": "sum(rate(elasti_resolver_responses_totl[5m]))"},
		{"expr": "histogram_quantile(0.5, rate(elasti_controller_wake_duration_seconds[5m]))"}]}]}],
	 "templating": {"list": [{"name": "ns", "type": "query", "query": {"query": "label_values(elasti_nope, namespace)"}}]}}`)
	qs, err := queries(dash)
	if err != nil {
		t.Fatal(err)
	}
	unknown, _, err := unknownMetrics(qs, known)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, names := range unknown {
		got = append(got, names...)
	}
	sort.Strings(got)
	want := []string{"elasti_controller_wake_duration_seconds", "elasti_nope", "elasti_resolver_responses_totl"}
	if !slices.Equal(got, want) {
		t.Errorf("unknown metrics = %v, want %v", got, want)
	}
	if _, _, err := unknownMetrics([]query{{where: "x", expr: `{__name__=~"elasti_.*"}`}}, known); err == nil {
		t.Errorf("a regular expression on __name__ was accepted")
	}
}
