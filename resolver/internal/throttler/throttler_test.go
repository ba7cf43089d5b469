package throttler

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// source is a readiness source the test flips.
type source struct {
	mu    sync.Mutex
	ready map[types.NamespacedName]bool
}

func (s *source) Ready(k types.NamespacedName) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready[k]
}

func (s *source) set(t *Throttler, k types.NamespacedName, r bool) {
	s.mu.Lock()
	s.ready[k] = r
	s.mu.Unlock()
	t.Changed(k)
}

var (
	a = types.NamespacedName{Namespace: "ns", Name: "a"}
	b = types.NamespacedName{Namespace: "ns", Name: "b"}
)

func newThrottler(total int) (*Throttler, *source) {
	s := &source{ready: map[types.NamespacedName]bool{}}
	return New(s, Options{MaxTotal: total}), s
}

// waitHeld returns once n requests wait for k.
func waitHeld(t *testing.T, th *Throttler, k types.NamespacedName, n int, holds <-chan struct{}) {
	t.Helper()
	for range n {
		select {
		case <-holds:
		case <-time.After(10 * time.Second):
			t.Fatalf("requests never got held; pending = %d", th.Pending(k))
		}
	}
}

func TestReadyPassesWithoutHolding(t *testing.T) {
	th, s := newThrottler(10)
	s.set(th, a, true)
	held, err := th.Wait(context.Background(), a, 1, time.Second, func() { t.Error("onHold ran for a ready target") })
	if held || err != nil {
		t.Errorf("Wait = %v, %v; want false, nil", held, err)
	}
}

func TestGateReleasesEveryWaiter(t *testing.T) {
	th, s := newThrottler(100)
	const n = 50
	holds := make(chan struct{}, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			held, err := th.Wait(context.Background(), a, n, time.Minute, func() { holds <- struct{}{} })
			if !held && err == nil {
				err = errors.New("released without being held")
			}
			errs <- err
		}()
	}
	waitHeld(t, th, a, n, holds)
	s.set(th, a, true)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Wait: %v", err)
		}
	}
	if got := th.Total(); got != 0 {
		t.Errorf("Total after release = %d, want 0", got)
	}
}

func TestGateRearms(t *testing.T) {
	th, s := newThrottler(10)
	s.set(th, a, true)
	_ = th.Ready(a)
	s.set(th, a, false)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if held, err := th.Wait(ctx, a, 1, time.Minute, nil); !held || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait after readiness was lost = %v, %v; want held and %v", held, err, context.DeadlineExceeded)
	}
}

func TestBounds(t *testing.T) {
	other := types.NamespacedName{Namespace: "other", Name: "c"}
	tests := map[string]struct {
		total, perTarget int
		share            int // per namespace; 0 is the total
		holdA, holdB     int
		wantErr          error
		on               types.NamespacedName
	}{
		"target queue full":           {total: 10, perTarget: 2, holdA: 2, on: a, wantErr: ErrQueueFull},
		"other target not starved":    {total: 10, perTarget: 2, holdA: 2, on: b, wantErr: context.DeadlineExceeded},
		"global bound across targets": {total: 3, perTarget: 2, holdA: 2, holdB: 1, on: b, wantErr: ErrTotalFull},
		// A tenant that floods, even with its own maxPending at the maximum, takes only its
		// namespace's share, and another namespace still gets held.
		"namespace share full":           {total: 10, perTarget: 10, share: 3, holdA: 2, holdB: 1, on: b, wantErr: ErrNamespaceFull},
		"other namespace keeps its room": {total: 10, perTarget: 10, share: 3, holdA: 2, holdB: 1, on: other, wantErr: context.DeadlineExceeded},
		"no share: one tenant takes all": {total: 3, perTarget: 10, holdA: 2, holdB: 1, on: other, wantErr: ErrTotalFull},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			th := New(&source{ready: map[types.NamespacedName]bool{}}, Options{MaxTotal: tc.total, NamespaceShare: tc.share})
			ctx, cancel := context.WithCancel(context.Background())
			holds := make(chan struct{}, tc.holdA+tc.holdB)
			var wg sync.WaitGroup
			for k, n := range map[types.NamespacedName]int{a: tc.holdA, b: tc.holdB} {
				for range n {
					wg.Go(func() { _, _ = th.Wait(ctx, k, tc.perTarget, time.Minute, func() { holds <- struct{}{} }) })
				}
			}
			waitHeld(t, th, a, tc.holdA+tc.holdB, holds)
			short, stop := context.WithTimeout(context.Background(), 20*time.Millisecond)
			_, err := th.Wait(short, tc.on, tc.perTarget, time.Minute, nil)
			stop()
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Wait = %v, want %v", err, tc.wantErr)
			}
			cancel()
			wg.Wait()
			if got := th.Total(); got != 0 {
				t.Errorf("Total after all left = %d, want 0", got)
			}
			if got := th.NamespacePending("ns"); got != 0 {
				t.Errorf("namespace pending after all left = %d, want 0", got)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	th, _ := newThrottler(10)
	held, err := th.Wait(context.Background(), a, 1, 10*time.Millisecond, nil)
	if !held || !errors.Is(err, ErrTimeout) {
		t.Errorf("Wait = %v, %v; want true, %v", held, err, ErrTimeout)
	}
	if got := th.Pending(a); got != 0 {
		t.Errorf("Pending after timeout = %d, want 0", got)
	}
}

func TestCancelFreesSlotAtOnce(t *testing.T) {
	th, _ := newThrottler(10)
	ctx, cancel := context.WithCancel(context.Background())
	holds := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		_, err := th.Wait(ctx, a, 1, time.Hour, func() { holds <- struct{}{} })
		done <- err
	}()
	waitHeld(t, th, a, 1, holds)
	if _, err := th.Wait(context.Background(), a, 1, time.Hour, nil); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("second Wait on a full queue = %v, want %v", err, ErrQueueFull)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Wait = %v, want %v", err, context.Canceled)
	}
	// The slot is free again: a new request is held rather than refused.
	short, stop := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer stop()
	if _, err := th.Wait(short, a, 1, time.Hour, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait after cancel = %v, want %v", err, context.DeadlineExceeded)
	}
}

func TestForgetReleasesWaiters(t *testing.T) {
	th, _ := newThrottler(10)
	holds := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		_, err := th.Wait(context.Background(), a, 1, time.Hour, func() { holds <- struct{}{} })
		done <- err
	}()
	waitHeld(t, th, a, 1, holds)
	th.Forget(a)
	if err := <-done; !errors.Is(err, ErrGone) {
		t.Errorf("Wait after Forget = %v, want %v", err, ErrGone)
	}
}

// A readiness change racing with the creation of a target's entry must never be lost.
func TestNoLostWakeup(t *testing.T) {
	for i := range 200 {
		th, s := newThrottler(10)
		k := types.NamespacedName{Namespace: "ns", Name: "race"}
		done := make(chan error, 1)
		go func() {
			_, err := th.Wait(context.Background(), k, 1, 10*time.Second, nil)
			done <- err
		}()
		s.set(th, k, true)
		if err := <-done; err != nil {
			t.Fatalf("iteration %d: Wait = %v, want nil", i, err)
		}
	}
}

// stallingSource stalls one Ready call once armed: it reports on read that it has read the
// source, then returns what it read only when resume is closed, as a Changed call preempted
// between reading the source and setting the gate would.
type stallingSource struct {
	source
	armed        atomic.Bool
	read, resume chan struct{}
}

func (s *stallingSource) Ready(k types.NamespacedName) bool {
	r := s.source.Ready(k)
	if s.armed.CompareAndSwap(true, false) {
		s.read <- struct{}{}
		<-s.resume
	}
	return r
}

// Two readiness changes in a row, told from two goroutines: the first reads "not ready", stalls,
// and applies it after the second applied "ready". The gate must end open, as the source is,
// whatever order the two Changed calls finish in.
func TestRacingChangesConverge(t *testing.T) {
	s := &stallingSource{source: source{ready: map[types.NamespacedName]bool{a: true}},
		read: make(chan struct{}), resume: make(chan struct{})}
	th := New(s, Options{MaxTotal: 10})
	if !th.Ready(a) {
		t.Fatal("entry not ready while the source is")
	}
	set := func(r bool) <-chan struct{} {
		s.mu.Lock()
		s.ready[a] = r
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { th.Changed(a); close(done) }()
		return done
	}
	s.armed.Store(true)
	lost := set(false)
	<-s.read
	found := set(true)
	// Give the second call time to finish first, if it can: it must not, or must not matter.
	select {
	case <-found:
	case <-time.After(100 * time.Millisecond):
	}
	close(s.resume)
	<-lost
	<-found
	if !th.Ready(a) {
		t.Fatal("the gate stayed closed for a ready source: a stale read won")
	}
	held, err := th.Wait(context.Background(), a, 1, 50*time.Millisecond, nil)
	if held || err != nil {
		t.Errorf("Wait = %v, %v; want false, nil", held, err)
	}
}

// Drain answers every waiter at once, whatever its target, and holds nothing afterwards; a
// ready target still passes.
func TestDrainReleasesWaiters(t *testing.T) {
	th, s := newThrottler(10)
	const n = 3
	holds := make(chan struct{}, 2*n)
	errs := make(chan error, 2*n)
	for _, k := range []types.NamespacedName{a, b} {
		for range n {
			go func() {
				held, err := th.Wait(context.Background(), k, n, time.Hour, func() { holds <- struct{}{} })
				if !held {
					err = errors.New("released without being held")
				}
				errs <- err
			}()
		}
	}
	waitHeld(t, th, a, 2*n, holds)
	th.Drain()
	for range 2 * n {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrDraining) {
				t.Errorf("Wait after Drain = %v, want %v", err, ErrDraining)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Drain left requests held; total = %d", th.Total())
		}
	}
	if got := th.Total(); got != 0 {
		t.Errorf("Total after Drain = %d, want 0", got)
	}
	th.Drain() // a second call is harmless
	held, err := th.Wait(context.Background(), a, n, time.Hour, func() { t.Error("held after Drain") })
	if held || !errors.Is(err, ErrDraining) {
		t.Errorf("Wait after Drain = %v, %v; want false, %v", held, err, ErrDraining)
	}
	s.set(th, b, true)
	if held, err := th.Wait(context.Background(), b, n, time.Hour, nil); held || err != nil {
		t.Errorf("Wait for a ready target after Drain = %v, %v; want false, nil", held, err)
	}
}
