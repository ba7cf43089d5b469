package authz

import (
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// Selects reports whether p applies to a workload in namespace ns whose pods carry labels.
// rootNS is Istio's root namespace (policies there without selector apply mesh-wide; with a selector, to matching workloads in every namespace).
// complete=false means labels are only the labels the pods are known to have (a Service selector); a selector key absent from labels is then assumed to match (fail closed).
// A policy with targetRef/targetRefs does not apply to sidecars: false.
//
// Assuming an unsure policy applies fails closed for CUSTOM and DENY, but not for ALLOW, where
// one more policy can let more in: use Applies and EvaluateUnsure to keep the two apart.
func Selects(p *securityv1.AuthorizationPolicy, rootNS, ns string, labels map[string]string, complete bool) bool {
	applies, _ := Applies(p, rootNS, ns, labels, complete)
	return applies
}

// Applies is Selects that also reports whether the answer is sure: sure is false when p
// applies only because a selector key absent from incomplete labels was assumed to match.
//
// As Istio (model/authorization.go, ListAuthorizationPolicies; model/policyattachment.go,
// ShouldAttachPolicy): policies in the root namespace and in ns are looked at; a selector's
// labels must be a subset of the pods' labels; no selector selects every workload. A workload
// labelled gateway.networking.k8s.io/gateway-name is selected by targetRefs instead, which is
// not handled here: elasti's targets are application workloads with sidecars.
func Applies(p *securityv1.AuthorizationPolicy, rootNS, ns string, labels map[string]string, complete bool) (applies, sure bool) {
	if p == nil || p.Spec.GetTargetRef() != nil || len(p.Spec.GetTargetRefs()) > 0 {
		return false, false
	}
	if p.Namespace != ns && (rootNS == "" || p.Namespace != rootNS) {
		return false, false
	}
	sure = true
	for k, want := range p.Spec.GetSelector().GetMatchLabels() {
		got, ok := labels[k]
		switch {
		case ok && got == want:
		case !ok && !complete:
			sure = false
		default:
			return false, false
		}
	}
	return true, sure
}
