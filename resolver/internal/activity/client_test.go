package activity

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	activityv1 "github.com/elasti-dev/elasti/api/activity/v1"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
)

// controller is a fake activity endpoint that answers the codes in order, then 202.
type controller struct {
	mu      sync.Mutex
	codes   []int
	signals []activityv1.Signal
	auth    []string
	at      []time.Time
	got     chan struct{}
}

func (c *controller) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var s activityv1.Signal
	if r.URL.Path != activityv1.Path || r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&s) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.signals = append(c.signals, s)
	c.auth = append(c.auth, r.Header.Get("Authorization"))
	c.at = append(c.at, time.Now())
	code := http.StatusAccepted
	if len(c.codes) > 0 {
		code, c.codes = c.codes[0], c.codes[1:]
	}
	c.mu.Unlock()
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
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
	counts := metrics.New().ActivitySignals
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
			if got, want := ctl.signals[0], (activityv1.Signal{Namespace: "shop", Name: "app", Held: true}); got != want {
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

// A caller that leaves at once (a short client timeout) still wakes the target, even when the
// first signals reach a standby.
func TestHeldSignalIsDeliveredAfterTheCallerLeft(t *testing.T) {
	ctl := &controller{got: make(chan struct{}, 10), codes: []int{503, 503}}
	c, counts := newClient(t, ctl, "")
	c.Held(key, func() bool { return false })
	ctl.wait(t, 3)
	waitCount(t, counts, "held", metrics.ResultNotLeader, 2)
	waitCount(t, counts, "held", metrics.ResultAccepted, 1)
}

// A 429 (too many token reviews from this address) is retried no sooner than it asks.
func TestRateLimitedSignalWaitsForRetryAfter(t *testing.T) {
	ctl := &controller{got: make(chan struct{}, 10), codes: []int{http.StatusTooManyRequests}}
	c, counts := newClient(t, ctl, "")
	var held atomic.Bool
	held.Store(true)
	c.Held(key, held.Load)
	ctl.wait(t, 2)
	held.Store(false)
	waitCount(t, counts, "held", metrics.ResultRateLimited, 1)
	waitCount(t, counts, "held", metrics.ResultAccepted, 1)
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if gap := ctl.at[1].Sub(ctl.at[0]); gap < 900*time.Millisecond {
		t.Errorf("retried %v after a 429 with Retry-After: 1", gap)
	}
}

func TestUnreachableControllerIsCounted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln := httptest.NewServer(http.NotFoundHandler())
	url := ln.URL
	ln.Close() // nothing listens there any more
	counts := metrics.New().ActivitySignals
	c := New(ctx, Options{ControllerURL: url, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Signals: counts, Log: logr.Discard()})
	// Undelivered, the hold is retried after its caller left too (deliverPatience), so the
	// count only grows: every attempt is counted unreachable, and nothing else.
	c.Held(key, func() bool { return false })
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(counts.WithLabelValues("held", metrics.ResultUnreachable)) < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := testutil.ToFloat64(counts.WithLabelValues("held", metrics.ResultUnreachable)); got < 3 {
		t.Errorf("held signals with result unreachable = %v, want at least 3", got)
	}
	if n := testutil.CollectAndCount(counts); n != 1 {
		t.Errorf("%d result series counted, want only held/unreachable", n)
	}
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

// replicas is a fake activity Service behind kube-proxy: it balances connections, not
// requests, so every connection reaches one replica for its life. The first standbys
// connections reach replicas that do not lead; the later ones reach the leader.
type replicas struct {
	standbys int
	mu       sync.Mutex
	conns    []string       // remote addresses, in the order the connections arrived
	requests map[string]int // per connection
	accepted chan string    // the connection the leader accepted a signal on
}

func (f *replicas) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if _, ok := f.requests[r.RemoteAddr]; !ok {
		f.conns = append(f.conns, r.RemoteAddr)
	}
	f.requests[r.RemoteAddr]++
	standby := slices.Index(f.conns, r.RemoteAddr) < f.standbys
	f.mu.Unlock()
	if standby {
		http.Error(w, "not the leader", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	select {
	case f.accepted <- r.RemoteAddr + " " + r.URL.Path:
	default:
	}
}

// errorLogs counts the errors a client logs.
func errorLogs() (logr.Logger, *atomic.Int32) {
	var n atomic.Int32
	return funcr.New(func(prefix, args string) {
		if strings.Contains(args, `"error"`) {
			n.Add(1)
		}
	}, funcr.Options{}), &n
}

// A standby's 503 is retried at once on a new connection, not after the backoff for an
// unreachable controller, and not on a connection to the same standby.
func TestNotLeaderRetriesOnNewConnection(t *testing.T) {
	f := &replicas{standbys: 3, requests: map[string]int{}, accepted: make(chan string, 1)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log, errs := errorLogs()
	counts := metrics.New().ActivitySignals
	// Backoff an hour: only the not-leader backoff, at its defaults, may be used.
	c := New(ctx, Options{ControllerURL: srv.URL, Backoff: time.Hour, MaxBackoff: time.Hour, Interval: time.Hour,
		Signals: counts, Log: log})
	start := time.Now()
	var held atomic.Bool
	held.Store(true)
	c.Held(key, held.Load)
	var leader string
	select {
	case leader = <-f.accepted:
		leader, _, _ = strings.Cut(leader, " ")
	case <-time.After(5 * time.Second):
		t.Fatal("the signal never reached the leader")
	}
	took := time.Since(start)
	held.Store(false)
	t.Logf("reached the leader past %d standbys in %s", f.standbys, took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("the signal reached the leader after %s past %d standbys, want well under a second", took, f.standbys)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got, want := slices.Index(f.conns, leader), f.standbys; got != want {
		t.Errorf("accepted on connection %d, want %d: every 503 should close its connection", got, want)
	}
	for _, conn := range f.conns[:f.standbys] {
		if got := f.requests[conn]; got != 1 {
			t.Errorf("a standby's connection carried %d signals, want 1", got)
		}
	}
	waitCount(t, counts, "held", metrics.ResultNotLeader, float64(f.standbys))
	if n := errs.Load(); n != 0 {
		t.Errorf("logged %d errors; a standby's answer is routine", n)
	}
}

// While no replica leads, a held target is signalled at least every NotLeaderMaxBackoff, so
// that a new leader hears of it within that of its election.
func TestNotLeaderBackoffIsShortAndBounded(t *testing.T) {
	const gap = 1200 * time.Millisecond
	var (
		mu       sync.Mutex
		attempts []time.Time
	)
	accepted := make(chan time.Time, 1)
	start := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		mu.Lock()
		attempts = append(attempts, now)
		mu.Unlock()
		if now.Sub(start) < gap {
			http.Error(w, "not the leader", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		select {
		case accepted <- now:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := New(ctx, Options{ControllerURL: srv.URL, Backoff: time.Hour, MaxBackoff: time.Hour, Interval: time.Hour, Log: logr.Discard()})
	var held atomic.Bool
	held.Store(true)
	c.Held(key, held.Load)
	var at time.Time
	select {
	case at = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the signal was never accepted")
	}
	held.Store(false)
	t.Logf("accepted %s after the election", (at.Sub(start) - gap).Round(time.Millisecond))
	// Generous slack for a loaded machine; the old doubling to 5 s left 800 ms between tries.
	const slack = 250 * time.Millisecond
	if late := at.Sub(start) - gap; late > c.o.NotLeaderMaxBackoff+slack {
		t.Errorf("accepted %s after the election, want within %s", late, c.o.NotLeaderMaxBackoff+slack)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(attempts); i++ {
		if d := attempts[i].Sub(attempts[i-1]); d > c.o.NotLeaderMaxBackoff+slack {
			t.Errorf("attempt %d came %s after the one before, want at most %s", i, d, c.o.NotLeaderMaxBackoff+slack)
		}
	}
}

// Between wakes the keepalive finds the leader past the standbys and leaves its connection
// idle in the pool: a wake's first signal then reaches the leader at once, with no 503.
func TestKeepAliveLeavesTheWakeAConnectionToTheLeader(t *testing.T) {
	f := &replicas{standbys: 2, requests: map[string]int{}, accepted: make(chan string, 1)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	counts := metrics.New().ActivitySignals
	c := New(ctx, Options{ControllerURL: srv.URL, Backoff: time.Hour, MaxBackoff: time.Hour, Interval: time.Hour,
		KeepAlive: 300 * time.Millisecond, Signals: counts, Log: logr.Discard()})
	select {
	case got := <-f.accepted:
		if _, path, _ := strings.Cut(got, " "); path != activityv1.KeepAlivePath {
			t.Fatalf("the leader's first request was for %s, want %s", path, activityv1.KeepAlivePath)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no keepalive reached the leader")
	}
	waitCount(t, counts, "keepalive", metrics.ResultNotLeader, float64(f.standbys))
	// Counted once its answer is read, so its connection is back in the pool.
	waitCount(t, counts, "keepalive", metrics.ResultAccepted, 1)

	var held atomic.Bool
	held.Store(true)
	c.Held(key, held.Load)
	waitCount(t, counts, "held", metrics.ResultAccepted, 1)
	held.Store(false)
	if got := testutil.ToFloat64(counts.WithLabelValues("held", metrics.ResultNotLeader)); got != 0 {
		t.Errorf("the wake's signal met %v standbys, want 0", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.conns) != f.standbys+1 {
		t.Errorf("%d connections, want %d: the wake should reuse the keepalive's connection to the leader", len(f.conns), f.standbys+1)
	}
}

// An older controller without the keepalive path answers 404: counted, never logged as an
// error, and nothing else changes.
func TestKeepAliveToAnOlderControllerIsQuiet(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log, errs := errorLogs()
	counts := metrics.New().ActivitySignals
	New(ctx, Options{ControllerURL: srv.URL, KeepAlive: 5 * time.Millisecond, Signals: counts, Log: log})
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(counts.WithLabelValues("keepalive", metrics.ResultRejected)) < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if got := testutil.ToFloat64(counts.WithLabelValues("keepalive", metrics.ResultRejected)); got < 3 {
		t.Errorf("keepalives counted as rejected = %v, want at least 3", got)
	}
	if got := errs.Load(); got != 0 {
		t.Errorf("logged %d errors for keepalives an older controller refused, want 0", got)
	}
}
