// Package endpoints says which EndpointSlice endpoints may take traffic, so that the controller,
// which routes back to a target once it has one, and the resolver, which opens its gate and picks
// a pod, agree on what a ready endpoint is.
package endpoints

import discoveryv1 "k8s.io/api/discovery/v1"

// Ready says whether ep may take new requests: its ready condition is true or unknown (nil,
// which the API says to read as ready) and it is not terminating. A terminating endpoint can
// still be marked ready, for a Service that publishes not-ready addresses, but its pod is going
// away: sending it a replay, or leaving Proxy mode for it, would be sending into a shutdown.
func Ready(ep discoveryv1.Endpoint) bool {
	c := ep.Conditions
	return (c.Ready == nil || *c.Ready) && (c.Terminating == nil || !*c.Terminating)
}
