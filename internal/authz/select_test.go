package authz

import (
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

func TestApplies(t *testing.T) {
	pods := map[string]string{"app": "cart", "version": "v1"}
	tests := map[string]struct {
		policy   string
		ns       string
		labels   map[string]string
		complete bool
		applies  bool
		sure     bool
	}{
		"no selector, same namespace":     {`{metadata: {namespace: shop}}`, "shop", pods, true, true, true},
		"no selector, other namespace":    {`{metadata: {namespace: bank}}`, "shop", pods, true, false, false},
		"no selector, root namespace":     {`{metadata: {namespace: istio-system}}`, "shop", pods, true, true, true},
		"root namespace with a selector":  {`{metadata: {namespace: istio-system}, spec: {selector: {matchLabels: {app: cart}}}}`, "shop", pods, true, true, true},
		"root namespace, selector missed": {`{metadata: {namespace: istio-system}, spec: {selector: {matchLabels: {app: till}}}}`, "shop", pods, true, false, false},
		"selector matches":                {`{spec: {selector: {matchLabels: {app: cart, version: v1}}}}`, "shop", pods, true, true, true},
		"empty selector selects all":      {`{spec: {selector: {}}}`, "shop", pods, true, true, true},
		"selector value differs":          {`{spec: {selector: {matchLabels: {version: v2}}}}`, "shop", pods, true, false, false},
		"selector key absent, complete labels": {
			`{spec: {selector: {matchLabels: {tier: web}}}}`, "shop", pods, true, false, false},
		"selector key absent, incomplete labels: applies, unsure": {
			`{spec: {selector: {matchLabels: {app: cart, tier: web}}}}`, "shop", pods, false, true, false},
		"selector value differs, incomplete labels": {
			`{spec: {selector: {matchLabels: {app: till, tier: web}}}}`, "shop", pods, false, false, false},
		"targetRefs do not apply to sidecars": {
			`{spec: {targetRefs: [{kind: Service, group: "", name: cart}]}}`, "shop", pods, true, false, false},
		"legacy targetRef does not apply to sidecars": {
			`{spec: {targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}}}`, "shop", pods, true, false, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := ap(t, tt.policy)
			applies, sure := Applies(p, "istio-system", tt.ns, tt.labels, tt.complete)
			if applies != tt.applies || sure != tt.sure {
				t.Errorf("Applies = %v, sure %v; want %v, sure %v", applies, sure, tt.applies, tt.sure)
			}
			if got := Selects(p, "istio-system", tt.ns, tt.labels, tt.complete); got != tt.applies {
				t.Errorf("Selects = %v, want %v", got, tt.applies)
			}
		})
	}
}

func TestSelectsWithoutRootNamespace(t *testing.T) {
	if Selects(&securityv1.AuthorizationPolicy{}, "", "shop", nil, true) {
		t.Error("an empty root namespace selected a policy from another namespace")
	}
	if Selects(nil, "istio-system", "shop", nil, true) {
		t.Error("a nil policy applies")
	}
}
