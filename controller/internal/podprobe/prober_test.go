package podprobe

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var owner = types.NamespacedName{Namespace: "shop", Name: "cart"}

// changes counts Changed calls and lets a test wait for the next one.
type changes struct {
	n  atomic.Int32
	ch chan struct{}
}

func newChanges() *changes { return &changes{ch: make(chan struct{}, 64)} }

func (c *changes) changed(types.NamespacedName) {
	c.n.Add(1)
	c.ch <- struct{}{}
}

// waitState waits up to 5 s, change by change, for the pod to reach want.
func waitState(t *testing.T, p *Prober, c *changes, uid types.UID, want State) Status {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if s, ok := p.Keep(owner, map[types.UID]bool{uid: true})[uid]; ok && s.State == want {
			return s
		}
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("pod %s did not reach %s within 5s", uid, want)
		}
	}
}

func fastBackoff() Backoff {
	return Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Attempts: 1000, Timeout: 10 * time.Second}
}

func TestProberPassesThenFailsForGood(t *testing.T) {
	srv := newSequenceServer(t, func(hit int32) int {
		if hit <= 3 || hit == 6 {
			return http.StatusServiceUnavailable // starting; then one failed recheck
		}
		return http.StatusOK
	})
	c := newChanges()
	p := &Prober{Recheck: 5 * time.Millisecond, Changed: c.changed}
	defer p.Close()
	var passes atomic.Int32
	probe := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: httpProbe(srv.port(t), "/ready")}))
	p.Start(owner, Target{UID: "pod-1", Probe: probe, Backoff: fastBackoff(), OnPass: func(time.Time) { passes.Add(1) }})
	if !p.Tracks("pod-1") {
		t.Fatal("Tracks says no right after Start")
	}

	passed := waitState(t, p, c, "pod-1", Passed)
	failed := waitState(t, p, c, "pod-1", Failed)
	if failed.Err == nil || !failed.At.After(passed.At) {
		t.Errorf("failed status %+v after passed at %v; want an error, later", failed, passed.At)
	}
	hits := srv.hits.Load()
	time.Sleep(50 * time.Millisecond) // ten rechecks' worth
	if got := srv.hits.Load(); got != hits {
		t.Errorf("%d more checks after the pod failed; a failed pod is not probed again", got-hits)
	}
	if s := p.Keep(owner, map[types.UID]bool{"pod-1": true})["pod-1"]; s.State != Failed {
		t.Errorf("state %s later; Failed is for good", s.State)
	}
	if n := passes.Load(); n != 1 {
		t.Errorf("OnPass ran %d times, want once", n)
	}
	if n := c.n.Load(); n != 2 {
		t.Errorf("Changed %d times, want 2 (passed, failed)", n)
	}
}

func TestProberGivesUp(t *testing.T) {
	c := newChanges()
	p := &Prober{Changed: c.changed}
	defer p.Close()
	probe := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: tcpProbe(intstr.FromInt32(closedPort(t)))}))
	b := fastBackoff()
	b.Attempts = 3
	p.Start(owner, Target{UID: "pod-1", Probe: probe, Backoff: b})
	s := waitState(t, p, c, "pod-1", Failed)
	if s.Err == nil {
		t.Error("gave up without saying why")
	}
}

func TestProberKeepLetsGo(t *testing.T) {
	srv := newStatusServer(t, http.StatusServiceUnavailable)
	p := &Prober{}
	defer p.Close()
	probe := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: httpProbe(srv.port(t), "/")}))
	other := types.NamespacedName{Namespace: "shop", Name: "other"}
	p.Start(owner, Target{UID: "mine", Probe: probe, Backoff: fastBackoff()})
	p.Start(other, Target{UID: "theirs", Probe: probe, Backoff: fastBackoff()})
	p.Start(owner, Target{UID: "mine", Probe: probe, Backoff: fastBackoff()}) // tracked: no second goroutine

	if got := p.Keep(owner, nil); len(got) != 0 {
		t.Errorf("Keep(nil) returned %v", got)
	}
	if p.Tracks("mine") {
		t.Error("a pod let go is still tracked")
	}
	if !p.Tracks("theirs") {
		t.Error("Keep let go of another owner's pod")
	}
	time.Sleep(20 * time.Millisecond) // a goroutine still running would keep checking
	hits := srv.hits.Load()
	time.Sleep(50 * time.Millisecond)
	// Only "theirs" still probes, with waits of at most 5ms: some hits, but no more than one
	// goroutine's worth.
	if got := srv.hits.Load() - hits; got == 0 || got > 16 {
		t.Errorf("%d checks in 50ms with one pod probing every ≤5ms", got)
	}
	p.Close()
	if p.Tracks("theirs") {
		t.Error("Close left a pod tracked")
	}
}

// After the pass only readiness is checked again: the kubelet runs a startup probe until it
// passes once, and never after.
func TestProberRechecksReadinessOnly(t *testing.T) {
	started := newStatusServer(t, http.StatusOK)
	ready := newStatusServer(t, http.StatusOK)
	c := newChanges()
	p := &Prober{Recheck: 5 * time.Millisecond, Changed: c.changed}
	defer p.Close()
	probe := mustTranslate(t, newPod(corev1.Container{Name: "app",
		StartupProbe:   httpProbe(started.port(t), "/started"),
		ReadinessProbe: httpProbe(ready.port(t), "/ready")}))
	p.Start(owner, Target{UID: "pod-1", Probe: probe, Backoff: fastBackoff()})
	waitState(t, p, c, "pod-1", Passed)
	started.status.Store(http.StatusServiceUnavailable)
	before := ready.hits.Load()
	time.Sleep(50 * time.Millisecond)
	if s := p.Keep(owner, map[types.UID]bool{"pod-1": true})["pod-1"]; s.State != Passed {
		t.Errorf("state %s (%v) after the startup endpoint failed; want Passed", s.State, s.Err)
	}
	if n := started.hits.Load(); n != 1 {
		t.Errorf("startup probe checked %d times, want once", n)
	}
	if ready.hits.Load() == before {
		t.Error("readiness was not checked again after the pass")
	}
	ready.status.Store(http.StatusServiceUnavailable)
	waitState(t, p, c, "pod-1", Failed)
}
