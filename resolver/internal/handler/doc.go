// Package handler is the resolver's request path. Build assembles it in one place, innermost
// first: the shared reverse proxy, Forward (pick the upstream), Hold (wait for a ready target
// and signal the controller), Probe (answer configured probes without waking), Record
// (metrics), Route (find the target and strip elasti's headers). Each step is a small
// http.Handler that reads what the outer steps put in the request's context.
package handler
