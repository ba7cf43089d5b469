package triggers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
)

// promServer answers /api/v1/query: an instant comparison (the "is it active now" question) with
// now, a window query with status and body. It records every query asked, in order.
func promServer(t *testing.T, now string, status int, body string, queries *[]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		_ = r.ParseForm()
		q := r.Form.Get("query")
		if queries != nil {
			*queries = append(*queries, q)
		}
		w.Header().Set("Content-Type", "application/json")
		if !strings.HasPrefix(q, "max_over_time(") {
			fmt.Fprint(w, now)
			return
		}
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
		status   int
		body     string
		wantLast time.Time
		wantErr  bool
	}{
		"active within the window": {200, vector("1700000123.5"), time.Unix(1700000123, 5e8), false},
		"never active is empty":    {200, vector(), time.Time{}, false},
		"NaN is empty":             {200, vector("NaN"), time.Time{}, false},
		"scalar": {200, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1700000001"]}}`,
			time.Unix(1700000001, 0), false},
		"several series is an error": {200, vector("1", "2"), time.Time{}, true},
		"server error is an error":   {500, `{"status":"error","errorType":"internal","error":"boom"}`, time.Time{}, true},
		"bad query is an error":      {400, `{"status":"error","errorType":"bad_data","error":"parse error"}`, time.Time{}, true},
		"not prometheus is an error": {200, `<html>`, time.Time{}, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := promServer(t, vector(), tc.status, tc.body, nil)
			got := Evaluate(context.Background(), es(srv.URL, "up", "0.1"), time.Minute)
			if !got.LastActive.Equal(tc.wantLast) || (got.Err != nil) != tc.wantErr {
				t.Errorf("Evaluate() = %+v, want last active %v, error %v", got, tc.wantLast, tc.wantErr)
			}
		})
	}
}

// Activity that began after the window's latest aligned step is seen all the same: a trigger
// above its threshold now is active now, and the window is not asked.
func TestEvaluateActiveNow(t *testing.T) {
	var queries []string
	srv := promServer(t, vector("3"), 200, vector(), &queries)
	before := time.Now()
	got := Evaluate(context.Background(), es(srv.URL, "sum(rate(x[10s]))", "0"), 15*time.Second)
	if got.Err != nil || got.LastActive.Before(before) || got.LastActive.After(time.Now()) {
		t.Errorf("Evaluate() = %+v, want active at the time of the query", got)
	}
	if want := []string{"(sum(rate(x[10s]))) > 0"}; !slices.Equal(queries, want) {
		t.Errorf("queries = %q, want %q", queries, want)
	}

	queries = nil
	srv = promServer(t, `{"status":"error","errorType":"bad_data","error":"parse error"}`, 200, vector(), &queries)
	if got := Evaluate(context.Background(), es(srv.URL, "q", "0"), time.Minute); got.Err == nil || len(queries) != 1 {
		t.Errorf("Evaluate() with a failing instant query = %+v after %q, want an error and no window query", got, queries)
	}
}

func TestEvaluateUnreachableIsAnError(t *testing.T) {
	srv := promServer(t, vector(), 200, vector(), nil)
	srv.Close()
	if got := Evaluate(context.Background(), es(srv.URL, "up", "0"), time.Minute); got.Err == nil {
		t.Errorf("Evaluate() against a closed server = %+v, want an error", got)
	}
}

func TestEvaluateQueries(t *testing.T) {
	tests := map[string]struct {
		query, threshold string
		window           time.Duration
		want             []string
	}{
		"default query is Istio's request rate for the Service": {"", "", 15 * time.Minute, []string{
			"istio_requests_total", `destination_service_name="target"`, `destination_service_namespace="shop"`,
			"> 0)[900s:9s]",
		}},
		"user query and threshold, short window clamps the step": {"sum(rate(x[1m]))", "0.5", time.Minute, []string{
			"max_over_time(timestamp((sum(rate(x[1m]))) > 0.5)[60s:5s])",
		}},
		"long window clamps the step to a minute": {"q", "2", 7 * 24 * time.Hour, []string{"[604800s:60s]"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var queries []string
			srv := promServer(t, vector(), 200, vector(), &queries)
			if got := Evaluate(context.Background(), es(srv.URL, tc.query, tc.threshold), tc.window); got.Err != nil {
				t.Fatal(got.Err)
			}
			if len(queries) != 2 {
				t.Fatalf("queries = %q, want the instant comparison and the window", queries)
			}
			q := queries[1]
			for _, want := range tc.want {
				if !strings.Contains(q, want) {
					t.Errorf("query %q does not contain %q", q, want)
				}
			}
		})
	}
}
