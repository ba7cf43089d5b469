// Package decide turns what the controller observed about one ElastiService into what it should
// do. It is pure: no I/O and no clock, so that every case is a row in a table test.
//
// The rules, in order of precedence:
//
//	no ready resolver             -> Serve, and wake the target if it is at zero (fail open)
//	idle past the cooldown        -> Proxy; once Proxy has been programmed for the drain delay,
//	                                 scale to zero (make before break)
//	woken in this Proxy period    -> Proxy until the target is ready, then Serve, idle or not
//	active                        -> wake the target if it is at zero; Serve once it has ready
//	                                 endpoints, Proxy until then
//
// "Idle" needs healthy triggers: when a trigger cannot be read, nothing is idle.
package decide

import (
	"time"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
)

// Scale is what to do with the target's replica count.
type Scale int

const (
	// ScaleNone leaves the replica count to whoever owns it (the user, KEDA or an HPA).
	ScaleNone Scale = iota
	// ScaleToZero takes the target to zero replicas.
	ScaleToZero
	// ScaleUp takes the target from zero to minTargetReplicas.
	ScaleUp
)

func (s Scale) String() string {
	switch s {
	case ScaleToZero:
		return "ToZero"
	case ScaleUp:
		return "Up"
	default:
		return "None"
	}
}

// Input is what the controller observed.
type Input struct {
	// Mode is the mode programmed now; empty for a new ElastiService.
	Mode v1alpha1.Mode
	// ModeSince is when Mode was programmed.
	ModeSince time.Time
	// Replicas is the target's desired replica count, read through /scale.
	Replicas int32
	// ReadyEndpoints counts the target's ready endpoints behind the private Service.
	ReadyEndpoints int32
	// ResolverReady is true when at least one resolver endpoint is ready.
	ResolverReady bool
	// WokeAt is when elasti last scaled the target up from zero.
	WokeAt time.Time
	// LastActivity is the latest of: a request seen by the resolver, a trigger above its
	// threshold, a scale-up, and the ElastiService's creation.
	LastActivity time.Time
	// TriggersHealthy is false when a trigger could not be read.
	TriggersHealthy bool
	// Cooldown is how long the target must be idle before it goes to zero.
	Cooldown time.Duration
	// DrainDelay is how long Proxy mode must have been programmed before the target goes to
	// zero, so that every caller's proxy has picked up the new routes.
	DrainDelay time.Duration
}

// Decision is what the controller should do.
type Decision struct {
	// Mode to program.
	Mode v1alpha1.Mode
	// Scale action to take after the routes match Mode.
	Scale Scale
	// RequeueAfter is when to look again without any event; zero means only on events.
	RequeueAfter time.Duration
	// Reason is a CamelCase word for conditions and events.
	Reason string
}

// Decide returns the Decision for in at time now.
func Decide(in Input, now time.Time) Decision {
	if !in.ResolverReady {
		d := Decision{Mode: v1alpha1.ModeServe, Reason: "NoResolverReady"}
		if in.Replicas == 0 {
			d.Scale = ScaleUp
		}
		return d
	}

	idleFor := now.Sub(in.LastActivity)
	if in.Mode == v1alpha1.ModeProxy && in.Replicas > 0 && in.WokeAt.After(in.ModeSince) {
		// Woken in this Proxy period: finish the wake before judging idleness. Requests may
		// be held for the target, and the resolver reports them as activity only as it
		// replays them, so going back to zero before Serve could strand them.
		if in.ReadyEndpoints == 0 {
			return Decision{Mode: v1alpha1.ModeProxy, Reason: "Waking"}
		}
		return Decision{Mode: v1alpha1.ModeServe, Reason: "Woken", RequeueAfter: max(in.Cooldown-idleFor, in.DrainDelay)}
	}
	if in.TriggersHealthy && idleFor >= in.Cooldown {
		d := Decision{Mode: v1alpha1.ModeProxy, Reason: "Idle"}
		if in.Replicas == 0 {
			d.Reason = "ScaledToZero"
			return d
		}
		if in.Mode != v1alpha1.ModeProxy || in.ModeSince.IsZero() {
			// The routes switch in this pass; look again once callers have had time to follow.
			d.RequeueAfter = in.DrainDelay
			return d
		}
		if wait := in.ModeSince.Add(in.DrainDelay).Sub(now); wait > 0 {
			d.Reason = "Draining"
			d.RequeueAfter = wait
			return d
		}
		d.Scale = ScaleToZero
		return d
	}

	d := Decision{Mode: v1alpha1.ModeServe, Reason: "Active"}
	if in.TriggersHealthy {
		d.RequeueAfter = in.Cooldown - idleFor
	}
	if in.Replicas == 0 {
		d.Scale = ScaleUp
	}
	if in.ReadyEndpoints == 0 {
		// Not ready is not reachable: keep callers on the resolver, which holds them.
		d.Mode = v1alpha1.ModeProxy
		d.Reason = "TargetNotReady"
	}
	return d
}
