// Package resources builds the objects that elasti owns, as pure functions of the ElastiService
// and what was observed. The reconciler compares them with what exists and writes only on a diff.
package resources

import (
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	apinetworking "istio.io/api/networking/v1alpha3"
	apisecurity "istio.io/api/security/v1beta1"
	apitype "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
)

// Component values of v1alpha1.LabelComponent, re-exported for the controller's packages.
const (
	ComponentPrivateService = v1alpha1.ComponentPrivateService
	ComponentResolverSlice  = v1alpha1.ComponentResolverSlice
	ComponentReplayRoute    = v1alpha1.ComponentReplayRoute
	ComponentProxyService   = v1alpha1.ComponentProxyService
	ComponentAuthorization  = v1alpha1.ComponentAuthorization
	ComponentProbedService  = v1alpha1.ComponentProbedService
)

func labels(es *v1alpha1.ElastiService, component string) map[string]string {
	return map[string]string{
		v1alpha1.LabelManagedBy:     v1alpha1.ManagedByValue,
		v1alpha1.LabelElastiService: es.Name,
		v1alpha1.LabelComponent:     component,
	}
}

// meta names an object elasti builds for es, in es's namespace, labelled and owned by it.
func meta(es *v1alpha1.ElastiService, name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: es.Namespace, Labels: labels(es, component), OwnerReferences: owner(es)}
}

func owner(es *v1alpha1.ElastiService) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(es, v1alpha1.GroupVersion.WithKind("ElastiService"))}
}

// AnnotationExportTo is Istio's per-Service visibility annotation, comma-separated.
const AnnotationExportTo = "networking.istio.io/exportTo"

// exportTo is where the private Service and the replay routes are visible: the resolver's
// namespace, whose sidecar replays through them, and their own, explicitly, so that a mesh-wide
// default of "." (default{Service,DestinationRule,VirtualService}ExportTo) cannot hide them
// from the resolver, and no other namespace's sidecars carry them.
func exportTo(es *v1alpha1.ElastiService, resolverNamespace string) []string {
	if resolverNamespace == es.Namespace {
		return []string{"."} // Istio refuses "." beside its own namespace
	}
	return []string{".", resolverNamespace}
}

// MakePrivateService selects the target's pods with every port of the public Service. The resolver
// replays through it and the controller reads the target's readiness from its EndpointSlices;
// unlike the public Service, it never points at the resolver.
func MakePrivateService(es *v1alpha1.ElastiService, public *corev1.Service, resolverNamespace string) *corev1.Service {
	svc := elastiService(es, public, names.PrivateService(es.Spec.Service), ComponentPrivateService, resolverNamespace,
		func(p corev1.ServicePort) intstr.IntOrString { return p.TargetPort })
	svc.Spec.Selector = public.Spec.Selector
	// Readiness is what the resolver waits for; publishing unready pods would open the gate too
	// early.
	svc.Spec.PublishNotReadyAddresses = false
	return svc
}

// elastiService is a ClusterIP Service of elasti's beside public, with its ports and IP families,
// visible where the private Service is.
func elastiService(es *v1alpha1.ElastiService, public *corev1.Service, name, component, resolverNamespace string,
	targetPort func(corev1.ServicePort) intstr.IntOrString) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       es.Namespace,
			Labels:          labels(es, component),
			Annotations:     map[string]string{AnnotationExportTo: strings.Join(exportTo(es, resolverNamespace), ",")},
			OwnerReferences: owner(es),
		},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeClusterIP,
			Ports:          copyPorts(public, targetPort),
			IPFamilyPolicy: public.Spec.IPFamilyPolicy,
			IPFamilies:     public.Spec.IPFamilies,
		},
	}
}

// copyPorts copies public's ports, names and protocols included, with the target port targetPort
// gives.
func copyPorts(public *corev1.Service, targetPort func(corev1.ServicePort) intstr.IntOrString) []corev1.ServicePort {
	ports := make([]corev1.ServicePort, 0, len(public.Spec.Ports))
	for _, p := range public.Spec.Ports {
		ports = append(ports, corev1.ServicePort{
			Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port, TargetPort: targetPort(p),
		})
	}
	return ports
}

// MakeResolverSlices point the public Service at the resolver pods, one EndpointSlice per IP family
// in use, with every Service port mapped to the resolver's port. kube-proxy and Istio merge them
// into the Service, so non-mesh callers (and mesh callers without a VirtualService) reach the
// resolver without any edit to the user's Service.
func MakeResolverSlices(es *v1alpha1.ElastiService, public *corev1.Service, resolvers []discoveryv1.Endpoint, resolverPort int32) []*discoveryv1.EndpointSlice {
	return slicesFor(es, public, public.Name, ComponentResolverSlice, resolvers, resolverPort,
		func(family string) string { return names.ResolverSlice(es.Spec.Service, family) })
}

// MakeProxyService is where rewritten routes send callers in Proxy mode: a Service without a
// selector, in the target's namespace, with the target's ports, whose endpoints (ProxySlices) are
// the resolver pods. A Sidecar that scopes callers to their namespace, or to the target's port,
// keeps it in scope exactly when it keeps the target; the caller's proxy speaks the protocol of
// the target's port to it (HTTP/2 for a gRPC port); and it is exported where the target is.
func MakeProxyService(es *v1alpha1.ElastiService, public *corev1.Service, resolverPort int32) *corev1.Service {
	ports := copyPorts(public, func(corev1.ServicePort) intstr.IntOrString { return intstr.FromInt32(resolverPort) })
	svc := &corev1.Service{
		ObjectMeta: meta(es, names.ProxyService(es.Spec.Service), ComponentProxyService),
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeClusterIP,
			Ports:          ports,
			IPFamilyPolicy: public.Spec.IPFamilyPolicy,
			IPFamilies:     public.Spec.IPFamilies,
		},
	}
	if e := public.Annotations[AnnotationExportTo]; e != "" {
		svc.Annotations = map[string]string{AnnotationExportTo: e}
	}
	return svc
}

// MakeProxyDestinationRule gives ProxyService's host the policy of a proxy that holds requests:
// no outlier ejection, since the resolver answers 503 when a queue is full and slowly while a
// target wakes. Without it a DestinationRule with a wildcard host (a mesh-wide one, say) would
// apply to the proxy host and could eject a resolver pod; an exact host takes precedence over
// any wildcard. It is exported where ProxyService is.
func MakeProxyDestinationRule(es *v1alpha1.ElastiService, public *corev1.Service, domain string) *networkingv1.DestinationRule {
	spec := &apinetworking.DestinationRule{
		Host: names.ServiceFQDN(names.ProxyService(es.Spec.Service), es.Namespace, domain),
		TrafficPolicy: &apinetworking.TrafficPolicy{OutlierDetection: &apinetworking.OutlierDetection{
			Consecutive_5XxErrors:    wrapperspb.UInt32(0),
			ConsecutiveGatewayErrors: wrapperspb.UInt32(0),
		}},
	}
	if e := public.Annotations[AnnotationExportTo]; e != "" {
		for _, ns := range strings.Split(e, ",") {
			spec.ExportTo = append(spec.ExportTo, strings.TrimSpace(ns))
		}
	}
	dr := &networkingv1.DestinationRule{
		ObjectMeta: meta(es, names.ProxyService(es.Spec.Service), ComponentProxyService),
	}
	proto.Merge(&dr.Spec, spec)
	return dr
}

// MakeResolverAuthorizationPolicy lets the resolver's replays through the ALLOW policies of the
// target's pods (those the public Service selects), and nothing else: it names only the
// resolver's principal. It is made only when an ALLOW policy applies, since the first ALLOW
// policy on a workload denies every request that no ALLOW policy matches. The resolver checks
// each caller against the target's own policies before it holds or replays, so the policies
// still decide who gets through.
func MakeResolverAuthorizationPolicy(es *v1alpha1.ElastiService, public *corev1.Service, principal string) *securityv1.AuthorizationPolicy {
	ap := &securityv1.AuthorizationPolicy{
		ObjectMeta: meta(es, names.ResolverAuthorizationPolicy(es.Spec.Service), ComponentAuthorization),
	}
	proto.Merge(&ap.Spec, &apisecurity.AuthorizationPolicy{
		Selector: &apitype.WorkloadSelector{MatchLabels: maps.Clone(public.Spec.Selector)},
		Action:   apisecurity.AuthorizationPolicy_ALLOW,
		Rules: []*apisecurity.Rule{{From: []*apisecurity.Rule_From{{
			Source: &apisecurity.Source{Principals: []string{principal}},
		}}}},
	})
	return ap
}

// MakeProxySlices are ProxyService's endpoints: the resolver pods, every port mapped to the
// resolver's port.
func MakeProxySlices(es *v1alpha1.ElastiService, public *corev1.Service, resolvers []discoveryv1.Endpoint, resolverPort int32) []*discoveryv1.EndpointSlice {
	return slicesFor(es, public, names.ProxyService(es.Spec.Service), ComponentProxyService, resolvers, resolverPort,
		func(family string) string { return names.ProxySlice(es.Spec.Service, family) })
}

// ProxySliceNames lists every name MakeProxySlices can produce, so stale ones can be removed.
func ProxySliceNames(es *v1alpha1.ElastiService) []string {
	return []string{names.ProxySlice(es.Spec.Service, "ipv4"), names.ProxySlice(es.Spec.Service, "ipv6")}
}

// slicesFor builds the EndpointSlices of service (one per IP family in use) that list the
// resolver pods on every port of public. Each endpoint keeps its Pod reference: istiod finds a
// slice endpoint's pod by that reference, and by IP only among pods of the slice's own namespace,
// which the resolver's are not. Without the pod there is no istio.tlsMode and no identity, and
// callers' proxies would send plain text to the resolver.
func slicesFor(es *v1alpha1.ElastiService, public *corev1.Service, service, component string,
	resolvers []discoveryv1.Endpoint, resolverPort int32, name func(family string) string) []*discoveryv1.EndpointSlice {
	byFamily := map[discoveryv1.AddressType][]discoveryv1.Endpoint{}
	for _, r := range resolvers {
		if len(r.Addresses) == 0 {
			continue
		}
		ip, err := netip.ParseAddr(r.Addresses[0])
		if err != nil {
			continue
		}
		family := discoveryv1.AddressTypeIPv4
		if ip.Is6() && !ip.Is4In6() {
			family = discoveryv1.AddressTypeIPv6
		}
		ep := discoveryv1.Endpoint{
			Addresses:  []string{ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
		}
		if ref := r.TargetRef; ref != nil && ref.Kind == "Pod" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID}
		}
		byFamily[family] = append(byFamily[family], ep)
	}
	ports := make([]discoveryv1.EndpointPort, 0, len(public.Spec.Ports))
	for _, p := range public.Spec.Ports {
		ports = append(ports, discoveryv1.EndpointPort{
			Name:        ptr.To(p.Name),
			Protocol:    ptr.To(p.Protocol),
			AppProtocol: p.AppProtocol,
			Port:        ptr.To(resolverPort),
		})
	}
	var out []*discoveryv1.EndpointSlice
	for _, family := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		eps := byFamily[family]
		if len(eps) == 0 {
			continue
		}
		sort.Slice(eps, func(i, j int) bool { return eps[i].Addresses[0] < eps[j].Addresses[0] })
		eps = slices.CompactFunc(eps, func(a, b discoveryv1.Endpoint) bool { return a.Addresses[0] == b.Addresses[0] })
		l := labels(es, component)
		l[discoveryv1.LabelServiceName] = service
		l[discoveryv1.LabelManagedBy] = v1alpha1.EndpointSliceManager
		out = append(out, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name:            name(familyName(family)),
				Namespace:       es.Namespace,
				Labels:          l,
				OwnerReferences: owner(es),
			},
			AddressType: family,
			Endpoints:   eps,
			Ports:       ports,
		})
	}
	return out
}

func familyName(f discoveryv1.AddressType) string {
	if f == discoveryv1.AddressTypeIPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// ResolverSliceNames lists every name MakeResolverSlices can produce, so stale ones can be removed.
func ResolverSliceNames(es *v1alpha1.ElastiService) []string {
	return []string{names.ResolverSlice(es.Spec.Service, "ipv4"), names.ResolverSlice(es.Spec.Service, "ipv6")}
}

// MakeReplayDestinationRule declares the public host's subsets and traffic policy (the
// DestinationRules of the host as istiod merged them) on the private host, so that the
// resolver's sidecar can reach the subset the original route named with the same TLS and
// connection settings.
func MakeReplayDestinationRule(es *v1alpha1.ElastiService, public *apinetworking.DestinationRule, domain, resolverNamespace string) *networkingv1.DestinationRule {
	spec := &apinetworking.DestinationRule{
		Host:          names.ServiceFQDN(names.PrivateService(es.Spec.Service), es.Namespace, domain),
		TrafficPolicy: proto.Clone(public.GetTrafficPolicy()).(*apinetworking.TrafficPolicy),
		ExportTo:      exportTo(es, resolverNamespace),
	}
	for _, s := range public.GetSubsets() {
		spec.Subsets = append(spec.Subsets, proto.Clone(s).(*apinetworking.Subset))
	}
	if public.GetTrafficPolicy() == nil {
		spec.TrafficPolicy = nil
	}
	dr := &networkingv1.DestinationRule{
		ObjectMeta: meta(es, names.PrivateDestinationRule(es.Spec.Service), ComponentReplayRoute),
	}
	proto.Merge(&dr.Spec, spec)
	return dr
}

// MakeReplayVirtualService routes a replay on the private host to the subset named by the
// X-Elasti-Subset header that the resolver sets for it, and to any pod otherwise. Every route
// removes elasti's headers once matched: the resolver strips the rest, but X-Elasti-Subset it
// sends for this match, and the target must not see it.
func MakeReplayVirtualService(es *v1alpha1.ElastiService, subsets []string, domain, resolverNamespace string) *networkingv1.VirtualService {
	host := names.ServiceFQDN(names.PrivateService(es.Spec.Service), es.Namespace, domain)
	spec := &apinetworking.VirtualService{Hosts: []string{host}, Gateways: []string{"mesh"}, ExportTo: exportTo(es, resolverNamespace)}
	strip := func() *apinetworking.Headers {
		return &apinetworking.Headers{Request: &apinetworking.Headers_HeaderOperations{Remove: v1alpha1.Headers()}}
	}
	for _, s := range subsets {
		spec.Http = append(spec.Http, &apinetworking.HTTPRoute{
			Name: "subset-" + s,
			Match: []*apinetworking.HTTPMatchRequest{{
				Headers: map[string]*apinetworking.StringMatch{
					headerKey(v1alpha1.HeaderSubset): {MatchType: &apinetworking.StringMatch_Exact{Exact: s}},
				},
			}},
			Route:   []*apinetworking.HTTPRouteDestination{{Destination: &apinetworking.Destination{Host: host, Subset: s}}},
			Headers: strip(),
		})
	}
	spec.Http = append(spec.Http, &apinetworking.HTTPRoute{
		Name:    "any",
		Route:   []*apinetworking.HTTPRouteDestination{{Destination: &apinetworking.Destination{Host: host}}},
		Headers: strip(),
	})
	vs := &networkingv1.VirtualService{
		ObjectMeta: meta(es, names.PrivateVirtualService(es.Spec.Service), ComponentReplayRoute),
	}
	proto.Merge(&vs.Spec, spec)
	return vs
}

// headerKey is the form Istio's header matches expect: lower case.
func headerKey(h string) string {
	b := []byte(h)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Probed is one pod that elasti's own probe passed: its endpoint and ports as the private
// Service's own EndpointSlice lists them, not yet ready there.
type Probed struct {
	Endpoint    discoveryv1.Endpoint
	Ports       []discoveryv1.EndpointPort
	AddressType discoveryv1.AddressType
}

// MakeProbedService is the selectorless Service whose slices list the probed pods, with the public
// Service's ports, visible where the private Service is. The resolver replays to it while the
// kubelet has marked no pod Ready.
func MakeProbedService(es *v1alpha1.ElastiService, public *corev1.Service, resolverNamespace string) *corev1.Service {
	return elastiService(es, public, names.ProbedService(es.Spec.Service), ComponentProbedService, resolverNamespace,
		func(p corev1.ServicePort) intstr.IntOrString { return intstr.FromInt32(p.Port) })
}

// MakeProbedSlices lists the probed pods as ready endpoints of the probed Service, one slice per
// IP family. The resolver reads them as its private Service's (LabelProbedFor) and replays to the
// probed Service, and istiod gives them to the resolver's sidecar with the pod's identity, since
// each endpoint keeps its Pod reference. A slice holds one set of
// ports; a pod whose ports differ from the first one's of its family (a named target port that
// resolves differently) waits for the kubelet.
func MakeProbedSlices(es *v1alpha1.ElastiService, probed []Probed) []*discoveryv1.EndpointSlice {
	byFamily := map[discoveryv1.AddressType]*discoveryv1.EndpointSlice{}
	for _, p := range probed {
		if len(p.Endpoint.Addresses) == 0 {
			continue
		}
		if p.AddressType != discoveryv1.AddressTypeIPv4 && p.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		s := byFamily[p.AddressType]
		if s == nil {
			l := labels(es, ComponentPrivateService)
			l[discoveryv1.LabelServiceName] = names.ProbedService(es.Spec.Service)
			l[discoveryv1.LabelManagedBy] = v1alpha1.EndpointSliceManager
			l[v1alpha1.LabelProbedFor] = names.PrivateService(es.Spec.Service)
			s = &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: names.ProbedSlice(es.Spec.Service, familyName(p.AddressType)), Namespace: es.Namespace, Labels: l, OwnerReferences: owner(es)},
				AddressType: p.AddressType,
				Ports:       p.Ports,
			}
			byFamily[p.AddressType] = s
		} else if !slices.EqualFunc(s.Ports, p.Ports, samePort) {
			continue
		}
		ep := *p.Endpoint.DeepCopy()
		ep.Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}
		s.Endpoints = append(s.Endpoints, ep)
	}
	var out []*discoveryv1.EndpointSlice
	for _, family := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		if s := byFamily[family]; s != nil {
			sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].Addresses[0] < s.Endpoints[j].Addresses[0] })
			out = append(out, s)
		}
	}
	return out
}

func samePort(a, b discoveryv1.EndpointPort) bool {
	return ptr.Deref(a.Name, "") == ptr.Deref(b.Name, "") && ptr.Deref(a.Port, 0) == ptr.Deref(b.Port, 0) &&
		ptr.Deref(a.Protocol, corev1.ProtocolTCP) == ptr.Deref(b.Protocol, corev1.ProtocolTCP) &&
		ptr.Deref(a.AppProtocol, "") == ptr.Deref(b.AppProtocol, "")
}

// ProbedSliceNames lists every name MakeProbedSlices can produce, so stale ones can be removed.
func ProbedSliceNames(es *v1alpha1.ElastiService) []string {
	return []string{names.ProbedSlice(es.Spec.Service, "ipv4"), names.ProbedSlice(es.Spec.Service, "ipv6")}
}
