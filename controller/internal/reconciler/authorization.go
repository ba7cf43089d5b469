package reconciler

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/resources"
	"github.com/elasti-dev/elasti/internal/authz"
	"github.com/elasti-dev/elasti/internal/names"
)

// +kubebuilder:rbac:groups=security.istio.io,resources=authorizationpolicies,verbs=get;list;watch;create;update;patch;delete

// authorization is what the AuthorizationPolicies of a target's pods ask of elasti.
type authorization struct {
	// applies lists the policies ("namespace/name") that apply to the target's pods, sorted;
	// the resolver checks callers against them.
	applies []string
	// allow is true when an ALLOW policy applies: without elasti's own, the resolver's
	// replays would match none and be denied.
	allow bool
	// unsupported says why the resolver cannot take the target's traffic without widening or
	// narrowing who reaches it; empty when it can.
	unsupported string
}

// authorizationFor reads the AuthorizationPolicies that Istio applies to the pods public selects:
// those of the target's namespace and of the root namespace. Of the pods' labels the Service's
// selector is known; a policy whose selector asks for another label is looked up in the target's
// pod template (Deployments, StatefulSets and ReplicaSets). A DENY policy that may apply is taken
// to apply, which refuses too much rather than too little; an ALLOW policy that may apply keeps
// the target awake, since enforcing it could refuse callers the pods let in, and not enforcing it
// could let in callers they refuse.
func (r *Reconciler) authorizationFor(ctx context.Context, es *v1alpha1.ElastiService, public *corev1.Service) (authorization, error) {
	var a authorization
	if !r.AuthorizationPolicies {
		return a, nil
	}
	root := r.rootNamespace()
	var candidates []*securityv1.AuthorizationPolicy
	for _, ns := range slices.Compact([]string{es.Namespace, root}) {
		var list securityv1.AuthorizationPolicyList
		if err := r.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return a, fmt.Errorf("listing AuthorizationPolicies in %s: %w", ns, err)
		}
		for _, p := range list.Items {
			if ns == es.Namespace && isElastis(p) {
				continue
			}
			candidates = append(candidates, p)
		}
	}
	labels, complete, looked := public.Spec.Selector, false, false
	unsure := map[*securityv1.AuthorizationPolicy]bool{}
	var applying []*securityv1.AuthorizationPolicy
	for _, p := range candidates {
		applies, sure := authz.Applies(p, root, es.Namespace, labels, complete)
		if applies && !sure && !looked {
			// One read of the template per pass, whatever it finds.
			looked = true
			if tl, ok := r.templateLabels(ctx, es); ok {
				labels, complete = tl, true
				applies, sure = authz.Applies(p, root, es.Namespace, labels, complete)
			}
		}
		if applies {
			applying = append(applying, p)
			unsure[p] = !sure
		}
	}
	slices.SortFunc(applying, func(x, y *securityv1.AuthorizationPolicy) int {
		return strings.Compare(x.Namespace+"/"+x.Name, y.Namespace+"/"+y.Name)
	})
	for _, p := range applying {
		key := p.Namespace + "/" + p.Name
		a.applies = append(a.applies, key)
		action := p.Spec.GetAction()
		switch {
		case a.unsupported != "":
		case authz.Unsupported(p) != "":
			a.unsupported = fmt.Sprintf("AuthorizationPolicy %s applies to the target's pods, and the resolver cannot check %s for the callers it holds",
				key, authz.Unsupported(p))
		case action == apisecurity.AuthorizationPolicy_ALLOW && unsure[p]:
			a.unsupported = fmt.Sprintf("AuthorizationPolicy %s may apply to the target's pods: its selector names labels that neither the Service's selector nor a pod template shows",
				key)
		case action == apisecurity.AuthorizationPolicy_DENY && authz.DeniesPrincipal(byIdentity(p), r.ResolverPrincipal):
			a.unsupported = fmt.Sprintf("DENY AuthorizationPolicy %s would deny the resolver's replays, which carry its identity %s",
				key, r.ResolverPrincipal)
		}
		if action == apisecurity.AuthorizationPolicy_ALLOW {
			a.allow = true
		}
	}
	if a.unsupported != "" {
		a.unsupported += "; the target is kept awake"
	}
	return a, nil
}

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;replicasets,verbs=get

// templateLabels reads the labels of the target's pod template, straight from the API server:
// the cache keeps workloads without their pod templates (scaler.KeepReplicas), and this is asked
// only for a policy whose selector the Service's selector cannot decide. ok is false for a kind
// without spec.template, or one elasti may not read.
func (r *Reconciler) templateLabels(ctx context.Context, es *v1alpha1.ElastiService) (map[string]string, bool) {
	ref := es.Spec.ScaleTargetRef
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != "apps" || r.pods == nil {
		return nil, false
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gv.WithKind(ref.Kind))
	if err := r.pods.Get(ctx, types.NamespacedName{Namespace: es.Namespace, Name: ref.Name}, u); err != nil {
		return nil, false
	}
	labels, found, err := unstructured.NestedStringMap(u.Object, "spec", "template", "metadata", "labels")
	return labels, found && err == nil
}

// ensureResolverAuthorization keeps elasti's ALLOW policy for the resolver's replays while an
// ALLOW policy applies to the target, and removes it otherwise: on pods with no ALLOW policy it
// would deny every other caller.
func (r *Reconciler) ensureResolverAuthorization(ctx context.Context, es *v1alpha1.ElastiService, obs *observed) error {
	if !r.AuthorizationPolicies {
		return nil
	}
	key := types.NamespacedName{Namespace: es.Namespace, Name: names.ResolverAuthorizationPolicy(es.Spec.Service)}
	if !obs.authorization.allow || obs.authorization.unsupported != "" || obs.public == nil {
		return r.deleteAll(ctx, &securityv1.AuthorizationPolicy{ObjectMeta: objectMeta(key)})
	}
	want, have := resources.MakeResolverAuthorizationPolicy(es, obs.public, r.ResolverPrincipal), &securityv1.AuthorizationPolicy{}
	return r.upsert(ctx, want, have, func() bool { return proto.Equal(&have.Spec, &want.Spec) }, func() {
		proto.Reset(&have.Spec)
		proto.Merge(&have.Spec, &want.Spec)
	})
}

// byIdentity is p with only the rules that tell callers apart by their identity. A rule that does
// not (a DENY on /admin for everyone) refuses a replay exactly when it refuses its caller, which the
// resolver has checked; one that does may refuse the resolver where it lets the caller in.
func byIdentity(p *securityv1.AuthorizationPolicy) *securityv1.AuthorizationPolicy {
	q := &securityv1.AuthorizationPolicy{ObjectMeta: p.ObjectMeta}
	proto.Merge(&q.Spec, &p.Spec)
	q.Spec.Rules = slices.DeleteFunc(q.Spec.Rules, func(rule *apisecurity.Rule) bool { return !namesIdentity(rule) })
	return q
}

// namesIdentity reports whether rule asks anything of the caller's identity.
func namesIdentity(rule *apisecurity.Rule) bool {
	for _, f := range rule.GetFrom() {
		s := f.GetSource()
		if len(s.GetPrincipals())+len(s.GetNotPrincipals())+len(s.GetNamespaces())+len(s.GetNotNamespaces())+
			len(s.GetServiceAccounts())+len(s.GetNotServiceAccounts()) > 0 {
			return true
		}
	}
	for _, c := range rule.GetWhen() {
		if strings.HasPrefix(c.GetKey(), "source.") {
			return true
		}
	}
	return false
}

// isElastis reports whether p is one of elasti's own ALLOW policies for the resolver.
func isElastis(p *securityv1.AuthorizationPolicy) bool {
	return p.Labels[v1alpha1.LabelManagedBy] == v1alpha1.ManagedByValue &&
		p.Labels[v1alpha1.LabelComponent] == v1alpha1.ComponentAuthorization
}

// mapAuthorizationPolicy enqueues the ElastiServices a policy may apply to: those of its
// namespace, or every one for a policy in the root namespace.
func (r *Reconciler) mapAuthorizationPolicy(ctx context.Context, o client.Object) []reconcile.Request {
	var opts []client.ListOption
	if o.GetNamespace() != r.rootNamespace() {
		opts = append(opts, client.InNamespace(o.GetNamespace()))
	}
	var list v1alpha1.ElastiServiceList
	if err := r.List(ctx, &list, opts...); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, es := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&es)})
	}
	return out
}

func (r *Reconciler) rootNamespace() string {
	if r.MeshRootNamespace == "" {
		return "istio-system"
	}
	return r.MeshRootNamespace
}
