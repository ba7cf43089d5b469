// Package registry knows which ElastiServices the resolver serves, the ports of their private
// Services, and how to find a target from a request's X-Elasti-Service header or its Host. It is
// fed by informer events (or directly, in tests and benchmarks) and answers from memory: a
// request never costs an API call.
package registry
