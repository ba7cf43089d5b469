package reconciler

import (
	"context"
	"fmt"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/decide"
	"github.com/elasti-dev/elasti/controller/internal/routes"
	"github.com/elasti-dev/elasti/controller/internal/scaler"
	"github.com/elasti-dev/elasti/controller/internal/triggers"
	"github.com/elasti-dev/elasti/internal/endpoints"
	"github.com/elasti-dev/elasti/internal/names"
)

// observed is what gather saw. Each part is set once it was read; what a failed read left
// unread stays zero, and status.go records only what was read.
type observed struct {
	public *corev1.Service
	scale  scaler.Scale
	// ready counts the target's ready endpoints as the kubelet sees them, in own. elasti's probed
	// slices are the probed Service's, so they are not counted.
	ready int32
	// own is the Service's own EndpointSlices, which Kubernetes keeps for its selector in both
	// modes; the slices elasti adds in Proxy mode are not among them.
	own []discoveryv1.EndpointSlice
	// proxyMade is when the proxy Service was created; zero when it does not exist.
	proxyMade       time.Time
	resolvers       []discoveryv1.Endpoint
	virtualServices []*networkingv1.VirtualService
	destinationRule *apinetworking.DestinationRule
	// triggers is the triggers' answer, when asked (triggersAsked).
	triggers      triggers.Result
	triggersAsked bool
	// triggerActive says a trigger was above its threshold after any other activity.
	triggerActive bool
	lastActivity  time.Time
	// nonHTTP are the Service's ports whose traffic the resolver could not hold.
	nonHTTP []decide.NonHTTPPort
	// authorization is what the target's AuthorizationPolicies ask of elasti.
	authorization authorization
	// What was read: gather stops at the first failure.
	authorizationRead, scaleRead, endpointsRead, resolversRead bool
	// scaleErr is why /scale could not be read.
	scaleErr error
	// reason and terminal describe a gather error: a CamelCase reason, and whether only a
	// change to some object (which a watch will report) can fix it.
	reason   string
	terminal bool
}

// unsupported is why the resolver may not take the target's traffic (decide.Input.Unsupported).
func (o *observed) unsupported() string {
	switch {
	case len(o.nonHTTP) > 0:
		return v1alpha1.ReasonUnsupportedPort
	case o.authorization.unsupported != "":
		return v1alpha1.ReasonUnsupportedAuthorization
	}
	return ""
}

// gather reads everything the decision needs. It writes nothing, the status included: status.go
// records what it saw.
func (r *Reconciler) gather(ctx context.Context, es *v1alpha1.ElastiService, now time.Time) (*observed, error) {
	obs := &observed{}
	var err error
	if r.Istio {
		// Needed even when the rest fails, so that a failure can still restore the routes.
		if obs.virtualServices, err = r.virtualServicesFor(ctx, es); err != nil {
			obs.reason = v1alpha1.ReasonListFailed
			return obs, err
		}
	}

	obs.public = &corev1.Service{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: es.Namespace, Name: es.Spec.Service}, obs.public); err != nil {
		obs.reason, obs.terminal = v1alpha1.ReasonServiceNotFound, apierrors.IsNotFound(err)
		return obs, fmt.Errorf("reading Service %s: %w", es.Spec.Service, err)
	}
	if len(obs.public.Spec.Selector) == 0 {
		obs.reason, obs.terminal = v1alpha1.ReasonServiceHasNoSelector, true
		return obs, fmt.Errorf("the Service %s has no selector, so elasti cannot find the target's pods", es.Spec.Service)
	}
	if obs.nonHTTP, err = r.nonHTTPPorts(ctx, es, obs.public); err != nil {
		obs.reason = v1alpha1.ReasonListFailed
		return obs, err
	}
	if obs.authorization, err = r.authorizationFor(ctx, es, obs.public); err != nil {
		obs.reason = v1alpha1.ReasonListFailed
		return obs, err
	}
	obs.authorizationRead = true

	if obs.scale, err = r.Scaler.Get(ctx, es.Namespace, es.Spec.ScaleTargetRef); err != nil {
		obs.reason, obs.terminal = v1alpha1.ReasonTargetNotFound, apierrors.IsNotFound(err) || meta.IsNoMatchError(err)
		obs.scaleErr = err
		return obs, err
	}
	obs.scaleRead = true

	// The Service's own slices rather than the private Service's, which exists only once Proxy
	// mode has been wanted.
	all, err := r.slicesOf(ctx, es.Namespace, es.Spec.Service)
	if err != nil {
		obs.reason = v1alpha1.ReasonListFailed
		return obs, err
	}
	for _, s := range all {
		if notElastis(&s) {
			obs.own = append(obs.own, s)
		}
	}
	obs.ready = int32(len(readyIn(obs.own, nil)))
	obs.endpointsRead = true
	if obs.resolvers, err = r.resolverEndpoints(ctx); err != nil {
		obs.reason = v1alpha1.ReasonListFailed
		return obs, err
	}
	obs.resolversRead = true

	if r.Istio {
		if obs.destinationRule, err = r.destinationRuleFor(ctx, es); err != nil {
			obs.reason = v1alpha1.ReasonListFailed
			return obs, err
		}
		proxy := &corev1.Service{}
		switch err := r.Get(ctx, types.NamespacedName{Namespace: es.Namespace, Name: names.ProxyService(es.Spec.Service)}, proxy); {
		case err == nil:
			obs.proxyMade = proxy.CreationTimestamp.Time
		case !apierrors.IsNotFound(err):
			obs.reason = v1alpha1.ReasonListFailed
			return obs, fmt.Errorf("reading Service %s: %w", names.ProxyService(es.Spec.Service), err)
		}
	}

	obs.lastActivity = latest(r.Activity.Last(types.NamespacedName{Namespace: es.Namespace, Name: es.Name}),
		timeOf(es.Status.LastActivityTime), timeOf(es.Status.LastScaledUpTime), es.CreationTimestamp.Time)
	cooldown := time.Duration(es.Spec.CooldownPeriod) * time.Second
	if decide.AskTriggers(obs.scale.Spec, obs.lastActivity, cooldown, now) {
		obs.triggers, obs.triggersAsked = r.Triggers(ctx, es, cooldown), true
		if obs.triggers.Err != nil {
			// The detail goes to the controller's log only: the condition is the tenant's to
			// read, and must not tell it what answers at an address it chose.
			log.FromContext(ctx).Error(obs.triggers.Err, "reading the triggers")
		} else if obs.triggers.LastActive.After(obs.lastActivity) {
			obs.lastActivity, obs.triggerActive = obs.triggers.LastActive, true
		}
	}
	return obs, nil
}

// resolverEndpoints lists the resolver's ready endpoints with their Pod references, which the
// slices elasti writes keep for istiod (resources.slicesFor).
func (r *Reconciler) resolverEndpoints(ctx context.Context) ([]discoveryv1.Endpoint, error) {
	return r.endpointsOf(ctx, r.ResolverNamespace, r.ResolverService, nil)
}

// notElastis keeps the EndpointSlices that elasti did not write: a Service's own.
func notElastis(s *discoveryv1.EndpointSlice) bool {
	return s.Labels[discoveryv1.LabelManagedBy] != v1alpha1.EndpointSliceManager
}

// readyAddresses lists the ready, non-terminating addresses of a Service's EndpointSlices, of
// the slices that keep says to keep (all when nil).
func (r *Reconciler) readyAddresses(ctx context.Context, namespace, service string, keep func(*discoveryv1.EndpointSlice) bool) ([]string, error) {
	eps, err := r.endpointsOf(ctx, namespace, service, keep)
	var addrs []string
	for _, ep := range eps {
		addrs = append(addrs, ep.Addresses...)
	}
	return addrs, err
}

// endpointsOf is readyAddresses with each endpoint whole.
func (r *Reconciler) endpointsOf(ctx context.Context, namespace, service string, keep func(*discoveryv1.EndpointSlice) bool) ([]discoveryv1.Endpoint, error) {
	slices, err := r.slicesOf(ctx, namespace, service)
	return readyIn(slices, keep), err
}

// slicesOf lists a Service's EndpointSlices.
func (r *Reconciler) slicesOf(ctx context.Context, namespace, service string) ([]discoveryv1.EndpointSlice, error) {
	var slices discoveryv1.EndpointSliceList
	if err := r.List(ctx, &slices, client.InNamespace(namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return nil, fmt.Errorf("listing EndpointSlices of %s/%s: %w", namespace, service, err)
	}
	return slices.Items, nil
}

// readyIn lists the ready, non-terminating endpoints of the slices that keep says to keep (all
// when nil).
func readyIn(slices []discoveryv1.EndpointSlice, keep func(*discoveryv1.EndpointSlice) bool) []discoveryv1.Endpoint {
	var eps []discoveryv1.Endpoint
	for i, s := range slices {
		if keep != nil && !keep(&slices[i]) {
			continue
		}
		for _, ep := range s.Endpoints {
			if endpoints.Ready(ep) {
				eps = append(eps, ep)
			}
		}
	}
	return eps
}

func (r *Reconciler) virtualServicesFor(ctx context.Context, es *v1alpha1.ElastiService) ([]*networkingv1.VirtualService, error) {
	t := r.routeParams(es)
	seen := map[types.NamespacedName]bool{}
	var out []*networkingv1.VirtualService
	for _, value := range []string{t.FQDN(), rewrittenFor(es.Key())} {
		var list networkingv1.VirtualServiceList
		if err := r.List(ctx, &list, client.MatchingFields{indexRoutesTo: value}); err != nil {
			return nil, fmt.Errorf("listing VirtualServices: %w", err)
		}
		for _, vs := range list.Items {
			key := client.ObjectKeyFromObject(vs)
			if seen[key] || vs.Labels[v1alpha1.LabelComponent] != "" || !routes.RoutesTo(vs, t) {
				continue // elasti's own replay routes, or a delegate-only match
			}
			seen[key] = true
			out = append(out, vs)
		}
	}
	return out, nil
}

// destinationRuleFor returns the DestinationRules of the public host merged as istiod merges
// them for a sidecar in the Service's namespace. The resolver sends the replay, but the subsets
// and traffic policy that a route means are its caller's: the Service's namespace is, but for its
// rules exported nowhere else, the view of every caller without a rule of its own for the host
// (istiod falls back to the Service's namespace's exported rules, then the root namespace's), and
// the one the Service's owner writes. A caller whose own namespace has a rule for the host is
// replayed by the Service's view: a subset defined only there goes to any pod.
func (r *Reconciler) destinationRuleFor(ctx context.Context, es *v1alpha1.ElastiService) (*apinetworking.DestinationRule, error) {
	fqdn := names.ServiceFQDN(es.Spec.Service, es.Namespace, r.ClusterDomain)
	var drs []*networkingv1.DestinationRule
	for _, value := range []string{fqdn, wildcardHost} {
		var list networkingv1.DestinationRuleList
		if err := r.List(ctx, &list, client.MatchingFields{indexRoutesTo: value}); err != nil {
			return nil, fmt.Errorf("listing DestinationRules: %w", err)
		}
		for _, dr := range list.Items {
			if dr.Labels[v1alpha1.LabelComponent] == "" {
				drs = append(drs, dr)
			}
		}
	}
	return routes.EffectiveDestinationRule(drs, fqdn, routes.DestinationRuleScope{
		Caller: es.Namespace, Service: es.Namespace, Root: r.rootNamespace(), Domain: r.ClusterDomain,
	}), nil
}
