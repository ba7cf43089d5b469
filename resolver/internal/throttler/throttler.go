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
	// ErrNamespaceFull means the target's namespace holds its whole share of the resolver.
	ErrNamespaceFull = errors.New("too many requests held for this namespace")
	// ErrTimeout means the target was not ready within the hold timeout.
	ErrTimeout = errors.New("target not ready within the hold timeout")
	// ErrGone means the target was deleted while requests waited.
	ErrGone = errors.New("target removed while the request was held")
	// ErrDraining means the resolver is shutting down and holds nothing any more.
	ErrDraining = errors.New("the resolver is shutting down")
)

// Source says whether a backend has ready endpoints. Ready is called under the throttler's
// locks, so it must not call back into the Throttler.
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

// refresh sets the gate from src, read under the entry's lock. Of two refreshes that race (two
// readiness changes in a row, told from two goroutines), the one that takes the lock last reads
// the source last, so the gate ends in the latest state whatever order the calls run in; a value
// read before the lock could be older than the one a concurrent refresh has already applied.
func (e *entry) refresh(src Source, key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ready, was := src.Ready(key), e.ready.Load()
	switch {
	case ready && !was:
		close(e.gate)
	case !ready && was:
		e.gate = make(chan struct{})
	}
	e.ready.Store(ready)
}

// Throttler holds requests per backend (the private Service of a target). The resolver is
// shared by every team, so besides the global bound each namespace may hold only its share:
// one tenant's flood, or its spec.queue.maxPending at the maximum, leaves the others room.
type Throttler struct {
	src      Source
	maxTotal int64
	total    atomic.Int64
	maxNS    int64
	perNS    sync.Map // namespace -> *atomic.Int64

	entries sync.Map   // types.NamespacedName -> *entry
	mu      sync.Mutex // orders entry creation against Changed

	draining  chan struct{} // closed by Drain
	drainOnce sync.Once
}

// Options bound what a Throttler holds.
type Options struct {
	// MaxTotal is how many requests it holds across all backends.
	MaxTotal int
	// NamespaceShare is how many it holds for the backends of one namespace; 0, or more than
	// MaxTotal, means MaxTotal.
	NamespaceShare int
}

// New returns a Throttler whose gates follow src; whatever changes src calls Changed, as the
// readiness cache does for its Listener.
func New(src Source, o Options) *Throttler {
	share := o.NamespaceShare
	if share <= 0 || share > o.MaxTotal {
		share = o.MaxTotal
	}
	return &Throttler{src: src, maxTotal: int64(o.MaxTotal), maxNS: int64(share), draining: make(chan struct{})}
}

// Drain releases every waiter with ErrDraining and refuses new holds with it, for a resolver
// whose drain timeout ran out: an answer now beats a connection cut by the exit. Ready
// backends still pass.
func (t *Throttler) Drain() { t.drainOnce.Do(func() { close(t.draining) }) }

func (t *Throttler) namespace(ns string) *atomic.Int64 {
	if v, ok := t.perNS.Load(ns); ok {
		return v.(*atomic.Int64)
	}
	// One counter per namespace ever seen: bounded by the namespaces with ElastiServices.
	v, _ := t.perNS.LoadOrStore(ns, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// NamespacePending is how many requests wait for the backends of namespace ns.
func (t *Throttler) NamespacePending(ns string) int {
	if v, ok := t.perNS.Load(ns); ok {
		return int(v.(*atomic.Int64).Load())
	}
	return 0
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
	e.refresh(t.src, key)
	t.entries.Store(key, e)
	return e
}

// Changed implements readiness.Listener: it opens or re-arms the backend's gate.
func (t *Throttler) Changed(key types.NamespacedName) {
	t.mu.Lock()
	v, ok := t.entries.Load(key)
	t.mu.Unlock()
	if ok {
		v.(*entry).refresh(t.src, key)
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
// reached, globally or for the backend's namespace, and after Drain; it waits at most timeout,
// no longer than ctx, and not past Drain.
func (t *Throttler) Wait(ctx context.Context, key types.NamespacedName, maxPending int, timeout time.Duration, onHold func()) (held bool, err error) {
	e := t.entry(key)
	if e.ready.Load() {
		return false, nil
	}
	select {
	case <-t.draining:
		return false, ErrDraining
	default:
	}
	if t.total.Add(1) > t.maxTotal {
		t.total.Add(-1)
		return false, ErrTotalFull
	}
	defer t.total.Add(-1)
	ns := t.namespace(key.Namespace)
	if ns.Add(1) > t.maxNS {
		ns.Add(-1)
		return false, ErrNamespaceFull
	}
	defer ns.Add(-1)
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
	case <-t.draining:
		return true, ErrDraining
	}
}
