// Package activity sends the resolver's activity signals to the controller: Held right away when
// a target's first request is held, repeated with capped exponential backoff while requests
// stay held, and Active at most once per activityv1.Interval per target while traffic passes
// through.
// A replica that does not lead answers 503; that is retried within milliseconds, and never
// later than NotLeaderMaxBackoff, on a new connection, which kube-proxy may send to the leader.
// One signal is in flight per target and kind; a slow or absent controller never blocks a
// request.
package activity
