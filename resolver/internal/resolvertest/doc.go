// Package resolvertest runs the resolver's in-memory parts without an API server: a registry,
// a readiness cache and a throttler, wired as the resolver's main wires them, with the test
// playing the cluster (it adds ElastiServices and writes EndpointSlices). The handler's tests,
// the sources suite and the resolver benchmark build on it. It is test support like
// internal/testsupport, but lives under resolver/ because only resolver/ may import these
// parts, and it does not import the handler, so that the handler's own tests can use it.
package resolvertest
