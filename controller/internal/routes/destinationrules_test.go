package routes

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	apinetworking "istio.io/api/networking/v1alpha3"
	typev1beta1 "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// rule is a DestinationRule created `created` seconds after a fixed time, with a subset per
// name and, when policy is not empty, a traffic policy that the tests recognise by its SNI.
func rule(ns, name, host string, created int, policy string, subsets ...string) *networkingv1.DestinationRule {
	dr := &networkingv1.DestinationRule{}
	dr.Namespace, dr.Name = ns, name
	dr.CreationTimestamp = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, created, 0, time.UTC))
	dr.Spec.Host = host
	for _, s := range subsets {
		dr.Spec.Subsets = append(dr.Spec.Subsets, &apinetworking.Subset{Name: s, Labels: map[string]string{"version": s + "-" + name}})
	}
	if policy != "" {
		dr.Spec.TrafficPolicy = &apinetworking.TrafficPolicy{Tls: &apinetworking.ClientTLSSettings{Sni: policy}}
	}
	return dr
}

func exported(dr *networkingv1.DestinationRule, to ...string) *networkingv1.DestinationRule {
	dr.Spec.ExportTo = to
	return dr
}

// describe is "none", or the subsets (with the rule each came from) and the policy's name.
func describe(spec *apinetworking.DestinationRule) string {
	if spec == nil {
		return "none"
	}
	var subsets []string
	for _, s := range spec.GetSubsets() {
		subsets = append(subsets, s.GetLabels()["version"])
	}
	return strings.Join(subsets, ",") + " policy=" + spec.GetTrafficPolicy().GetTls().GetSni()
}

func TestEffectiveDestinationRule(t *testing.T) {
	const fqdn = "target.shop.svc.cluster.local"
	inShop := DestinationRuleScope{Caller: "shop", Service: "shop", Root: "istio-system", Domain: "cluster.local"}
	inFrontend := inShop
	inFrontend.Caller = "frontend"
	tests := map[string]struct {
		drs   []*networkingv1.DestinationRule
		scope DestinationRuleScope
		want  string
	}{
		"none": {nil, inShop, "none"},
		"short host in the Service's namespace": {
			[]*networkingv1.DestinationRule{rule("shop", "shop", "target", 0, "a", "v1")}, inShop, "v1-shop policy=a"},
		"dotted short host is literal": {
			[]*networkingv1.DestinationRule{rule("shop", "shop", "target.shop", 0, "a", "v1")}, inShop, "none"},
		"short host in another namespace names another Service": {
			[]*networkingv1.DestinationRule{rule("istio-system", "shop", "target", 0, "a", "v1")}, inShop, "none"},
		"two rules for one host: subsets joined, the older policy wins": {
			[]*networkingv1.DestinationRule{
				rule("shop", "shop-canary", fqdn, 5, "b", "v2"),
				rule("shop", "shop", "target", 1, "a", "v1"),
			}, inShop, "v1-shop,v2-shop-canary policy=a"},
		"creation time, not the name, orders the merge": {
			[]*networkingv1.DestinationRule{
				rule("shop", "shop", fqdn, 5, "a", "v1"),
				rule("shop", "shop-canary", fqdn, 1, "b", "v2"),
			}, inShop, "v2-shop-canary,v1-shop policy=b"},
		"same creation time: by name": {
			[]*networkingv1.DestinationRule{
				rule("shop", "zz", fqdn, 1, "b", "v2"),
				rule("shop", "aa", fqdn, 1, "", "v1"),
			}, inShop, "v1-aa,v2-zz policy=b"},
		"a duplicate subset keeps its first definition": {
			[]*networkingv1.DestinationRule{
				rule("shop", "shop", fqdn, 1, "", "v1"),
				rule("shop", "shop-canary", fqdn, 2, "", "v1", "v2"),
			}, inShop, "v1-shop,v2-shop-canary policy="},
		"wildcard when no exact host": {
			[]*networkingv1.DestinationRule{rule("shop", "all", "*.shop.svc.cluster.local", 0, "w", "v1")}, inShop, "v1-all policy=w"},
		"exact host beats a wildcard": {
			[]*networkingv1.DestinationRule{
				rule("shop", "all", "*.shop.svc.cluster.local", 0, "w", "v1"),
				rule("shop", "shop", fqdn, 1, "a", "v2"),
			}, inShop, "v2-shop policy=a"},
		"longer wildcard beats a shorter one": {
			[]*networkingv1.DestinationRule{
				rule("shop", "star", "*", 0, "s", "v0"),
				rule("shop", "all", "*.shop.svc.cluster.local", 1, "w", "v1"),
				rule("shop", "local", "*.cluster.local", 2, "l", "v2"),
			}, inShop, "v1-all policy=w"},
		"a wildcard for other hosts does not apply": {
			[]*networkingv1.DestinationRule{rule("shop", "other", "*.other.svc.cluster.local", 0, "w", "v1")}, inShop, "none"},
		"a rule with a workloadSelector is left out": {
			[]*networkingv1.DestinationRule{func() *networkingv1.DestinationRule {
				dr := rule("shop", "selected", fqdn, 0, "x", "v9")
				dr.Spec.WorkloadSelector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "a"}}
				return dr
			}(), rule("shop", "shop", fqdn, 1, "a", "v1")}, inShop, "v1-shop policy=a"},
		"a rule private to the Service's namespace applies to callers there": {
			[]*networkingv1.DestinationRule{exported(rule("shop", "shop", fqdn, 0, "a", "v1"), ".")}, inShop, "v1-shop policy=a"},
		"a rule exported only elsewhere does not apply in its namespace": {
			[]*networkingv1.DestinationRule{exported(rule("shop", "shop", fqdn, 0, "a", "v1"), "frontend")}, inShop, "none"},
		"rules with unrelated exportTo do not merge: the later stands alone": {
			[]*networkingv1.DestinationRule{
				rule("shop", "shop", fqdn, 0, "a", "v1"),
				exported(rule("shop", "shop-canary", fqdn, 1, "b", "v2"), "."),
			}, inShop, "v2-shop-canary policy=b"},
		"a later rule exported more widely merges into the earlier": {
			[]*networkingv1.DestinationRule{
				exported(rule("shop", "shop", fqdn, 0, "a", "v1"), "."),
				exported(rule("shop", "shop-canary", fqdn, 1, "b", "v2"), ".", "frontend"),
			}, inShop, "v1-shop,v2-shop-canary policy=a"},
		"the caller's namespace first, even its wildcard over an exact host elsewhere": {
			[]*networkingv1.DestinationRule{
				rule("shop", "shop", fqdn, 0, "a", "v1"),
				rule("frontend", "all", "*.shop.svc.cluster.local", 1, "f", "v2"),
			}, inFrontend, "v2-all policy=f"},
		"then the Service's namespace, for rules exported to the caller": {
			[]*networkingv1.DestinationRule{
				rule("shop", "shop", fqdn, 0, "a", "v1"),
				rule("istio-system", "mesh", "*", 1, "r", "v0"),
			}, inFrontend, "v1-shop policy=a"},
		"a rule private to the Service's namespace does not apply to callers elsewhere": {
			[]*networkingv1.DestinationRule{exported(rule("shop", "shop", fqdn, 0, "a", "v1"), ".")}, inFrontend, "none"},
		"an exact host hidden from the caller hides the wildcard beside it": {
			[]*networkingv1.DestinationRule{
				exported(rule("shop", "shop", fqdn, 0, "a", "v1"), ".", "other"),
				rule("shop", "all", "*.shop.svc.cluster.local", 1, "w", "v2"),
			}, inFrontend, "none"},
		"then the root namespace": {
			[]*networkingv1.DestinationRule{rule("istio-system", "mesh", "*.svc.cluster.local", 0, "r", "v0")}, inShop, "v0-mesh policy=r"},
		"a root rule private to the root namespace applies there only": {
			[]*networkingv1.DestinationRule{exported(rule("istio-system", "mesh", "*", 0, "r", "v0"), ".")}, inShop, "none"},
		"other namespaces never count": {
			[]*networkingv1.DestinationRule{rule("elsewhere", "shop", fqdn, 0, "a", "v1")}, inShop, "none"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var before []*networkingv1.DestinationRule
			for _, dr := range tc.drs {
				before = append(before, dr.DeepCopy())
			}
			if got := describe(EffectiveDestinationRule(tc.drs, fqdn, tc.scope)); got != tc.want {
				t.Errorf("EffectiveDestinationRule() = %q, want %q", got, tc.want)
			}
			if d := cmp.Diff(before, tc.drs, protocmp.Transform()); d != "" {
				t.Errorf("EffectiveDestinationRule changed its input (-before +after):\n%s", d)
			}
		})
	}
}

func TestHostMatches(t *testing.T) {
	tests := map[string]struct {
		pattern string
		want    bool
	}{
		"same host":             {"target.shop.svc.cluster.local", true},
		"everything":            {"*", true},
		"namespace wildcard":    {"*.shop.svc.cluster.local", true},
		"domain wildcard":       {"*.cluster.local", true},
		"other namespace":       {"*.other.svc.cluster.local", false},
		"other host":            {"other.shop.svc.cluster.local", false},
		"a longer wildcard":     {"*.target.shop.svc.cluster.local", false},
		"prefix wildcard label": {"*get.shop.svc.cluster.local", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := HostMatches(tc.pattern, "target.shop.svc.cluster.local"); got != tc.want {
				t.Errorf("HostMatches(%q) = %v, want %v", tc.pattern, got, tc.want)
			}
		})
	}
}
