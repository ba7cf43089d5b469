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

	"github.com/elasti-dev/elasti/api/v1alpha1"
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

func TestAllowList(t *testing.T) {
	tests := map[string]struct {
		list    string
		allowed []string
		refused []string
	}{
		"empty allows any address": {"", []string{"http://prometheus.monitoring:9090", "http://169.254.169.254/latest"}, nil},
		"URL: scheme, host and port": {"http://prometheus.monitoring:9090",
			[]string{"http://prometheus.monitoring:9090", "http://prometheus.monitoring:9090/", "http://PROMETHEUS.monitoring.:9090"},
			[]string{"https://prometheus.monitoring:9090", "http://prometheus.monitoring:9091", "http://prometheus.monitoring",
				"http://prometheus.monitoring.evil.example:9090", "http://prometheus.monitoring:9090@evil.example:9090", "ftp://prometheus.monitoring:9090"}},
		"URL: default port": {"http://10.0.0.5", []string{"http://10.0.0.5", "http://10.0.0.5:80"}, []string{"http://10.0.0.5:8080"}},
		"URL: path prefix by whole segments": {"https://thanos.example/prometheus/",
			[]string{"https://thanos.example/prometheus", "https://thanos.example/prometheus/tenant-a"},
			[]string{"https://thanos.example", "https://thanos.example/prometheus-admin", "https://thanos.example/prometheus/../admin",
				"https://thanos.example/prometheus/%2e%2e/admin"}},
		"host: any port and scheme": {"prometheus.monitoring",
			[]string{"http://prometheus.monitoring:9090", "https://prometheus.monitoring"},
			[]string{"http://prometheus.monitoring.svc:9090", "http://a.prometheus.monitoring"}},
		"host: wildcard subdomains and a port": {"*.monitoring.svc.cluster.local:9090",
			[]string{"http://prometheus.monitoring.svc.cluster.local:9090", "https://a.b.monitoring.svc.cluster.local:9090"},
			[]string{"http://monitoring.svc.cluster.local:9090", "http://prometheus.monitoring.svc.cluster.local", "http://evilmonitoring.svc.cluster.local:9090"}},
		"several entries":      {" http://a:1 , [::1]:9090,", []string{"http://a:1", "http://[::1]:9090"}, []string{"http://a:2", "http://[::1]:80"}},
		"not a URL is refused": {"a", nil, []string{"a", "", "http://"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l, err := ParseAllowList(tc.list)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range tc.allowed {
				if !l.Allows(a) {
					t.Errorf("Allows(%q) = false, want true", a)
				}
			}
			for _, a := range tc.refused {
				if l.Allows(a) {
					t.Errorf("Allows(%q) = true, want false", a)
				}
			}
		})
	}
	for _, bad := range []string{"ftp://prometheus", "http://", "http://u:p@prometheus", "http://prometheus?x=1", "prometheus:99999", "prometheus/x", "*.", "*"} {
		if _, err := ParseAllowList(bad); err == nil {
			t.Errorf("ParseAllowList(%q) succeeded, want an error", bad)
		}
	}
}

// A trigger whose server is not allowed is never asked, and its condition names the field.
func TestEvaluateAllowList(t *testing.T) {
	var queries []string
	srv := promServer(t, vector(), 200, vector(), &queries)
	tests := map[string]struct {
		list      string
		wantAsked bool
	}{
		"allowed":     {srv.URL, true},
		"not allowed": {"http://prometheus.monitoring:9090", false},
		"empty list":  {"", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			queries = nil
			l, err := ParseAllowList(tc.list)
			if err != nil {
				t.Fatal(err)
			}
			got := (&Evaluator{Allowed: l}).Evaluate(context.Background(), es(srv.URL, "up", "0"), time.Minute)
			if asked := len(queries) > 0; asked != tc.wantAsked {
				t.Errorf("server asked %d times, want asked: %v", len(queries), tc.wantAsked)
			}
			if tc.wantAsked {
				if got.Err != nil {
					t.Errorf("Evaluate() = %+v, want no error", got)
				}
				return
			}
			if got.Err == nil || got.Reason != ReasonAddressNotAllowed || !strings.Contains(got.Message, "spec.triggers[0].metadata.serverAddress") {
				t.Errorf("Evaluate() = %+v, want reason %s and a message naming spec.triggers[0].metadata.serverAddress", got, ReasonAddressNotAllowed)
			}
		})
	}
}

// An allowed server cannot send the controller on to one that is not.
func TestEvaluateRefusesRedirectToAddressNotAllowed(t *testing.T) {
	var queries []string
	elsewhere := promServer(t, vector(), 200, vector(), &queries)
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(allowed.Close)
	l, err := ParseAllowList(allowed.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got := (&Evaluator{Allowed: l}).Evaluate(context.Background(), es(allowed.URL, "up", "0"), time.Minute); got.Err == nil || len(queries) != 0 {
		t.Errorf("Evaluate() = %+v after %d queries elsewhere, want an error and none", got, len(queries))
	}
}

// The condition says the same whatever the server did, so that an ElastiService cannot be used
// to learn what answers at an address; the detail is in Err, for the controller's log.
func TestEvaluateFailureSaysNothingOfTheServer(t *testing.T) {
	serve := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	hung := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hung }))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(hung) }) // before Close, which waits for the handler
	tests := map[string]struct {
		server, detail string
	}{
		"500":                {serve(500, `{"status":"error","errorType":"internal","error":"boom"}`), "500"},
		"404":                {serve(404, "404 page not found"), "404"},
		"refused connection": {closed.URL, "refused"},
		"garbage body":       {serve(200, "SSH-2.0-OpenSSH_9.6"), "invalid character 'S'"},
		"timeout":            {hang.URL, "deadline exceeded"},
	}
	var messages []string
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			got := Evaluate(ctx, es(tc.server, "up", "0"), time.Minute)
			if got.Err == nil || !strings.Contains(got.Err.Error(), tc.detail) {
				t.Errorf("Err = %v, want the detail %q for the log", got.Err, tc.detail)
			}
			if got.Reason != ReasonQueryFailed {
				t.Errorf("Reason = %q, want %q", got.Reason, ReasonQueryFailed)
			}
			messages = append(messages, got.Message)
		})
	}
	want := "trigger 0 (prometheus) query failed; see the controller's log"
	for _, m := range messages {
		if m != want {
			t.Errorf("Message = %q, want %q for every failure", m, want)
		}
	}
}
