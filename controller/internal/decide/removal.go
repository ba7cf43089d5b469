package decide

import (
	"time"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// FinalizeWait bounds how long a deletion keeps callers on the resolver while the target wakes.
const FinalizeWait = 2 * time.Minute

// RemovalInput is what a deletion's finalizer observed.
type RemovalInput struct {
	// TargetExists is false when the scale target is gone: there is nothing to wait for.
	TargetExists bool
	// ReadyEndpoints counts the target's own ready endpoints (its public Service's slices).
	ReadyEndpoints int
	// Resolvers counts the ready resolver endpoints, which hold callers meanwhile.
	Resolvers int
	// DeletedAt is the ElastiService's deletion timestamp.
	DeletedAt time.Time
	// Mode and ModeSince are the status's; Serve is recorded once the routes are restored.
	Mode      v1alpha1.Mode
	ModeSince time.Time
	// DrainDelay is how long callers' proxies may take to follow the restored routes.
	DrainDelay time.Duration
}

// RemovalStep is what the finalizer does next.
type RemovalStep int

const (
	// RemovalAwaitTarget keeps callers on the resolver until the woken target is ready.
	RemovalAwaitTarget RemovalStep = iota
	// RemovalDrain restores the routes (again: it is idempotent), records Serve if it is not
	// recorded yet, and waits for the rest of the drain delay, while the resolver still serves
	// whatever reaches it.
	RemovalDrain
	// RemovalFinish removes elasti's objects and the finalizer.
	RemovalFinish
)

// Removal orders a deletion make-before-break: the target ready first (unless nothing could
// hold callers meanwhile, or it takes longer than FinalizeWait), then the routes back on it,
// then the drain delay, and only then elasti's own objects go. It returns the step and, when
// the step waits, for how long.
func Removal(in RemovalInput, now time.Time) (RemovalStep, time.Duration) {
	if in.TargetExists && in.ReadyEndpoints == 0 && in.Resolvers > 0 && now.Sub(in.DeletedAt) < FinalizeWait {
		// The EndpointSlice watch brings the finalizer back as soon as the target is ready.
		return RemovalAwaitTarget, 5 * time.Second
	}
	if in.Mode != v1alpha1.ModeServe || in.ModeSince.IsZero() {
		return RemovalDrain, in.DrainDelay
	}
	// ModeSince has whole seconds: round up, so that the wait is never shorter than the delay.
	if left := in.ModeSince.Add(in.DrainDelay + time.Second).Sub(now); left > 0 {
		return RemovalDrain, left
	}
	return RemovalFinish, 0
}
