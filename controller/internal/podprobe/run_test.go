package podprobe

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDelay(t *testing.T) {
	ms := time.Millisecond
	tests := map[string]struct {
		b    Backoff
		n    int
		r    float64
		want time.Duration
	}{
		"defaults, first wait":                {n: 0, r: 0, want: 25 * ms},
		"defaults, doubled":                   {n: 1, r: 0, want: 50 * ms},
		"defaults, third wait":                {n: 2, r: 0, want: 100 * ms},
		"defaults, capped":                    {n: 5, r: 0, want: 100 * ms},
		"defaults, capped far out":            {n: 1 << 20, r: 0, want: 100 * ms},
		"defaults, most jitter":               {n: 0, r: 1, want: 20 * ms},
		"defaults, half jitter at the cap":    {n: 9, r: 0.5, want: 90 * ms},
		"negative n is the first wait":        {n: -3, r: 0, want: 25 * ms},
		"r below zero clamps to none":         {n: 0, r: -5, want: 25 * ms},
		"r above one clamps to most":          {n: 0, r: 7, want: 20 * ms},
		"NaN r is none":                       {n: 0, r: math.NaN(), want: 25 * ms},
		"own values":                          {b: Backoff{Initial: 10 * ms, Factor: 3, Max: time.Second, Jitter: 0.5}, n: 2, r: 0, want: 90 * ms},
		"own jitter":                          {b: Backoff{Initial: 10 * ms, Factor: 3, Max: time.Second, Jitter: 0.5}, n: 2, r: 1, want: 45 * ms},
		"factor one is a fixed interval":      {b: Backoff{Initial: 10 * ms, Factor: 1}, n: 50, r: 0, want: 10 * ms},
		"factor below one takes default":      {b: Backoff{Initial: 10 * ms, Factor: 0.5}, n: 2, r: 0, want: 40 * ms},
		"infinite factor takes default":       {b: Backoff{Factor: math.Inf(1)}, n: 1, r: 0, want: 50 * ms},
		"initial above max is max":            {b: Backoff{Initial: time.Second, Max: 100 * ms}, n: 0, r: 0, want: 100 * ms},
		"jitter of one or more takes default": {b: Backoff{Jitter: 1}, n: 0, r: 1, want: 20 * ms},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tt.b.Delay(tt.n, tt.r); got != tt.want {
				t.Errorf("Delay(%d, %v) = %s, want %s", tt.n, tt.r, got, tt.want)
			}
		})
	}
}

// TestDelayBounds checks Delay's promise over many attempts and random numbers: within
// [(1-Jitter)·w, w] for w = min(Initial·Factorⁿ, Max), and never above Max or below zero.
func TestDelayBounds(t *testing.T) {
	for _, b := range []Backoff{{}, {Initial: time.Millisecond, Factor: 1.5, Max: 2 * time.Second, Jitter: 0.9}} {
		d := b.withDefaults()
		for n := range 80 {
			w := min(float64(d.Initial)*math.Pow(d.Factor, float64(n)), float64(d.Max))
			lo, hi := time.Duration(w*(1-d.Jitter)), time.Duration(w)
			for _, r := range []float64{0, 0.001, 0.25, 0.5, 0.75, 0.999, 1} {
				got := b.Delay(n, r)
				if got < lo || got > hi || got > d.Max || got < 0 {
					t.Fatalf("%+v: Delay(%d, %v) = %s, want within [%s, %s]", b, n, r, got, lo, hi)
				}
			}
		}
	}
}

func TestBackoffDefaults(t *testing.T) {
	got := Backoff{Jitter: -1, Attempts: -2, Timeout: -time.Second}.withDefaults()
	want := Backoff{Initial: 25 * time.Millisecond, Factor: 2, Max: 100 * time.Millisecond, Jitter: 0.2, Attempts: 3000, Timeout: 2 * time.Minute}
	if got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	own := Backoff{Initial: time.Millisecond, Factor: 1.5, Max: time.Second, Jitter: 0.1, Attempts: 3, Timeout: time.Minute}
	if got := own.withDefaults(); got != own {
		t.Errorf("withDefaults changed valid values: %+v, want %+v", got, own)
	}
}

// fast keeps Run's waits at a millisecond or two.
var fast = Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond, Timeout: 30 * time.Second}

func TestRunPassesOnFirstSuccess(t *testing.T) {
	srv := newSequenceServer(t, func(hit int32) int {
		if hit <= 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	p := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: httpProbe(srv.port(t), "/ready")}))
	if err := Run(t.Context(), p, fast); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := srv.hits.Load(); got != 4 {
		t.Errorf("hits = %d, want 4: three failures, then the first success ends Run", got)
	}
}

func TestRunAttemptBound(t *testing.T) {
	srv := newStatusServer(t, http.StatusServiceUnavailable)
	p := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: httpProbe(srv.port(t), "/ready")}))
	b := fast
	b.Attempts = 5
	err := Run(t.Context(), p, b)
	var gu *GaveUpError
	if !errors.Is(err, ErrGaveUp) || !errors.As(err, &gu) {
		t.Fatalf("Run = %v, want a *GaveUpError", err)
	}
	if gu.Attempts != 5 || srv.hits.Load() != 5 {
		t.Errorf("attempts %d, hits %d, want 5 and 5", gu.Attempts, srv.hits.Load())
	}
	if !strings.Contains(err.Error(), "gave up after 5 attempts") || !strings.Contains(err.Error(), "status code 503") {
		t.Errorf("Run = %q, want it to say how many attempts and how the last failed", err)
	}
}

func TestRunTimeBound(t *testing.T) {
	p := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: tcpProbe(intstr.FromInt32(closedPort(t)))}))
	b := Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Attempts: 1 << 30, Timeout: 100 * time.Millisecond}
	start := time.Now()
	err := Run(t.Context(), p, b)
	elapsed := time.Since(start)
	var gu *GaveUpError
	if !errors.As(err, &gu) {
		t.Fatalf("Run = %v, want a *GaveUpError", err)
	}
	if gu.Attempts < 2 || gu.Attempts >= b.Attempts {
		t.Errorf("attempts %d, want several, ended by time", gu.Attempts)
	}
	if gu.Elapsed < b.Timeout || elapsed > 10*time.Second {
		t.Errorf("gave up after %s (returned after %s), want at its %s bound", gu.Elapsed, elapsed, b.Timeout)
	}
}

// TestRunTimeBoundCutsACheck: Run's Timeout bounds the check under way, not only the waits.
func TestRunTimeBoundCutsACheck(t *testing.T) {
	probe := httpProbe(hangingServer(t), "/ready")
	probe.TimeoutSeconds = 30
	p := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: probe}))

	start := time.Now()
	err := Run(t.Context(), p, Backoff{Timeout: 50 * time.Millisecond})
	var gu *GaveUpError
	if !errors.As(err, &gu) || gu.Attempts != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want one attempt cut by the deadline", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run returned after %s; the check's own timeout is 30s, Run's 50ms", d)
	}
}

func TestRunContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	srv := newSequenceServer(t, func(hit int32) int {
		if hit == 3 {
			cancel()
		}
		return http.StatusServiceUnavailable
	})
	p := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: httpProbe(srv.port(t), "/ready")}))
	err := Run(ctx, p, fast)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrGaveUp) {
		t.Fatalf("Run = %v, want the context's error", err)
	}
	if got := srv.hits.Load(); got != 3 {
		t.Errorf("hits = %d, want 3: none after the cancel", got)
	}
	if err := Run(ctx, p, fast); !errors.Is(err, context.Canceled) || srv.hits.Load() != 3 {
		t.Errorf("Run on a canceled context = %v after %d hits, want context.Canceled and no check", err, srv.hits.Load())
	}
}

// TestRunStartupPassesOnce: once a startup check passed, Run does not run it again, as the
// kubelet stops a container's startup probe once it succeeded.
func TestRunStartupPassesOnce(t *testing.T) {
	start := newSequenceServer(t, func(hit int32) int {
		if hit > 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	ready := newSequenceServer(t, func(hit int32) int {
		if hit <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	p := mustTranslate(t, newPod(corev1.Container{Name: "app",
		StartupProbe: httpProbe(start.port(t), "/started"), ReadinessProbe: httpProbe(ready.port(t), "/ready")}))
	if err := Run(t.Context(), p, fast); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s, r := start.hits.Load(), ready.hits.Load(); s != 1 || r != 3 {
		t.Errorf("startup hits %d, readiness hits %d, want 1 and 3", s, r)
	}
	// Check has no such memory: each call runs every check.
	if err := p.Check(t.Context()); err == nil {
		t.Error("Check passed with a failing startup check")
	}
}
