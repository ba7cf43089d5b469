// Package v1 is the activity API between elasti's two binaries: the signal that the resolver
// sends to the controller, "this ElastiService has traffic". The first held request sends it at
// once and wakes the target; later requests refresh it at most once per Interval so the
// controller never scales an active Service to zero. Both sides import it as activityv1.
package v1

import "time"

// Path is where the controller's leader accepts activity signals (HTTP POST).
const Path = "/v1/activity"

// KeepAlivePath is where the resolver checks, between wakes, that the leader takes its signals
// (HTTP POST, no body; 204). It names no ElastiService and wakes nothing: it keeps the
// resolver's connection on the leader and its token reviewed, so that the first signal of a
// wake pays neither a dial, nor a standby's 503, nor a TokenReview.
const KeepAlivePath = "/v1/keepalive"

// DefaultPort is the controller's activity port.
const DefaultPort = 8013

// Audience is the audience of the service account token the resolver presents, so that a token
// minted for elasti cannot be replayed against the API server or another service.
const Audience = "elasti-controller"

// Interval is the shortest time between two signals for the same target from one resolver
// while the target is awake.
const Interval = time.Second

// Signal is the body of an activity POST.
type Signal struct {
	// Namespace and Name of the ElastiService.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Held is true when the resolver is holding requests, that is the target must wake now.
	Held bool `json:"held"`
}
