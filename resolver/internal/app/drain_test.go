package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/elasti-dev/elasti/resolver/internal/metrics"
)

// Once the drain timeout runs out (the throttler drains), every request still held is answered
// 503 with Retry-After and never replayed, while a replay already under way finishes: Shutdown
// waits for it and then returns.
func TestDrainAnswersHeldRequests(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		if r.URL.Path == "/replaying" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	h := newHarness(t, backend)
	m := h.Metrics
	get := func(path string) <-chan string {
		got := make(chan string, 1)
		go func() {
			res, err := h.client.Get("http://app.shop" + path)
			if err != nil {
				got <- err.Error()
				return
			}
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			got <- fmt.Sprintf("%d retry-after=%q close=%v %s", res.StatusCode, res.Header.Get("Retry-After"), res.Close, b)
		}()
		return got
	}
	wait := func(what string, got <-chan string) string {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer to %s", what)
			return ""
		}
	}

	// One request held, then replayed and still at the target when the drain runs out.
	replaying := get("/replaying")
	h.waitPending(t, 1)
	h.setReady(true)
	<-arrived
	// The target goes away again, and the next requests are held.
	h.setReady(false)
	const n = 3
	var held []<-chan string
	for range n {
		held = append(held, get("/held"))
	}
	h.waitPending(t, n)

	stopped := make(chan error, 1)
	go func() { stopped <- h.srv.Shutdown(context.Background()) }()
	h.Throttler.Drain()
	for i, got := range held {
		s := wait("a held request", got)
		if !strings.HasPrefix(s, `503 retry-after="1" close=true `) || !strings.Contains(s, "shutting down") {
			t.Errorf("held request %d after the drain = %q, want 503 with Retry-After and Connection: close, saying the resolver is shutting down", i, s)
		}
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) while a replay was under way", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if s := wait("the replay", replaying); !strings.HasPrefix(s, "200 ") || !strings.HasSuffix(s, " ok") {
		t.Errorf("replay under way at the drain = %q, want 200 ok", s)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once every request was answered")
	}

	// Every handler has returned: a request answered 503 never reached the target.
	mu.Lock()
	if want := []string{"/replaying"}; !slices.Equal(paths, want) {
		t.Errorf("target saw %v, want %v", paths, want)
	}
	mu.Unlock()
	for _, c := range []struct {
		class, outcome string
		want           float64
	}{{"5xx", metrics.OutcomeDraining, n}, {"2xx", metrics.OutcomeReplayed, 1}} {
		if got := testutil.ToFloat64(m.Responses.WithLabelValues("shop", "app", c.class, c.outcome)); got != c.want {
			t.Errorf("responses %s %s = %v, want %v", c.class, c.outcome, got, c.want)
		}
	}
	if held, pending := testutil.ToFloat64(m.Held.WithLabelValues("shop", "app")), testutil.ToFloat64(m.PendingTotal); held != 0 || pending != 0 {
		t.Errorf("held gauges after the drain = %v, %v; want 0, 0", held, pending)
	}
}
