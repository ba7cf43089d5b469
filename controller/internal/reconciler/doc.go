// Package reconciler is the ElastiService controller: the only code that writes routes,
// EndpointSlices and replica counts. Every watch, and the resolver's activity signal, only
// enqueues; Reconcile gathers observations, asks decide.Decide, and acts in a fixed order:
// private Service, replay routes, public routes, replicas, status.
package reconciler
