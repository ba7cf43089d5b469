// Package app wires the resolver: the registry of ElastiServices, the readiness cache and the
// throttler that follows it, the activity client, the route key, the AuthorizationPolicy store,
// the reverse proxy and the handler chain over them. resolver/cmd, the tests and the bench all
// build the resolver with New, so they run the same wiring and differ only in their options and
// in what feeds the caches: informers (Watch) in the cluster, direct calls elsewhere.
package app
