package authz

import (
	"fmt"
	"slices"

	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// Unsupported returns a field path (e.g. "rules[0].from[0].source.requestPrincipals") of the first field in p the resolver cannot check from Request, or "" if it can check all of p. Also CUSTOM action is unsupported ("action").
//
// A when condition is named with its key, e.g. "rules[0].when[1](source.ip)". The resolver
// cannot check request principals (JWT), IP blocks, path templates, and when keys other than
// source.principal, source.namespace, source.serviceAccount, source.trustDomain,
// destination.port and request.headers[NAME] (but not a pseudo-header or Host). A policy Istio
// does not enforce (AUDIT, dry-run ALLOW or DENY) has nothing to check.
func Unsupported(p *securityv1.AuthorizationPolicy) string {
	if p == nil {
		return ""
	}
	action := p.Spec.GetAction()
	switch {
	case action == securityv1beta1.AuthorizationPolicy_CUSTOM:
		return "action"
	case action != securityv1beta1.AuthorizationPolicy_ALLOW && action != securityv1beta1.AuthorizationPolicy_DENY:
		return "" // AUDIT, or an action Istio ignores
	case !enforced(p, action):
		return ""
	}
	for i, rule := range p.Spec.GetRules() {
		if path := unsupportedInRule(rule); path != "" {
			return fmt.Sprintf("rules[%d].%s", i, path)
		}
	}
	return ""
}

func unsupportedInRule(rule *securityv1beta1.Rule) string {
	for j, f := range rule.GetFrom() {
		if name := uncheckedField(sourceFields(f.GetSource())); name != "" {
			return fmt.Sprintf("from[%d].source.%s", j, name)
		}
	}
	for j, t := range rule.GetTo() {
		if name := uncheckedField(operationFields(t.GetOperation())); name != "" {
			return fmt.Sprintf("to[%d].operation.%s", j, name)
		}
	}
	for k, c := range rule.GetWhen() {
		if _, _, _, checked := conditionMatcher(c.GetKey()); !checked {
			return fmt.Sprintf("when[%d](%s)", k, c.GetKey())
		}
	}
	return ""
}

// uncheckedField returns the name of the first field with a value the resolver cannot check.
func uncheckedField(fs []fieldPair) string {
	for _, f := range fs {
		if f.checked == nil {
			continue
		}
		if slices.ContainsFunc(f.values, func(v string) bool { return !f.checked(v) }) {
			return f.name
		}
		if slices.ContainsFunc(f.notValues, func(v string) bool { return !f.checked(v) }) {
			return f.notName
		}
	}
	return ""
}

// DeniesPrincipal reports whether DENY policy p could deny some request whose peer principal is principal (only source-side fields are evaluated; every request-side field is assumed to match). Used by the controller: if a DENY policy could deny the resolver's own replays, elasti must not proxy that target.
//
// Source-side means derived from the peer principal: principals, namespaces, serviceAccounts,
// trustDomains and their when keys. Other source fields (IP blocks, request principals) are
// assumed to match too, since some replay could carry them. A CUSTOM policy counts as DENY, as
// its provider may deny; other actions and a dry-run DENY policy deny nothing.
func DeniesPrincipal(p *securityv1.AuthorizationPolicy, principal string) bool {
	if !enforced(p, securityv1beta1.AuthorizationPolicy_DENY) && !enforced(p, securityv1beta1.AuthorizationPolicy_CUSTOM) {
		return false
	}
	e := newEvaluator(p.Namespace, Request{Principal: principal}, true, true)
	return e.policy(&p.Spec) != no
}
