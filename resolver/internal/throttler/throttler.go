package throttler

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Errors of Wait.
var (
	// ErrQueueFull means the target's queue is full.
	ErrQueueFull = errors.New("too many requests held for this target")
	// ErrTotalFull means the resolver holds as many requests as it may across all targets.
	ErrTotalFull = errors.New("too many requests held by this resolver")
	// ErrTimeout means the target was not ready within the hold timeout.
	ErrTimeout = errors.New("target not ready within the hold timeout")
	// ErrGone means the target was deleted while requests waited.
	ErrGone = errors.New("target removed while the request was held")
)

// Source says whether a backend has ready endpoints.
type Source interface {
	Ready(key types.NamespacedName) bool
}

type entry struct {
	ready   atomic.Bool // fast path for warm traffic; the truth is under mu
	pending atomic.Int64

	mu   sync.Mutex
	gate chan struct{} // closed while ready
	gone chan struct{} // closed when the target is deleted
}

// refresh reads the source under the entry's lock, so concurrent refreshes converge on the
// latest state whatever order they run in.
func (e *entry) refresh(ready bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	was := e.ready.Load()
	switch {
	case ready && !was:
		close(e.gate)
	case !ready && was:
		e.gate = make(chan struct{})
	}
	e.ready.Store(ready)
}

// Throttler holds requests per backend (the private Service of a target).
type Throttler struct {
	src      Source
	maxTotal int64
	total    atomic.Int64

	entries sync.Map   // types.NamespacedName -> *entry
	mu      sync.Mutex // orders entry creation against Changed
}

// New returns a Throttler that holds at most maxTotal requests across all backends.
func New(src Source, maxTotal int) *Throttler {
	return &Throttler{src: src, maxTotal: int64(maxTotal)}
}

func (t *Throttler) entry(key types.NamespacedName) *entry {
	if e, ok := t.entries.Load(key); ok {
		return e.(*entry)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.entries.Load(key); ok {
		return e.(*entry)
	}
	// Reading the source under t.mu means a Changed call either sees this entry or ran before
	// this read and so its state is what we read: no wake-up is lost.
	e := &entry{gate: make(chan struct{}), gone: make(chan struct{})}
	e.refresh(t.src.Ready(key))
	t.entries.Store(key, e)
	return e
}

// Changed implements readiness.Listener: it opens or re-arms the backend's gate.
func (t *Throttler) Changed(key types.NamespacedName) {
	t.mu.Lock()
	v, ok := t.entries.Load(key)
	t.mu.Unlock()
	if ok {
		v.(*entry).refresh(t.src.Ready(key))
	}
}

// Forget deletes the backend's entry and releases its waiters with ErrGone.
func (t *Throttler) Forget(key types.NamespacedName) {
	t.mu.Lock()
	v, ok := t.entries.LoadAndDelete(key)
	t.mu.Unlock()
	if ok {
		close(v.(*entry).gone)
	}
}

// Ready says whether the backend is ready now, without waiting.
func (t *Throttler) Ready(key types.NamespacedName) bool { return t.entry(key).ready.Load() }

// Pending is how many requests wait for the backend.
func (t *Throttler) Pending(key types.NamespacedName) int {
	if v, ok := t.entries.Load(key); ok {
		return int(v.(*entry).pending.Load())
	}
	return 0
}

// Total is how many requests wait across all backends.
func (t *Throttler) Total() int { return int(t.total.Load()) }

// Wait returns once the backend is ready. held says whether the request had to wait. onHold,
// if not nil, runs once the request is counted as held and before it blocks. A request is
// refused at once when maxPending requests already wait for the backend or the global bound is
// reached; it waits at most timeout and no longer than ctx.
func (t *Throttler) Wait(ctx context.Context, key types.NamespacedName, maxPending int, timeout time.Duration, onHold func()) (held bool, err error) {
	e := t.entry(key)
	if e.ready.Load() {
		return false, nil
	}
	if t.total.Add(1) > t.maxTotal {
		t.total.Add(-1)
		return false, ErrTotalFull
	}
	defer t.total.Add(-1)
	if e.pending.Add(1) > int64(maxPending) {
		e.pending.Add(-1)
		return false, ErrQueueFull
	}
	defer e.pending.Add(-1)

	e.mu.Lock()
	gate := e.gate
	e.mu.Unlock()
	if onHold != nil {
		onHold()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-gate:
		return true, nil
	case <-ctx.Done():
		return true, ctx.Err()
	case <-timer.C:
		return true, ErrTimeout
	case <-e.gone:
		return true, ErrGone
	}
}
