package podprobe

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Backoff paces and bounds Run. A field at zero, or out of range, takes its default.
type Backoff struct {
	// Initial is the wait after the first failed check; default 25ms. A new pod is usually ready
	// within a second, so the first waits are short.
	Initial time.Duration
	// Factor multiplies the wait after each further failure; default 2, at least 1.
	Factor float64
	// Max caps a wait; default 100ms: a held request waits for the next check after the app
	// listens, so the cap is what a cold start pays on top of the app's own start.
	Max time.Duration
	// Jitter shortens each wait by a random fraction up to this, in [0, 1); default 0.2. It keeps
	// the probes of pods that started together apart, and never takes a wait past Max.
	Jitter float64
	// Attempts bounds the checks; default 3000, five minutes at the cap.
	Attempts int
	// Timeout bounds the whole of Run, the check under way included; default 2m.
	Timeout time.Duration
}

// Defaults of Backoff's fields.
const (
	DefaultInitial  = 25 * time.Millisecond
	DefaultFactor   = 2.0
	DefaultMax      = 100 * time.Millisecond
	DefaultJitter   = 0.2
	DefaultAttempts = 3000
	DefaultTimeout  = 2 * time.Minute
)

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultInitial
	}
	if b.Factor < 1 || math.IsNaN(b.Factor) || math.IsInf(b.Factor, 0) {
		b.Factor = DefaultFactor
	}
	if b.Max <= 0 {
		b.Max = DefaultMax
	}
	if b.Jitter <= 0 || b.Jitter >= 1 || math.IsNaN(b.Jitter) {
		b.Jitter = DefaultJitter
	}
	if b.Attempts <= 0 {
		b.Attempts = DefaultAttempts
	}
	if b.Timeout <= 0 {
		b.Timeout = DefaultTimeout
	}
	return b
}

// Delay is the wait after failed check number n (0 for the first): Initial × Factorⁿ, capped at
// Max, then shortened by Jitter × r. r is a random number in [0, 1), passed in so that Delay is
// pure; values outside are clamped. The result is in [(1-Jitter)·w, w] for the capped w.
func (b Backoff) Delay(n int, r float64) time.Duration {
	b = b.withDefaults()
	n = max(n, 0)
	w := float64(b.Initial) * math.Pow(b.Factor, float64(n))
	if w > float64(b.Max) || math.IsInf(w, 0) || math.IsNaN(w) {
		w = float64(b.Max)
	}
	if !(r > 0) { // also NaN
		r = 0
	}
	r = min(r, 1)
	return time.Duration(w * (1 - b.Jitter*r))
}

// ErrGaveUp matches the error Run returns when its bounds are reached; it is a *GaveUpError.
var ErrGaveUp = errors.New("gave up")

// GaveUpError says how long Run tried and how the last check failed.
type GaveUpError struct {
	Attempts int
	Elapsed  time.Duration
	Last     error
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("gave up after %d attempts in %s: %v", e.Attempts, e.Elapsed.Round(time.Millisecond), e.Last)
}

// Is makes errors.Is(err, ErrGaveUp) hold.
func (e *GaveUpError) Is(target error) bool { return target == ErrGaveUp }

// Unwrap returns the last check's error.
func (e *GaveUpError) Unwrap() error { return e.Last }

// Run checks p at once and, after each failure, again after b's Delay, until a check passes
// (nil), ctx ends (ctx's error) or b's attempt or time bound is reached (a *GaveUpError). A
// startup check that passed is not run again, as with the kubelet.
func Run(ctx context.Context, p Probe, b Backoff) error {
	b = b.withDefaults()
	start := time.Now()
	bounded, cancel := context.WithTimeout(ctx, b.Timeout)
	defer cancel()
	started := make([]bool, len(p.checks))
	var last error
	attempts := 0
	for attempts < b.Attempts && bounded.Err() == nil {
		attempts++
		if last = p.check(bounded, started); last == nil {
			return nil
		}
		if attempts == b.Attempts {
			break
		}
		t := time.NewTimer(b.Delay(attempts-1, rand.Float64()))
		select {
		case <-bounded.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return &GaveUpError{Attempts: attempts, Elapsed: time.Since(start), Last: last}
}
