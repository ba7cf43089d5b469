package triggers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
)

// promServer answers /api/v1/query with body for every query, and records the last query.
func promServer(t *testing.T, status int, body string, lastQuery *string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		_ = r.ParseForm()
		if lastQuery != nil {
			*lastQuery = r.Form.Get("query")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func vector(values ...string) string {
	var items []string
	for _, v := range values {
		items = append(items, `{"metric":{},"value":[1700000000,"`+v+`"]}`)
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(items, ",") + `]}}`
}

func es(server, query, threshold string) *v1alpha1.ElastiService {
	e := &v1alpha1.ElastiService{}
	e.Namespace, e.Spec.Service = "shop", "target"
	e.Spec.Triggers = []v1alpha1.Trigger{{Type: v1alpha1.TriggerPrometheus, Metadata: v1alpha1.TriggerMetadata{
		ServerAddress: server, Query: query, Threshold: threshold,
	}}}
	return e
}

func TestEvaluate(t *testing.T) {
	tests := map[string]struct {
		status     int
		body       string
		threshold  string
		wantActive bool
		wantErr    bool
	}{
		"above threshold is active":  {200, vector("0.5"), "0.1", true, false},
		"at threshold is idle":       {200, vector("0.1"), "0.1", false, false},
		"empty vector is idle":       {200, vector(), "0", false, false},
		"NaN is idle":                {200, vector("NaN"), "0", false, false},
		"scalar":                     {200, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}`, "1", true, false},
		"several series is an error": {200, vector("1", "2"), "0", false, true},
		"server error is an error":   {500, `{"status":"error","errorType":"internal","error":"boom"}`, "0", false, true},
		"bad query is an error":      {400, `{"status":"error","errorType":"bad_data","error":"parse error"}`, "0", false, true},
		"not prometheus is an error": {200, `<html>`, "0", false, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := promServer(t, tc.status, tc.body, nil)
			got := Evaluate(context.Background(), es(srv.URL, "up", tc.threshold))
			if got.Active != tc.wantActive || (got.Err != nil) != tc.wantErr {
				t.Errorf("Evaluate() = %+v, want active %v, error %v", got, tc.wantActive, tc.wantErr)
			}
		})
	}
}

func TestEvaluateUnreachableIsAnError(t *testing.T) {
	srv := promServer(t, 200, vector("0"), nil)
	srv.Close()
	if got := Evaluate(context.Background(), es(srv.URL, "up", "0")); got.Err == nil {
		t.Errorf("Evaluate() against a closed server = %+v, want an error", got)
	}
}

func TestEvaluateUsesIstioMetricByDefault(t *testing.T) {
	var q string
	srv := promServer(t, 200, vector("0"), &q)
	if got := Evaluate(context.Background(), es(srv.URL, "", "")); got.Err != nil {
		t.Fatal(got.Err)
	}
	for _, want := range []string{"istio_requests_total", `destination_service_name="target"`, `destination_service_namespace="shop"`} {
		if !strings.Contains(q, want) {
			t.Errorf("default query %q does not contain %q", q, want)
		}
	}
}
