// Package podprobe probes a new pod with the pod's own startup and readiness probes, as the
// kubelet would, so that the controller can publish the pod to the resolver on the first success
// instead of waiting for the kubelet's next periodic probe, up to periodSeconds (10 s by default)
// later.
//
// Translate turns a pod into a Probe: every HTTP, TCP and gRPC startup and readiness probe of its
// containers (and of its restartable init containers, which the pod's readiness counts too),
// aimed at the pod IP. What cannot be checked from outside the node (exec probes, a
// probe's host, readiness gates), or a pod with no startup or readiness probe, gives
// ErrNotProbeable: the caller then waits for the EndpointSlice. Check runs a Probe once; Run
// repeats it with capped, jittered exponential backoff until it passes or its attempt or time
// bound is reached. A Prober runs Run for many pods at once, one goroutine each, keeps checking
// a pod that passed, and says when a pod's state changes; which pods to probe, and what a pass
// means, is its caller's.
package podprobe
