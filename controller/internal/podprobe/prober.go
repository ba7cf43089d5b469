package podprobe

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// State is where a pod stands in a Prober.
type State int

const (
	// Probing means the pod has not passed yet.
	Probing State = iota
	// Passed means the pod passed, and every recheck since.
	Passed
	// Failed means the pod failed a recheck after it passed, or Run gave up. Its probes are not
	// trusted again: whoever waits on it waits for the kubelet.
	Failed
)

func (s State) String() string {
	switch s {
	case Passed:
		return "Passed"
	case Failed:
		return "Failed"
	}
	return "Probing"
}

// Status is a pod's State, since when, and for Failed why.
type Status struct {
	State State
	At    time.Time
	Err   error
}

// Target is one pod to probe.
type Target struct {
	UID     types.UID
	Probe   Probe
	Backoff Backoff
	// OnPass, if set, runs once, when the pod first passes.
	OnPass func(at time.Time)
}

// DefaultRecheck is Prober.Recheck's default.
const DefaultRecheck = time.Second

// Prober probes pods, one goroutine each, for owners (the objects that want them probed). A pod
// that passed is checked again every Recheck until its owner lets it go, so that a pod that
// stops answering is not trusted for long; the first failed recheck makes it Failed for good.
type Prober struct {
	// Recheck is how often a pod that passed is checked again; DefaultRecheck when zero.
	Recheck time.Duration
	// Changed, if set, is told whenever a pod of owner changes State, from the pod's goroutine.
	Changed func(owner types.NamespacedName)

	mu   sync.Mutex
	pods map[types.UID]*tracked
}

type tracked struct {
	owner  types.NamespacedName
	status Status
	cancel context.CancelFunc
}

// Tracks says whether the pod is being probed, or was and is still kept.
func (p *Prober) Tracks(uid types.UID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.pods[uid]
	return ok
}

// Start probes t's pod for owner until Keep or Close lets it go. A pod already tracked is left
// as it is.
func (p *Prober) Start(owner types.NamespacedName, t Target) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.pods[t.UID]; ok {
		return
	}
	if p.pods == nil {
		p.pods = map[types.UID]*tracked{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &tracked{owner: owner, status: Status{State: Probing, At: time.Now()}, cancel: cancel}
	p.pods[t.UID] = tr
	go p.run(ctx, tr, t)
}

// Refuse tracks a pod that will not be probed, as Failed with err, so that its owner asks about
// it once, not on every pass.
func (p *Prober) Refuse(owner types.NamespacedName, uid types.UID, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.pods[uid]; ok {
		return
	}
	if p.pods == nil {
		p.pods = map[types.UID]*tracked{}
	}
	p.pods[uid] = &tracked{owner: owner, status: Status{State: Failed, At: time.Now(), Err: err}, cancel: func() {}}
}

// Keep lets go of owner's pods that are not in uids and returns the Status of those that are
// tracked.
func (p *Prober) Keep(owner types.NamespacedName, uids map[types.UID]bool) map[types.UID]Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[types.UID]Status{}
	for uid, tr := range p.pods {
		if tr.owner != owner {
			continue
		}
		if !uids[uid] {
			tr.cancel()
			delete(p.pods, uid)
			continue
		}
		out[uid] = tr.status
	}
	return out
}

// Close lets go of every pod.
func (p *Prober) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for uid, tr := range p.pods {
		tr.cancel()
		delete(p.pods, uid)
	}
}

func (p *Prober) run(ctx context.Context, tr *tracked, t Target) {
	if err := Run(ctx, t.Probe, t.Backoff); err != nil {
		if ctx.Err() == nil {
			p.set(ctx, tr, Failed, err)
		}
		return
	}
	if !p.set(ctx, tr, Passed, nil) {
		return
	}
	if t.OnPass != nil {
		t.OnPass(tr.statusAt(p))
	}
	every := p.Recheck
	if every <= 0 {
		every = DefaultRecheck
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Startup checks passed in Run, and the kubelet does not run them again either.
		if err := t.Probe.check(ctx, t.Probe.startupsPassed()); err != nil {
			if ctx.Err() == nil {
				p.set(ctx, tr, Failed, err)
			}
			return
		}
	}
}

// set records a new state unless the pod was let go meanwhile, and tells Changed.
func (p *Prober) set(ctx context.Context, tr *tracked, s State, err error) bool {
	p.mu.Lock()
	if ctx.Err() != nil {
		p.mu.Unlock()
		return false
	}
	tr.status = Status{State: s, At: time.Now(), Err: err}
	p.mu.Unlock()
	if p.Changed != nil {
		p.Changed(tr.owner)
	}
	return true
}

func (tr *tracked) statusAt(p *Prober) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return tr.status.At
}

// startupsPassed marks every startup check of p as passed, for check to skip.
func (p Probe) startupsPassed() []bool {
	s := make([]bool, len(p.checks))
	for i, c := range p.checks {
		s[i] = c.kind == startup
	}
	return s
}
