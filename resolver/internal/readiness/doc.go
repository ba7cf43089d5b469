// Package readiness tracks which private Services have ready endpoints, from EndpointSlice
// events, and tells a Listener the moment that changes. It also picks a ready pod address for
// the pods upstream mode. Nothing here polls or lists: state is kept per slice as events arrive.
package readiness
