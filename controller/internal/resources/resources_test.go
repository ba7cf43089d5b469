package resources

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	apinetworking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

func fixtures() (*v1alpha1.ElastiService, *corev1.Service) {
	es := &v1alpha1.ElastiService{}
	es.Name, es.Namespace, es.Spec.Service = "shop-es", "shop", "shop"
	svc := &corev1.Service{}
	svc.Name, svc.Namespace = "shop", "shop"
	svc.Spec.Selector = map[string]string{"app": "shop"}
	svc.Spec.Ports = []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
		{Name: "grpc", Port: 9090, TargetPort: intstr.FromString("grpc"), Protocol: corev1.ProtocolTCP},
	}
	return es, svc
}

func TestResolverSlices(t *testing.T) {
	es, svc := fixtures()
	tests := map[string]struct {
		addrs      []string
		wantFamily map[discoveryv1.AddressType][]string
	}{
		"none":            {nil, map[discoveryv1.AddressType][]string{}},
		"ipv4 sorted":     {[]string{"10.0.0.9", "10.0.0.5", "10.0.0.9"}, map[discoveryv1.AddressType][]string{discoveryv1.AddressTypeIPv4: {"10.0.0.5", "10.0.0.9"}}},
		"dual stack":      {[]string{"fd00::5", "10.0.0.5"}, map[discoveryv1.AddressType][]string{discoveryv1.AddressTypeIPv4: {"10.0.0.5"}, discoveryv1.AddressTypeIPv6: {"fd00::5"}}},
		"garbage skipped": {[]string{"not-an-ip", "10.0.0.5"}, map[discoveryv1.AddressType][]string{discoveryv1.AddressTypeIPv4: {"10.0.0.5"}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := MakeResolverSlices(es, svc, endpoints(tc.addrs...), 8012)
			if len(got) != len(tc.wantFamily) {
				t.Fatalf("got %d slices, want %d", len(got), len(tc.wantFamily))
			}
			for _, s := range got {
				var addrs []string
				for _, ep := range s.Endpoints {
					addrs = append(addrs, ep.Addresses...)
					if ep.Conditions.Ready == nil || !*ep.Conditions.Ready {
						t.Errorf("endpoint %v is not ready", ep.Addresses)
					}
				}
				if want := tc.wantFamily[s.AddressType]; len(addrs) != len(want) || (len(want) > 0 && addrs[0] != want[0]) {
					t.Errorf("%s addresses = %v, want %v", s.AddressType, addrs, want)
				}
				if s.Labels[discoveryv1.LabelServiceName] != "shop" || s.Labels[discoveryv1.LabelManagedBy] != v1alpha1.EndpointSliceManager {
					t.Errorf("labels = %v, want service-name shop and managed-by %s", s.Labels, v1alpha1.EndpointSliceManager)
				}
				if len(s.Ports) != 2 || *s.Ports[0].Name != "http" || *s.Ports[1].Name != "grpc" ||
					*s.Ports[0].Port != 8012 || *s.Ports[1].Port != 8012 {
					t.Errorf("ports = %+v, want http and grpc both on 8012", s.Ports)
				}
			}
		})
	}
}

// endpoints are resolver endpoints as the resolver Service's slices list them: each with its pod.
func endpoints(addrs ...string) []discoveryv1.Endpoint {
	out := make([]discoveryv1.Endpoint, 0, len(addrs))
	for i, a := range addrs {
		out = append(out, discoveryv1.Endpoint{Addresses: []string{a}, TargetRef: &corev1.ObjectReference{
			Kind: "Pod", Namespace: "elasti-system", Name: fmt.Sprintf("elasti-resolver-%d", i), UID: types.UID(fmt.Sprint("uid-", i)),
		}})
	}
	return out
}

// istiod finds the pod behind a slice endpoint by its targetRef, and by IP only in the slice's
// own namespace: without the ref, callers' proxies get no istio.tlsMode and no identity for the
// resolver and send it plain text.
func TestResolverSlicesKeepThePodReference(t *testing.T) {
	es, svc := fixtures()
	eps := endpoints("10.0.0.5")
	eps = append(eps, discoveryv1.Endpoint{Addresses: []string{"10.0.0.6"}})
	for _, build := range []func() []*discoveryv1.EndpointSlice{
		func() []*discoveryv1.EndpointSlice { return MakeResolverSlices(es, svc, eps, 8012) },
		func() []*discoveryv1.EndpointSlice { return MakeProxySlices(es, svc, eps, 8012) },
	} {
		got := build()
		if len(got) != 1 || len(got[0].Endpoints) != 2 {
			t.Fatalf("got %+v, want one slice with two endpoints", got)
		}
		ref := got[0].Endpoints[0].TargetRef
		if ref == nil || ref.Kind != "Pod" || ref.Namespace != "elasti-system" || ref.Name != "elasti-resolver-0" || ref.UID != "uid-0" {
			t.Errorf("%s: targetRef = %+v, want Pod elasti-system/elasti-resolver-0", got[0].Name, ref)
		}
		if got[0].Endpoints[1].TargetRef != nil {
			t.Errorf("%s: an endpoint without a pod got targetRef %+v", got[0].Name, got[0].Endpoints[1].TargetRef)
		}
	}
}

func TestProxyService(t *testing.T) {
	es, svc := fixtures()
	svc.Annotations = map[string]string{AnnotationExportTo: ".,gw"}
	svc.Spec.Ports[1].AppProtocol = ptr.To("grpc")
	got := MakeProxyService(es, svc, 8012)
	if got.Name != "shop-elasti-proxy" || got.Namespace != "shop" || got.Spec.Selector != nil {
		t.Errorf("got %s/%s with selector %v, want shop/shop-elasti-proxy without one", got.Namespace, got.Name, got.Spec.Selector)
	}
	if got.Annotations[AnnotationExportTo] != ".,gw" {
		t.Errorf("exportTo = %q, want the target's", got.Annotations[AnnotationExportTo])
	}
	// The target's ports, so that a caller's Sidecar keeps it and speaks the port's protocol.
	if len(got.Spec.Ports) != 2 || got.Spec.Ports[0].Port != 80 || got.Spec.Ports[1].Port != 9090 ||
		got.Spec.Ports[1].Name != "grpc" || ptr.Deref(got.Spec.Ports[1].AppProtocol, "") != "grpc" ||
		got.Spec.Ports[1].TargetPort.IntValue() != 8012 {
		t.Errorf("ports = %+v, want 80 and 9090 (grpc) with target port 8012", got.Spec.Ports)
	}
	dr := MakeProxyDestinationRule(es, svc, "cluster.local")
	od := dr.Spec.GetTrafficPolicy().GetOutlierDetection()
	if dr.Spec.GetHost() != "shop-elasti-proxy.shop.svc.cluster.local" || !slices.Equal(dr.Spec.GetExportTo(), []string{".", "gw"}) ||
		od.GetConsecutive_5XxErrors() == nil || od.GetConsecutive_5XxErrors().GetValue() != 0 || od.GetConsecutiveGatewayErrors().GetValue() != 0 {
		t.Errorf("proxy DestinationRule = %v, want the proxy host, the target's exportTo, and no ejection", &dr.Spec)
	}
	proxySlices := MakeProxySlices(es, svc, endpoints("10.0.0.5"), 8012)
	if len(proxySlices) != 1 || proxySlices[0].Labels[discoveryv1.LabelServiceName] != "shop-elasti-proxy" || proxySlices[0].Name != "shop-elasti-proxy-ipv4" {
		t.Errorf("slices = %+v, want one for shop-elasti-proxy", proxySlices)
	}
}

func TestPrivateServiceCopiesSelectorAndPorts(t *testing.T) {
	es, svc := fixtures()
	got := MakePrivateService(es, svc, "elasti-system")
	if got.Name != "shop-elasti-private" || got.Namespace != "shop" {
		t.Errorf("name = %s/%s, want shop/shop-elasti-private", got.Namespace, got.Name)
	}
	if got.Spec.Selector["app"] != "shop" || len(got.Spec.Ports) != 2 || got.Spec.Ports[1].TargetPort.StrVal != "grpc" {
		t.Errorf("spec = %+v, want the public selector and both ports", got.Spec)
	}
	if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].Name != "shop-es" {
		t.Errorf("owner = %+v, want the ElastiService", got.OwnerReferences)
	}
}

func TestReplayVirtualServiceMatchesSubsetHeader(t *testing.T) {
	es, _ := fixtures()
	vs := MakeReplayVirtualService(es, []string{"v1", "v2"}, "cluster.local", "elasti-system")
	if n := len(vs.Spec.Http); n != 3 {
		t.Fatalf("got %d routes, want one per subset and a default", n)
	}
	m := vs.Spec.Http[1].GetMatch()[0].GetHeaders()["x-elasti-subset"]
	if m.GetExact() != "v2" || vs.Spec.Http[1].GetRoute()[0].GetDestination().GetSubset() != "v2" {
		t.Errorf("route %v does not send X-Elasti-Subset: v2 to subset v2", vs.Spec.Http[1])
	}
	if vs.Spec.Http[2].GetMatch() != nil || vs.Spec.Http[2].GetRoute()[0].GetDestination().GetSubset() != "" {
		t.Errorf("last route %v should catch everything else without a subset", vs.Spec.Http[2])
	}
}

// The resolver sends X-Elasti-Subset for the replay route's match; the route must drop it, and
// every other elasti header, before the request reaches the target.
func TestReplayVirtualServiceRemovesElastiHeaders(t *testing.T) {
	es, _ := fixtures()
	vs := MakeReplayVirtualService(es, []string{"v1", "v2"}, "cluster.local", "elasti-system")
	for _, r := range vs.Spec.GetHttp() {
		removed := r.GetHeaders().GetRequest().GetRemove()
		for _, h := range []string{v1alpha1.HeaderElastiService, v1alpha1.HeaderPort, v1alpha1.HeaderSubset, v1alpha1.HeaderRestoreKey, v1alpha1.HeaderSignature} {
			if !slices.Contains(removed, h) {
				t.Errorf("route %s removes %q, not %s", r.GetName(), removed, h)
			}
		}
	}
}

// A mesh whose meshConfig sets default{Service,DestinationRule,VirtualService}ExportTo: ["."]
// hides objects without an exportTo from the resolver in its own namespace: everything the
// resolver replays through is exported to it, and to nowhere else but its own namespace.
func TestReplayObjectsAreExportedToTheResolver(t *testing.T) {
	es, svc := fixtures()
	dr := &apinetworking.DestinationRule{Host: "shop"}
	tests := map[string]struct {
		resolverNamespace string
		want              []string
	}{
		"resolver elsewhere":             {"elasti-system", []string{".", "elasti-system"}},
		"resolver in the same namespace": {"shop", []string{"."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := map[string][]string{
				"private Service":        strings.Split(MakePrivateService(es, svc, tc.resolverNamespace).Annotations["networking.istio.io/exportTo"], ","),
				"replay DestinationRule": MakeReplayDestinationRule(es, dr, "cluster.local", tc.resolverNamespace).Spec.GetExportTo(),
				"replay VirtualService":  MakeReplayVirtualService(es, []string{"v1"}, "cluster.local", tc.resolverNamespace).Spec.GetExportTo(),
			}
			for obj, exp := range got {
				if !slices.Equal(exp, tc.want) {
					t.Errorf("%s: exportTo = %q, want %q", obj, exp, tc.want)
				}
			}
		})
	}
}

// The controller's admission policy (charts/elasti/admission) lets it write only objects with
// elasti's managed-by label: everything built here must carry it.
func TestEverythingBuiltIsLabelled(t *testing.T) {
	es, svc := fixtures()
	dr := &apinetworking.DestinationRule{Host: "shop"}
	objs := map[string]metav1.Object{
		"private Service":        MakePrivateService(es, svc, "elasti-system"),
		"replay DestinationRule": MakeReplayDestinationRule(es, dr, "cluster.local", "elasti-system"),
		"replay VirtualService":  MakeReplayVirtualService(es, []string{"v1"}, "cluster.local", "elasti-system"),
	}
	for _, s := range MakeResolverSlices(es, svc, endpoints("10.0.0.5", "fd00::5"), 8012) {
		objs["resolver EndpointSlice "+s.Name] = s
	}
	objs["proxy Service"] = MakeProxyService(es, svc, 8012)
	objs["proxy DestinationRule"] = MakeProxyDestinationRule(es, svc, "cluster.local")
	for _, s := range MakeProxySlices(es, svc, endpoints("10.0.0.5"), 8012) {
		objs["proxy EndpointSlice "+s.Name] = s
	}
	for name, o := range objs {
		if got := o.GetLabels()[v1alpha1.LabelManagedBy]; got != v1alpha1.ManagedByValue {
			t.Errorf("%s: %s = %q, want %q", name, v1alpha1.LabelManagedBy, got, v1alpha1.ManagedByValue)
		}
	}
	if len(objs) != 8 {
		t.Errorf("built %d objects, want 8 (two resolver slices, one proxy slice)", len(objs))
	}
}
