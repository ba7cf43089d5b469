package sources_test

import (
	"maps"
	"slices"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/resolver/internal/sources"
)

// The resolver watches what the controller watches for one --watch-namespaces value
// (namespaces.Parse has the cases): "," once meant every namespace for most objects but Istio's
// root namespace alone for AuthorizationPolicies.
func TestCacheOptionsNamespaces(t *testing.T) {
	key := types.NamespacedName{Namespace: "elasti-system", Name: "elasti-route-key"}
	watched := func(list string) (all, policies []string) {
		t.Helper()
		o, err := sources.CacheOptions(list, key, "istio-system")
		if err != nil {
			t.Fatalf("CacheOptions(%q): %v", list, err)
		}
		for obj, by := range o.ByObject { // keyed by pointer: look for the kind
			if _, ok := obj.(*securityv1.AuthorizationPolicy); ok {
				policies = slices.Sorted(maps.Keys(by.Namespaces))
			}
		}
		return slices.Sorted(maps.Keys(o.DefaultNamespaces)), policies
	}
	if all, policies := watched(","); all != nil || policies != nil {
		t.Errorf(`"," watches %q, policies in %q; want every namespace for both`, all, policies)
	}
	if all, policies := watched(" a ,a,"); !slices.Equal(all, []string{"a"}) || !slices.Equal(policies, []string{"a", "istio-system"}) {
		t.Errorf(`" a ,a," watches %q, policies in %q; want [a], [a istio-system]`, all, policies)
	}
	if _, err := sources.CacheOptions("a b", key, "istio-system"); err == nil {
		t.Error(`CacheOptions("a b") took a namespace with a space in it`)
	}
}
