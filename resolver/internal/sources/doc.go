// Package sources feeds the registry and the readiness cache from the controller-runtime cache:
// informers on ElastiServices, on elasti's private Services and on their EndpointSlices, the
// last two selected by label so the resolver never holds the cluster's other objects.
package sources
