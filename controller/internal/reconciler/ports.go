package reconciler

import (
	"context"
	"fmt"
	"slices"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/decide"
	"github.com/elasti-dev/elasti/controller/internal/routes"
)

// nonHTTPPorts lists the ports of the public Service whose traffic the resolver could not hold:
// by their own declaration, or because a VirtualService's tcp or tls route sends callers there.
func (r *Reconciler) nonHTTPPorts(ctx context.Context, es *v1alpha1.ElastiService, public *corev1.Service) ([]decide.NonHTTPPort, error) {
	var l4 []decide.L4Route
	if r.Istio {
		fqdn := r.routeParams(es).FQDN()
		var list networkingv1.VirtualServiceList
		if err := r.List(ctx, &list, client.MatchingFields{indexRoutesTo: fqdn}); err != nil {
			return nil, fmt.Errorf("listing VirtualServices: %w", err)
		}
		for _, vs := range list.Items {
			if vs.Labels[v1alpha1.LabelComponent] == "" {
				l4 = append(l4, r.l4Routes(vs, fqdn)...)
			}
		}
	}
	return decide.NonHTTPPorts(public.Spec.Ports, l4), nil
}

// l4Routes lists the tcp and tls routes of vs to the Service fqdn, with the port each is for: its
// destination's, else those its matches name, else none (every port).
func (r *Reconciler) l4Routes(vs *networkingv1.VirtualService, fqdn string) []decide.L4Route {
	name := vs.Namespace + "/" + vs.Name
	var out []decide.L4Route
	add := func(kind string, dests []*apinetworking.RouteDestination, matchPorts []uint32) {
		for _, d := range dests {
			if routes.Normalize(d.GetDestination().GetHost(), vs.Namespace, r.ClusterDomain) != fqdn {
				continue
			}
			ports := matchPorts
			if p := d.GetDestination().GetPort().GetNumber(); p != 0 {
				ports = []uint32{p}
			}
			for _, p := range ports {
				out = append(out, decide.L4Route{VirtualService: name, Kind: kind, Port: p})
			}
		}
	}
	for _, t := range vs.Spec.GetTcp() {
		add("tcp", t.GetRoute(), listenPorts(t.GetMatch()))
	}
	for _, t := range vs.Spec.GetTls() {
		add("tls", t.GetRoute(), listenPorts(t.GetMatch()))
	}
	return out
}

// listenPorts is the ports a route's matches apply to, or just 0 (every port) when it has no
// match or a match without a port.
func listenPorts[M interface{ GetPort() uint32 }](matches []M) []uint32 {
	ports := make([]uint32, 0, len(matches))
	for _, m := range matches {
		ports = append(ports, m.GetPort())
	}
	if len(ports) == 0 || slices.Contains(ports, 0) {
		return []uint32{0}
	}
	return ports
}
