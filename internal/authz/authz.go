package authz

import (
	"fmt"
	"net/http"
	"strconv"

	"istio.io/api/annotation"
	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// Request is what the resolver knows about a caller's request.
type Request struct {
	Principal string // verified peer principal "td/ns/<ns>/sa/<sa>", "" if the caller has none (plain text, or identity not known)
	Host      string // the request's Host/authority as received
	Method    string
	Path      string // as on the wire, without the query
	Port      int32  // the target pod's (container) port the request is for; 0 if unknown
	Headers   http.Header
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Allowed bool
	Policy  string // "namespace/name" of the policy that decided; "" when no policy applied (allowed)
	Reason  string // short human text, e.g. `denied by DENY policy shop/deny-admin`, `no ALLOW policy matched`
}

// Evaluate decides r against the policies that apply to the target's workload, in Istio's order:
// CUSTOM (cannot be consulted by the resolver: denies), then DENY (any match denies), then ALLOW
// (if any ALLOW policy applies, one must match; else allowed). AUDIT is ignored.
//
// A CUSTOM policy denies only when its rules match, as its provider is asked only then. Policies
// annotated istio.io/dry-run are not enforced by Istio and are skipped, except CUSTOM ones,
// which Istio still sends to their provider.
func Evaluate(policies []*securityv1.AuthorizationPolicy, r Request) Decision {
	return EvaluateUnsure(policies, nil, r)
}

// EvaluateUnsure is Evaluate when the policies in unsure may or may not apply (Applies said
// sure=false: a selector key the caller did not know). Counting such a policy in is safe for
// CUSTOM and DENY, but an ALLOW policy that may not apply must not let a request in: r is
// allowed by a sure ALLOW policy that matches, or, when no sure ALLOW policy applies, only if
// every unsure ALLOW policy matches.
func EvaluateUnsure(sure, unsure []*securityv1.AuthorizationPolicy, r Request) Decision {
	for _, action := range []securityv1beta1.AuthorizationPolicy_Action{
		securityv1beta1.AuthorizationPolicy_CUSTOM, securityv1beta1.AuthorizationPolicy_DENY,
	} {
		for _, p := range concat(sure, unsure) {
			if !enforced(p, action) {
				continue
			}
			switch matches(p, r) {
			case yes:
				return denied(p, "")
			case maybe:
				return denied(p, ", on a field the resolver cannot check")
			}
		}
	}

	allow := securityv1beta1.AuthorizationPolicy_ALLOW
	var undecided *securityv1.AuthorizationPolicy
	sureAllow := false
	for _, p := range sure {
		if !enforced(p, allow) {
			continue
		}
		sureAllow = true
		switch matches(p, r) {
		case yes:
			return Decision{Allowed: true, Policy: name(p), Reason: "allowed by ALLOW policy " + name(p)}
		case maybe:
			if undecided == nil {
				undecided = p
			}
		}
	}
	if sureAllow {
		reason := "no ALLOW policy matched"
		if undecided != nil {
			reason += fmt.Sprintf(" (%s depends on a field the resolver cannot check)", name(undecided))
		}
		return Decision{Reason: reason}
	}

	var by *securityv1.AuthorizationPolicy
	for _, p := range unsure {
		if !enforced(p, allow) {
			continue
		}
		if matches(p, r) != yes {
			return Decision{Policy: name(p), Reason: "not matched by ALLOW policy " + name(p) + ", which may apply"}
		}
		if by == nil {
			by = p
		}
	}
	if by != nil {
		return Decision{Allowed: true, Policy: name(by), Reason: "allowed by ALLOW policy " + name(by)}
	}
	return Decision{Allowed: true, Reason: "no ALLOW policy applies"}
}

func denied(p *securityv1.AuthorizationPolicy, detail string) Decision {
	reason := "denied by DENY policy " + name(p) + detail
	if p.Spec.GetAction() == securityv1beta1.AuthorizationPolicy_CUSTOM {
		reason = "denied by CUSTOM policy " + name(p) + ": the resolver cannot consult its provider"
	}
	return Decision{Policy: name(p), Reason: reason}
}

// matches evaluates p's rules against r: DENY and CUSTOM widen, ALLOW narrows (see evaluator).
func matches(p *securityv1.AuthorizationPolicy, r Request) tri {
	widen := p.Spec.GetAction() != securityv1beta1.AuthorizationPolicy_ALLOW
	return newEvaluator(p.Namespace, r, widen, false).policy(&p.Spec)
}

// enforced reports whether p has action and is enforced. Istio does not enforce a dry-run
// ALLOW or DENY policy (builder.go, isDryRun); an unparsable annotation enforces.
func enforced(p *securityv1.AuthorizationPolicy, action securityv1beta1.AuthorizationPolicy_Action) bool {
	if p == nil || p.Spec.GetAction() != action {
		return false
	}
	if action == securityv1beta1.AuthorizationPolicy_CUSTOM {
		return true
	}
	dryRun, err := strconv.ParseBool(p.Annotations[annotation.IoIstioDryRun.Name])
	return err != nil || !dryRun
}

func name(p *securityv1.AuthorizationPolicy) string { return p.Namespace + "/" + p.Name }

func concat(a, b []*securityv1.AuthorizationPolicy) []*securityv1.AuthorizationPolicy {
	if len(b) == 0 {
		return a
	}
	return append(append(make([]*securityv1.AuthorizationPolicy, 0, len(a)+len(b)), a...), b...)
}
