// Package decide turns what the controller observed about one ElastiService into what it should
// do. It is pure: no I/O and no clock, so that every case is a row in a table test.
//
// The rules, in order of precedence:
//
//	unsupported (a port that is   -> Serve, and wake the target if it is at zero: the resolver
//	not HTTP, a policy the           cannot hold that traffic or check its callers. A Proxy
//	resolver cannot enforce)         already programmed stays, while a resolver is ready,
//	                                 until the target is ready
//	no ready resolver             -> Serve, and wake the target if it is at zero (fail open)
//	woken in this Proxy period    -> Proxy until the target is ready, then Serve, idle or not;
//	                                 not ready within the wake timeout: WakeFailed, and once
//	                                 idle, scale to zero (the routes are on the resolver already)
//	idle past the cooldown        -> Proxy; once Proxy has been programmed for the drain delay,
//	                                 scale to zero (make before break)
//	active                        -> wake the target if it is at zero; Serve once it has ready
//	                                 endpoints, Proxy until then
//
// A failed wake stays WakeFailed, at zero and through the next wake, until the target serves.
// "Idle" needs healthy triggers: when a trigger cannot be read, nothing is idle.
package decide

import (
	"time"

	activityv1 "github.com/elasti-dev/elasti/api/activity/v1"
	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// HeldSilence is how long the controller must have heard no activity signal before it takes
// it that the resolver holds no request for the target. The controller cannot ask; but the
// resolver repeats its held signal every activityv1.Interval for as long as it holds one (each call
// bounded by a 2 s timeout), and every signal is activity. So silence for a few intervals means
// nothing is held, or that the controller cannot hear the resolver, and then nothing better is
// known. It matters only where the cooldown is shorter.
const HeldSilence = 5 * activityv1.Interval

// PrepareDelay is how long the proxy Service, which rewritten routes name, must have existed
// before a route names it: a caller's proxy that had the route before the Service would answer
// 503 for a host it has no cluster for. istiod pushes a new Service within a few hundred
// milliseconds; the delay is counted from the Service's creation timestamp, which the API server
// stamps in whole seconds, so it is a second longer than that.
const PrepareDelay = 2 * time.Second

// Prepare holds a switch from Serve to Proxy until what Proxy mode needs has existed for
// PrepareDelay (for made so far): callers stay on the target meanwhile, and the switch is looked
// at again when the delay is over. Only an ElastiService's first Proxy period waits: the objects
// are kept from then on.
func Prepare(d Decision, current v1alpha1.Mode, made time.Duration) Decision {
	if d.Mode != v1alpha1.ModeProxy || current == v1alpha1.ModeProxy || made >= PrepareDelay {
		return d
	}
	d.Mode = v1alpha1.ModeServe
	if wait := PrepareDelay - made; d.RequeueAfter <= 0 || wait < d.RequeueAfter {
		d.RequeueAfter = wait
	}
	return d
}

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
	// ReadyEndpoints counts the target's ready endpoints in the Service's own EndpointSlices.
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
	// WakeTimeout is how long a wake may take to reach a ready endpoint before it has failed.
	WakeTimeout time.Duration
	// WakeFailedAt is when a wake was last found to have failed; zero if never.
	WakeFailedAt time.Time
	// Unsupported is why the resolver may not take the target's traffic, empty when it may:
	// ReasonUnsupportedPort for a port that is not HTTP (NonHTTPPorts), or
	// ReasonUnsupportedAuthorization for an AuthorizationPolicy it cannot enforce.
	Unsupported string
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
	// RecordWakeFailure is true when this pass finds that the latest wake did not reach a ready
	// endpoint within WakeTimeout: record the time and say why, once per failed wake.
	RecordWakeFailure bool
}

// Ready is the status of the Ready condition for d: False while a wake has failed, and while a
// port or a policy keeps the target from going to zero.
func (d Decision) Ready() bool {
	switch d.Reason {
	case v1alpha1.ReasonWakeFailed, v1alpha1.ReasonUnsupportedPort, v1alpha1.ReasonUnsupportedAuthorization:
		return false
	}
	return true
}

// AskTriggers says whether the triggers must be asked: only for a target that is up and that
// elasti saw idle for the whole cooldown, when only a trigger could still say it is in use. They
// are then asked once, for the whole window.
func AskTriggers(replicas int32, lastActivity time.Time, cooldown time.Duration, now time.Time) bool {
	return replicas > 0 && now.Sub(lastActivity) >= cooldown
}

// RequeueAfter is when to look again: the decision's time, unless the triggers could not be
// read, when they are asked again after retry (until they answer, nothing is idle).
func RequeueAfter(d Decision, triggersFailed bool, retry time.Duration) time.Duration {
	if triggersFailed {
		return retry
	}
	return d.RequeueAfter
}

// Decide returns the Decision for in at time now.
func Decide(in Input, now time.Time) Decision {
	if in.Unsupported != "" {
		d := Decision{Mode: v1alpha1.ModeServe, Reason: in.Unsupported}
		if in.Replicas == 0 {
			d.Scale = ScaleUp
		}
		// Make before break for the HTTP callers held now; never into Proxy from Serve.
		if in.Mode == v1alpha1.ModeProxy && in.ReadyEndpoints == 0 && in.ResolverReady {
			d.Mode = v1alpha1.ModeProxy
		}
		return d
	}
	if !in.ResolverReady {
		d := Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonNoResolverReady}
		if in.Replicas == 0 {
			d.Scale = ScaleUp
		}
		return d
	}

	idleFor := now.Sub(in.LastActivity)
	// Failure is recorded only in Proxy mode, and Serve is programmed only for a ready target
	// (or no resolver), so a failure after the switch to Proxy means no wake has served since.
	failed := in.Mode == v1alpha1.ModeProxy && in.WakeFailedAt.After(in.ModeSince)
	if in.Mode == v1alpha1.ModeProxy && in.Replicas > 0 && in.WokeAt.After(in.ModeSince) {
		if in.ReadyEndpoints > 0 {
			return Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonWoken, RequeueAfter: max(in.Cooldown-idleFor, in.DrainDelay)}
		}
		// Woken in this Proxy period: the wake has until WakeTimeout to finish before idleness
		// is judged, so that a slow start is not cut short by a short cooldown.
		if wakingFor := now.Sub(in.WokeAt); wakingFor < in.WakeTimeout {
			d := Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonWaking, RequeueAfter: in.WakeTimeout - wakingFor}
			if failed {
				d.Reason = v1alpha1.ReasonWakeFailed // a retry; the failure stands until it serves
			}
			return d
		}
		// The wake failed. Routes have been on the resolver since before it, so the target may
		// go to zero as soon as nothing is held for it and it is idle: make before break holds.
		d := Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonWakeFailed, RecordWakeFailure: !in.WakeFailedAt.After(in.WokeAt)}
		if !in.TriggersHealthy {
			return d
		}
		if quiet := max(in.Cooldown, HeldSilence); idleFor < quiet {
			d.RequeueAfter = quiet - idleFor
			return d
		}
		if wait := in.ModeSince.Add(in.DrainDelay).Sub(now); wait > 0 {
			d.RequeueAfter = wait
			return d
		}
		d.Scale = ScaleToZero
		return d
	}
	if in.TriggersHealthy && idleFor >= in.Cooldown {
		d := Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonIdle}
		if in.Replicas == 0 {
			d.Reason = v1alpha1.ReasonScaledToZero
			if failed {
				d.Reason = v1alpha1.ReasonWakeFailed
			}
			return d
		}
		if in.Mode != v1alpha1.ModeProxy || in.ModeSince.IsZero() {
			// The routes switch in this pass; look again once callers have had time to follow.
			d.RequeueAfter = in.DrainDelay
			return d
		}
		if wait := in.ModeSince.Add(in.DrainDelay).Sub(now); wait > 0 {
			d.Reason = v1alpha1.ReasonDraining
			d.RequeueAfter = wait
			return d
		}
		d.Scale = ScaleToZero
		return d
	}

	d := Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonActive}
	if in.TriggersHealthy {
		d.RequeueAfter = in.Cooldown - idleFor
	}
	if in.Replicas == 0 {
		d.Scale = ScaleUp
	}
	if in.ReadyEndpoints == 0 {
		// Not ready is not reachable: keep callers on the resolver, which holds them.
		d.Mode = v1alpha1.ModeProxy
		d.Reason = v1alpha1.ReasonTargetNotReady
		if failed {
			d.Reason = v1alpha1.ReasonWakeFailed // waking again after a failed wake
		}
	}
	return d
}
