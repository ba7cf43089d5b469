// Package names holds every name that elasti generates, so that the controller, which creates
// objects, and the resolver, which looks them up, can never disagree.
package names

import (
	"fmt"
	"hash/fnv"
	"strings"
)

const maxNameLen = 63

// PrivateService is the Service that selects the target's pods for the resolver and for
// readiness: the public Service may point at the resolver, this one never does.
func PrivateService(service string) string { return bounded(service, "elasti-private") }

// PrivateVirtualService routes the resolver's replay to the subset the original route named.
func PrivateVirtualService(service string) string { return bounded(service, "elasti-replay") }

// PrivateDestinationRule declares the public DestinationRule's subsets on the private host.
func PrivateDestinationRule(service string) string { return bounded(service, "elasti-replay") }

// ResolverSlice is the EndpointSlice that points the public Service at the resolver, one per
// IP family ("ipv4" or "ipv6").
func ResolverSlice(service, family string) string {
	return bounded(service, "elasti-"+family)
}

// ProbedService is the selectorless Service, with the public Service's ports, whose endpoints are
// the new pods elasti's own probe passed before the kubelet marked them Ready. It is apart from
// PrivateService because kube-proxy and istiod keep one of two slices' entries for the same
// address arbitrarily, so a ready entry beside the kubelet's not-ready one would be ignored at
// random.
func ProbedService(service string) string { return bounded(service, "elasti-probed") }

// ProbedSlice is the EndpointSlice of ProbedService, one per IP family.
func ProbedSlice(service, family string) string {
	return bounded(service, "elasti-probed-"+family)
}

// ProxyService is the selectorless Service, in the target's namespace and with the target's
// ports, whose endpoints are the resolver pods: rewritten routes send to it, so that a caller's
// Sidecar scope and protocol choice for the target apply to it unchanged.
func ProxyService(service string) string { return bounded(service, "elasti-proxy") }

// ProxySlice is the EndpointSlice of ProxyService, one per IP family.
func ProxySlice(service, family string) string { return bounded(service, "elasti-proxy-"+family) }

// ResolverAuthorizationPolicy lets the resolver's replays through the target's ALLOW
// AuthorizationPolicies.
func ResolverAuthorizationPolicy(service string) string { return bounded(service, "elasti-resolver") }

// ServiceFQDN is the cluster-local DNS name of a Service.
func ServiceFQDN(service, namespace, domain string) string {
	return service + "." + namespace + ".svc." + domain
}

// bounded joins base and suffix, and shortens base with a hash when the result would be longer
// than a DNS label, so that two long names cannot collide.
func bounded(base, suffix string) string {
	name := base + "-" + suffix
	if len(name) <= maxNameLen {
		return name
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(base))
	hash := fmt.Sprintf("%08x", h.Sum32())
	keep := maxNameLen - len(suffix) - len(hash) - 2
	return strings.TrimRight(base[:keep], "-") + "-" + hash + "-" + suffix
}
