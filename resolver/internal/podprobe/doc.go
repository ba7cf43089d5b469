// Package podprobe probes a new pod with the pod's own startup and readiness probes, as the
// kubelet would, so that the resolver can release held requests on the first success instead of
// waiting for the EndpointSlice, which lags the kubelet's next periodic probe by up to
// periodSeconds (10 s by default).
//
// Translate turns a pod into a Probe: every HTTP, TCP and gRPC startup and readiness probe of its
// containers (and of its restartable init containers, which the pod's readiness counts too),
// aimed at the pod IP. What the resolver cannot check from outside the node (exec probes, a
// probe's host, readiness gates), or a pod with no startup or readiness probe, gives
// ErrNotProbeable: the caller then waits for the EndpointSlice. Check runs a Probe once; Run
// repeats it with capped, jittered exponential backoff until it passes or its attempt or time
// bound is reached.
//
// This package only probes; nothing here decides which pods to probe or opens a gate.
package podprobe
