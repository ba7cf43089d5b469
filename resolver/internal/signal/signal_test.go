package signal

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/internal/wake"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
)

// controller is a fake activity endpoint that answers the codes in order, then 202.
type controller struct {
	mu      sync.Mutex
	codes   []int
	signals []wake.Signal
	auth    []string
	got     chan struct{}
}

func (c *controller) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var s wake.Signal
	if r.URL.Path != wake.Path || r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&s) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.signals = append(c.signals, s)
	c.auth = append(c.auth, r.Header.Get("Authorization"))
	code := http.StatusAccepted
	if len(c.codes) > 0 {
		code, c.codes = c.codes[0], c.codes[1:]
	}
	c.mu.Unlock()
	w.WriteHeader(code)
	c.got <- struct{}{}
}

func (c *controller) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-c.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("controller got %d signals, want %d", len(c.signals), n)
		}
	}
}

// waitCount waits, boundedly, until the counter reaches want: the client counts a call after
// the controller has answered it.
func waitCount(t *testing.T, counts *prometheus.CounterVec, kind, result string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(counts.WithLabelValues(kind, result)) < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := testutil.ToFloat64(counts.WithLabelValues(kind, result)); got != want {
		t.Errorf("%s signals with result %s = %v, want %v", kind, result, got, want)
	}
}

var key = types.NamespacedName{Namespace: "shop", Name: "app"}

func newClient(t *testing.T, c *controller, token string) (*Client, *prometheus.CounterVec) {
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	file := filepath.Join(t.TempDir(), "token")
	if token != "" {
		if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	counts := metrics.New().WakeSignals
	return New(ctx, Options{
		ControllerURL: srv.URL, TokenFile: file, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
		Interval: time.Hour, Signals: counts, Log: logr.Discard(),
	}), counts
}

func TestHeldSignalsAtOnceWithToken(t *testing.T) {
	tests := map[string]struct {
		token    string
		wantAuth string
	}{
		"with token":    {token: "abc", wantAuth: "Bearer abc"},
		"without token": {token: "", wantAuth: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctl := &controller{got: make(chan struct{}, 10)}
			c, counts := newClient(t, ctl, tc.token)
			var held atomic.Bool
			held.Store(true)
			c.Held(key, held.Load)
			ctl.wait(t, 1)
			held.Store(false)
			ctl.mu.Lock()
			defer ctl.mu.Unlock()
			if got, want := ctl.signals[0], (wake.Signal{Namespace: "shop", Name: "app", Held: true}); got != want {
				t.Errorf("signal = %+v, want %+v", got, want)
			}
			if got := ctl.auth[0]; got != tc.wantAuth {
				t.Errorf("Authorization = %q, want %q", got, tc.wantAuth)
			}
			waitCount(t, counts, "held", metrics.ResultAccepted, 1)
		})
	}
}

func TestHeldRetriesUntilAccepted(t *testing.T) {
	ctl := &controller{got: make(chan struct{}, 10), codes: []int{503, 500, 503}}
	c, counts := newClient(t, ctl, "")
	var held atomic.Bool
	held.Store(true)
	for range 20 {
		c.Held(key, held.Load) // de-duplicated: one loop
	}
	ctl.wait(t, 4)
	held.Store(false)
	waitCount(t, counts, "held", metrics.ResultAccepted, 1)
	waitCount(t, counts, "held", metrics.ResultNotLeader, 2)
	waitCount(t, counts, "held", metrics.ResultRejected, 1)
}

func TestUnreachableControllerIsCounted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln := httptest.NewServer(http.NotFoundHandler())
	url := ln.URL
	ln.Close() // nothing listens there any more
	counts := metrics.New().WakeSignals
	c := New(ctx, Options{ControllerURL: url, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Signals: counts, Log: logr.Discard()})
	var calls atomic.Int32
	c.Held(key, func() bool { return calls.Add(1) < 3 })
	waitCount(t, counts, "held", metrics.ResultUnreachable, 3)
}

func TestActiveAtMostOncePerInterval(t *testing.T) {
	ctl := &controller{got: make(chan struct{}, 10)}
	c, _ := newClient(t, ctl, "")
	for range 100 {
		c.Active(key)
	}
	ctl.wait(t, 1)
	// A second target has its own interval.
	other := types.NamespacedName{Namespace: "shop", Name: "other"}
	c.Active(other)
	ctl.wait(t, 1)
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if got := len(ctl.signals); got != 2 {
		t.Errorf("signals = %d, want 2 (one per target within the interval)", got)
	}
	for _, s := range ctl.signals {
		if s.Held {
			t.Errorf("active signal %+v has Held set", s)
		}
	}
}
