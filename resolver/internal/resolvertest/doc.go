// Package resolvertest runs the resolver without an API server: app.New's wiring, with the test
// playing the cluster (it adds ElastiServices and writes EndpointSlices) and a stand-in for the
// controller that wakes nothing. The chain's tests in resolver/internal/app, the sources suite
// and the resolver benchmark build on it. It is test support like internal/testsupport, but
// lives under resolver/ because only resolver/ may import these parts; since it imports app,
// which imports the handler, the handler's own tests cannot use it.
package resolvertest
