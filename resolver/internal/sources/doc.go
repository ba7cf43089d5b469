// Package sources feeds the resolver's in-memory caches (registry, readiness, the route key, the
// AuthorizationPolicy store) from the controller-runtime cache: informers on ElastiServices, on
// elasti's private Services and their EndpointSlices (selected by label, so the resolver never
// holds the cluster's other objects), on the route key's one Secret and on AuthorizationPolicies.
// It is the only package of the resolver that knows informers; the caches are plain types that
// tests and the bench feed directly.
package sources
