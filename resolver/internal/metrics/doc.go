// Package metrics defines the resolver's Prometheus collectors. Labels are bounded: the
// ElastiService's namespace and name, a status class, a fixed outcome or result. Never a URI,
// a host or an error string.
package metrics
