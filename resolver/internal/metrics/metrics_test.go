package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestResponseCountsAndForget(t *testing.T) {
	m := New()
	for range 3 {
		m.Response("shop", "app", 204, OutcomePassed)
	}
	m.Response("shop", "app", 503, OutcomeQueueFull)
	m.Response("bank", "db", 200, OutcomeReplayed)
	if got := testutil.ToFloat64(m.Responses.WithLabelValues("shop", "app", "2xx", OutcomePassed)); got != 3 {
		t.Errorf("shop/app 2xx passed = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.Responses.WithLabelValues("shop", "app", "5xx", OutcomeQueueFull)); got != 1 {
		t.Errorf("shop/app 5xx queue_full = %v, want 1", got)
	}

	m.Forget("shop", "app")
	if got := testutil.CollectAndCount(m.Responses); got != 1 {
		t.Fatalf("series after Forget = %d, want only bank/db's", got)
	}
	// A target of the same name made again counts from zero, in a series the vector exports:
	// the cache must not hand back the child Forget removed.
	m.Response("shop", "app", 204, OutcomePassed)
	if got := testutil.CollectAndCount(m.Responses); got != 2 {
		t.Errorf("series after a new response = %d, want 2", got)
	}
	if got := testutil.ToFloat64(m.Responses.WithLabelValues("shop", "app", "2xx", OutcomePassed)); got != 1 {
		t.Errorf("shop/app 2xx passed after Forget = %v, want 1", got)
	}
}

func TestClass(t *testing.T) {
	tests := map[int]string{0: "hijacked", 99: "hijacked", 100: "1xx", 101: "1xx", 204: "2xx", 399: "3xx", 404: "4xx", 599: "5xx", 600: "hijacked", 499: "4xx"}
	for code, want := range tests {
		if got := Class(code); got != want {
			t.Errorf("Class(%d) = %q, want %q", code, got, want)
		}
	}
}
