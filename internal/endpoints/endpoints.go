// Package endpoints says which EndpointSlice endpoints may take traffic, so that the controller,
// which routes back to a target once it has one, and the resolver, which opens its gate and picks
// a pod, agree on what a ready endpoint is.
package endpoints

import discoveryv1 "k8s.io/api/discovery/v1"

// Ready says whether ep may take new requests: its pod is ready and not terminating. The
// serving condition says whether the pod is ready even for a Service that publishes not-ready
// addresses, whose ready condition is then always true; without it the ready condition counts,
// true when unknown (nil), as the API says. A terminating endpoint can still be serving, but its
// pod is going away: sending it a replay, or leaving Proxy mode for it, would be sending into a
// shutdown.
func Ready(ep discoveryv1.Endpoint) bool {
	c := ep.Conditions
	ready := c.Ready == nil || *c.Ready
	if c.Serving != nil {
		ready = *c.Serving
	}
	return ready && (c.Terminating == nil || !*c.Terminating)
}
