package dashboard

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMetricNames(t *testing.T) {
	tests := map[string]struct {
		expr    string
		want    []string
		wantErr bool
	}{
		"bare":       {expr: "up", want: []string{"up"}},
		"matchers":   {expr: `foo_total{a="b", c=~"d|e", f!="}{,"}`, want: []string{"foo_total"}},
		"range rate": {expr: `rate(foo_total{a="b"}[$__rate_interval])`, want: []string{"foo_total"}},
		"aggregation by": {
			expr: `sum by (namespace, name) (rate(a_total[5m])) / on (namespace) group_left (name) b`,
			want: []string{"a_total", "b"},
		},
		"postfix by":        {expr: `sum(rate(x_bucket[1m])) by (le)`, want: []string{"x_bucket"}},
		"quantile":          {expr: `histogram_quantile(0.95, sum by (le) (rate(h_bucket{x="1"}[1h])))`, want: []string{"h_bucket"}},
		"binary and vector": {expr: `count(m == 1) or vector(0)`, want: []string{"m"}},
		"offset and bool":   {expr: `a offset 5m > bool 1e-3 unless b`, want: []string{"a", "b"}},
		"name matcher":      {expr: `{__name__="c_total", job="x"}`, want: []string{"c_total"}},
		"quoted name":       {expr: `{"d.total", job="x"}`, want: []string{"d.total"}},
		"strings and vars":  {expr: `label_replace(m, "dst", "$1", "src", "(sum)")` + " * ${factor}", want: []string{"m"}},
		"subquery":          {expr: `max_over_time(rate(e_total[5m])[1h:1m])`, want: []string{"e_total"}},
		"repeats once":      {expr: `f + f`, want: []string{"f"}},
		"numbers":           {expr: `0x1F + Inf + NaN + .5 + 2`, want: nil},
		"name regex":        {expr: `{__name__=~"elasti_.*"}`, wantErr: true},
		"unclosed brace":    {expr: `m{a="b"`, wantErr: true},
		"unclosed string":   {expr: `m{a="b}`, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := metricNames(tc.expr)
			if (err != nil) != tc.wantErr {
				t.Fatalf("metricNames(%q) error = %v, want error %v", tc.expr, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("metricNames(%q) (-want +got):\n%s", tc.expr, diff)
			}
		})
	}
}

func TestTemplateQuery(t *testing.T) {
	tests := map[string]struct {
		q, want string
		wantErr bool
	}{
		"label_values of a metric": {q: `label_values(m{ns=~"$ns", x=","}, name)`, want: `m{ns=~"$ns", x=","}`},
		"label_values of a label":  {q: `label_values(namespace)`, want: ""},
		"query_result":             {q: `query_result(sum by (a) (m))`, want: `sum by (a) (m)`},
		"unknown":                  {q: `metrics(elasti_.*)`, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := templateQuery(tc.q)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("templateQuery(%q) = %q, %v; want %q, error %v", tc.q, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
