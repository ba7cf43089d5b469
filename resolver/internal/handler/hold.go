package handler

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/resolver/internal/metrics"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/throttler"
)

// Throttler holds requests until their backend is ready.
type Throttler interface {
	// Ready says without waiting whether the backend is ready: the path of warm traffic.
	Ready(key types.NamespacedName) bool
	Wait(ctx context.Context, key types.NamespacedName, maxPending int, timeout time.Duration, onHold func()) (bool, error)
	Pending(key types.NamespacedName) int
}

// Activity tells the controller about held and passing requests.
type Activity interface {
	Held(key types.NamespacedName, stillHeld func() bool)
	Active(key types.NamespacedName)
}

// Hold lets a request through when its target is ready and otherwise holds it, waking the
// target, until it is ready, the hold timeout passes, or the caller leaves. A request for a
// deleted target (a tombstone) passes at once without a signal: there is nothing to wake.
type Hold struct {
	Next      http.Handler
	Throttler Throttler
	Activity  Activity
	// Tombstones, if set, lets requests released because their target was deleted go to its
	// public Service instead of failing.
	Tombstones interface {
		Tombstone(namespace, name string) (*registry.Entry, bool)
	}
	MaxPending int
	// MaxPendingLimit is the most a spec.queue.maxPending may ask for; 0 is no limit.
	MaxPendingLimit int
	HoldTimeout     time.Duration
	// Admit, if set, says whether the resolver has memory for one more held request.
	Admit func() bool
	// MaxBody is how much of a held request's body is read while it waits (see heldBody);
	// 0 reads none.
	MaxBody int64
	// ColdStartHeader adds HeaderColdStart to the answers of held requests.
	ColdStartHeader bool
	Metrics         *metrics.Metrics // required
}

// HeaderColdStart is set on the answer to a held request: how long it waited in the resolver
// before its answer began, such as "1.234s", so a caller can see a cold start without metrics.
const HeaderColdStart = "X-Elasti-Cold-Start"

var _ http.Handler = (*Hold)(nil)

// readyToReplay says why a held request must not be replayed now, or nil: its body must be in
// by deadline and its caller still there, or the target would get a request nobody waits for.
// It puts the body read while held back in place for the replay.
func readyToReplay(ctx context.Context, r *http.Request, req *Request, body *heldBody, deadline time.Time) error {
	if body != nil {
		if err := body.wait(ctx, deadline); err != nil {
			return err
		}
	}
	if callerGone(r) {
		return errClientLeft
	}
	if body != nil {
		r.Body, req.BodyRead = body.reader(r.Body), body.rest == nil
	}
	return nil
}

// errMemory refuses a hold when the resolver nears its memory limit.
var errMemory = errors.New("this resolver is near its memory limit")

func (h *Hold) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := RequestFrom(r.Context())
	t := req.Entry
	if t.Gone {
		req.Outcome = metrics.OutcomeGoneForwarded
		h.Next.ServeHTTP(w, r)
		return
	}
	es := types.NamespacedName{Namespace: t.Namespace, Name: t.Name}
	if t.Unprepared {
		req.Outcome = metrics.OutcomeNotProxied
		h.Activity.Active(es)
		h.Next.ServeHTTP(w, r)
		return
	}
	// A ready target passes before anything is set up for holding: warm traffic then costs a
	// map load and an atomic read, and allocates nothing here.
	if h.Throttler.Ready(t.Backend) {
		req.Outcome = metrics.OutcomePassed
		h.Activity.Active(es)
		h.Next.ServeHTTP(w, r)
		return
	}
	maxPending, timeout := h.MaxPending, h.HoldTimeout
	if t.MaxPending > 0 {
		maxPending = t.MaxPending
		if h.MaxPendingLimit > 0 {
			maxPending = min(maxPending, h.MaxPendingLimit)
		}
	}
	if t.HoldTimeout > 0 {
		timeout = t.HoldTimeout
	}
	start := time.Now()
	counted := false
	// The wait ends early when the caller leaves: the server cancels r's context for a caller
	// without a body, and the body's reader says so for one with a body.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	var body *heldBody
	onHold := func() {
		counted = true
		h.Metrics.Held.WithLabelValues(t.Namespace, t.Name).Inc()
		h.Metrics.PendingTotal.Inc()
		body = holdBody(r, h.MaxBody, func() { cancel(errClientLeft) })
		h.Activity.Held(es, func() bool { return h.Throttler.Pending(t.Backend) > 0 })
	}
	var held bool
	var err error
	// A held request's cold start ends with the first byte of its answer, whatever it is; an
	// answer Hold writes itself ends it here, at return.
	var cs *coldStartWriter
	defer func() {
		if counted && cs == nil {
			h.Metrics.ColdStart.WithLabelValues(t.Namespace, t.Name, req.Outcome).Observe(time.Since(start).Seconds())
		}
	}()
	if h.Admit != nil && !h.Admit() {
		err = errMemory
	} else {
		held, err = h.Throttler.Wait(ctx, t.Backend, maxPending, timeout, onHold)
	}
	if counted {
		h.Metrics.Held.WithLabelValues(t.Namespace, t.Name).Dec()
		h.Metrics.PendingTotal.Dec()
	}
	if held {
		h.Metrics.HoldDuration.WithLabelValues(t.Namespace, t.Name).Observe(time.Since(start).Seconds())
	}
	if held && (err == nil || errors.Is(err, throttler.ErrGone)) {
		// Ready, or deleted and so sent to the public Service.
		if left := readyToReplay(ctx, r, req, body, start.Add(timeout)); left != nil {
			err = left
		}
	}
	switch {
	case err == nil && held:
		req.Outcome = metrics.OutcomeReplayed
	case err == nil:
		req.Outcome = metrics.OutcomePassed
		h.Activity.Active(es)
	case errors.Is(err, throttler.ErrQueueFull), errors.Is(err, throttler.ErrTotalFull),
		errors.Is(err, throttler.ErrNamespaceFull), errors.Is(err, errMemory):
		req.Outcome = metrics.OutcomeQueueFull
		h.Metrics.QueueFull.WithLabelValues(t.Namespace, t.Name).Inc()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "elasti: "+err.Error()+"; retry later", http.StatusServiceUnavailable)
		return
	case errors.Is(err, errSlowBody):
		req.Outcome = metrics.OutcomeTimeout
		closeConn(w, r)
		http.Error(w, "elasti: the request body did not arrive within "+timeout.String(), http.StatusRequestTimeout)
		return
	case errors.Is(err, throttler.ErrTimeout):
		req.Outcome = metrics.OutcomeTimeout
		h.Metrics.HoldTimeouts.WithLabelValues(t.Namespace, t.Name).Inc()
		http.Error(w, "elasti: "+t.Key()+" did not become ready within "+timeout.String(), http.StatusGatewayTimeout)
		return
	case errors.Is(err, throttler.ErrDraining):
		// This resolver is stopping and the request would be cut by its exit: another replica,
		// or this Service once awake, can take the retry.
		req.Outcome = metrics.OutcomeDraining
		closeConn(w, r)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "elasti: "+err.Error()+"; retry", http.StatusServiceUnavailable)
		return
	case errors.Is(err, throttler.ErrGone):
		if h.Tombstones != nil {
			if g, ok := h.Tombstones.Tombstone(t.Namespace, t.Name); ok {
				req.Entry, req.Outcome = g, metrics.OutcomeGoneForwarded
				break
			}
		}
		req.Outcome = metrics.OutcomeGone
		closeConn(w, r)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "elasti: "+err.Error(), http.StatusServiceUnavailable)
		return
	default:
		// The caller left; its slot is already free and nobody reads an answer.
		req.Outcome = metrics.OutcomeCancelled
		w.WriteHeader(499)
		return
	}
	if counted {
		cs = &coldStartWriter{ResponseWriter: w, start: start, header: h.ColdStartHeader,
			observe: h.Metrics.ColdStart.WithLabelValues(t.Namespace, t.Name, req.Outcome)}
		defer cs.begin() // an answer that never began (the proxy failed to write) ends here
		w = cs
	}
	h.Next.ServeHTTP(w, r)
}

// coldStartWriter ends a replayed request's cold start at the first byte of its answer: the
// status line, a body write, or the hijack of an upgrade.
type coldStartWriter struct {
	http.ResponseWriter
	start   time.Time
	header  bool
	observe prometheus.Observer
	done    bool
}

func (w *coldStartWriter) begin() {
	if w.done {
		return
	}
	w.done = true
	d := time.Since(w.start)
	w.observe.Observe(d.Seconds())
	if w.header {
		w.Header().Set(HeaderColdStart, strconv.FormatFloat(d.Seconds(), 'f', 3, 64)+"s")
	}
}

func (w *coldStartWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.begin()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *coldStartWriter) Write(b []byte) (int, error) {
	w.begin()
	return w.ResponseWriter.Write(b)
}

// Hijack is the proxy's way to an upgrade; its 101 is written on the hijacked connection, with
// the headers set by then.
func (w *coldStartWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.begin()
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach Flush and the deadlines of the server's writer.
func (w *coldStartWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
