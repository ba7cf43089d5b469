package reconciler

import (
	"context"
	"slices"
	"strings"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/routes"
	"github.com/elasti-dev/elasti/internal/names"
)

// Field indexes on ElastiServices, so that a watch event maps to its ElastiServices without a
// scan.
const (
	// indexService is spec.service, the public Service's name.
	indexService = "elasti.dev/service"
	// indexPrivateService holds the names of the Services elasti makes for an ElastiService:
	// the private Service and the proxy Service.
	indexPrivateService = "elasti.dev/private-service"
	// indexFQDN is the public Service's cluster-local FQDN.
	indexFQDN = "elasti.dev/fqdn"
	// indexRoutesTo, on VirtualServices, holds the FQDN of every HTTP, TCP and TLS destination
	// and "elastiservice:<ns>/<name>" for every destination rewritten for an ElastiService; on
	// DestinationRules, the FQDN of the host, or wildcardHost for any wildcard host.
	indexRoutesTo = "elasti.dev/routes-to"
	// wildcardHost is the indexRoutesTo value of every DestinationRule with a wildcard host: few
	// exist, and which Services one matches is a suffix test, not an index lookup.
	wildcardHost = "*"
)

// destinationRuleHost is the indexRoutesTo value of a DestinationRule.
func (r *Reconciler) destinationRuleHost(dr *networkingv1.DestinationRule) string {
	h := routes.Normalize(dr.Spec.GetHost(), dr.Namespace, r.ClusterDomain)
	if strings.HasPrefix(h, "*") {
		return wildcardHost
	}
	return h
}

// rewrittenFor is the indexRoutesTo value of destinations rewritten for an ElastiService.
func rewrittenFor(key string) string { return "elastiservice:" + key }

func (r *Reconciler) setupIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	one := func(f func(*v1alpha1.ElastiService) string) client.IndexerFunc {
		return func(o client.Object) []string { return []string{f(o.(*v1alpha1.ElastiService))} }
	}
	for name, fn := range map[string]client.IndexerFunc{
		indexService: one(func(es *v1alpha1.ElastiService) string { return es.Spec.Service }),
		indexPrivateService: func(o client.Object) []string {
			svc := o.(*v1alpha1.ElastiService).Spec.Service
			return []string{names.PrivateService(svc), names.ProxyService(svc)}
		},
		indexFQDN: one(func(es *v1alpha1.ElastiService) string {
			return names.ServiceFQDN(es.Spec.Service, es.Namespace, r.ClusterDomain)
		}),
	} {
		if err := indexer.IndexField(ctx, &v1alpha1.ElastiService{}, name, fn); err != nil {
			return err
		}
	}
	if !r.Istio {
		return nil
	}
	if err := indexer.IndexField(ctx, &networkingv1.VirtualService{}, indexRoutesTo, func(o client.Object) []string {
		return r.virtualServiceTargets(o.(*networkingv1.VirtualService))
	}); err != nil {
		return err
	}
	return indexer.IndexField(ctx, &networkingv1.DestinationRule{}, indexRoutesTo, func(o client.Object) []string {
		return []string{r.destinationRuleHost(o.(*networkingv1.DestinationRule))}
	})
}

// virtualServiceTargets lists the indexRoutesTo values of a VirtualService.
func (r *Reconciler) virtualServiceTargets(vs *networkingv1.VirtualService) []string {
	var out []string
	for _, route := range vs.Spec.GetHttp() {
		for _, d := range route.GetRoute() {
			out = append(out, routes.Normalize(d.GetDestination().GetHost(), vs.Namespace, r.ClusterDomain))
			if key := routes.ElastiServiceKey(d.GetHeaders().GetRequest().GetSet()); key != "" {
				out = append(out, rewrittenFor(key))
			}
		}
	}
	// A tcp or tls route keeps its Service's target awake (nonHTTPPorts).
	for _, route := range vs.Spec.GetTcp() {
		for _, d := range route.GetRoute() {
			out = append(out, routes.Normalize(d.GetDestination().GetHost(), vs.Namespace, r.ClusterDomain))
		}
	}
	for _, route := range vs.Spec.GetTls() {
		for _, d := range route.GetRoute() {
			out = append(out, routes.Normalize(d.GetDestination().GetHost(), vs.Namespace, r.ClusterDomain))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (r *Reconciler) byIndex(ctx context.Context, index, value string, opts ...client.ListOption) []reconcile.Request {
	var list v1alpha1.ElastiServiceList
	if err := r.List(ctx, &list, append(opts, client.MatchingFields{index: value})...); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, es := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: es.Namespace, Name: es.Name}})
	}
	return reqs
}

// mapService maps a public or private Service to its ElastiServices.
func (r *Reconciler) mapService(ctx context.Context, o client.Object) []reconcile.Request {
	return r.byServiceName(ctx, o.GetNamespace(), o.GetName())
}

func (r *Reconciler) byServiceName(ctx context.Context, namespace, name string) []reconcile.Request {
	ns := client.InNamespace(namespace)
	return append(r.byIndex(ctx, indexService, name, ns), r.byIndex(ctx, indexPrivateService, name, ns)...)
}

// mapEndpointSlice maps the resolver's slices to every ElastiService (resolver readiness gates
// Proxy mode for all of them), and a private or resolver slice to its ElastiService.
func (r *Reconciler) mapEndpointSlice(ctx context.Context, o client.Object) []reconcile.Request {
	svc := o.GetLabels()[discoveryv1.LabelServiceName]
	if o.GetNamespace() == r.ResolverNamespace && svc == r.ResolverService {
		var list v1alpha1.ElastiServiceList
		if err := r.List(ctx, &list); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, es := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: es.Namespace, Name: es.Name}})
		}
		return reqs
	}
	return r.byServiceName(ctx, o.GetNamespace(), svc)
}

// mapVirtualService maps a VirtualService to the ElastiServices whose Service it routes to, in
// either mode.
func (r *Reconciler) mapVirtualService(ctx context.Context, o client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	for _, t := range r.virtualServiceTargets(o.(*networkingv1.VirtualService)) {
		if key, ok := strings.CutPrefix(t, rewrittenFor("")); ok {
			if ns, name, ok := strings.Cut(key, "/"); ok {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
			}
			continue
		}
		reqs = append(reqs, r.byIndex(ctx, indexFQDN, t)...)
	}
	return reqs
}

// mapDestinationRule maps a DestinationRule to the ElastiServices of its host, or of every host
// its wildcard matches.
func (r *Reconciler) mapDestinationRule(ctx context.Context, o client.Object) []reconcile.Request {
	dr := o.(*networkingv1.DestinationRule)
	if h := r.destinationRuleHost(dr); h != wildcardHost {
		return r.byIndex(ctx, indexFQDN, h)
	}
	var list v1alpha1.ElastiServiceList
	if err := r.List(ctx, &list); err != nil {
		return nil
	}
	pattern := routes.Normalize(dr.Spec.GetHost(), dr.Namespace, r.ClusterDomain)
	var reqs []reconcile.Request
	for _, es := range list.Items {
		if routes.HostMatches(pattern, names.ServiceFQDN(es.Spec.Service, es.Namespace, r.ClusterDomain)) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: es.Namespace, Name: es.Name}})
		}
	}
	return reqs
}
