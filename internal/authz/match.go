package authz

import (
	"net/netip"
	"strconv"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
)

// tri is a three-valued truth: maybe is what the resolver cannot observe. Ordered
// no < maybe < yes, Kleene's and, or and not are min, max and mirror, so a result that is yes
// or no holds whatever the unobserved value is.
type tri uint8

const (
	no tri = iota
	maybe
	yes
)

func triOf(b bool) tri {
	if b {
		return yes
	}
	return no
}

func (a tri) and(b tri) tri { return min(a, b) }

func (a tri) or(b tri) tri { return max(a, b) }

func (a tri) not() tri { return yes - a }

// matcher matches one policy value; ok=false is a value Istio cannot translate into Envoy
// config (a bad port, IP or key), which Istio handles by action (see evaluator.void).
type matcher func(e *evaluator, value string) (t tri, ok bool)

// evaluator matches the rules of one policy against one request.
type evaluator struct {
	r        Request
	uri      string // "spiffe://" + r.Principal: Envoy matches namespaces against the URI SAN
	policyNS string // the namespace a serviceAccounts value without one is in

	// widen is set for DENY and CUSTOM. Istio drops a value it cannot translate from such a
	// policy, making it deny more, but skips the whole rule of an ALLOW policy, making it allow
	// less (model.go, rule.checkError). void records such a value in the current rule.
	widen bool
	void  bool

	// sourceOnly makes every field not derived from the peer principal match: DeniesPrincipal
	// asks whether some request from a principal could be denied.
	sourceOnly bool
}

func newEvaluator(policyNS string, r Request, widen, sourceOnly bool) *evaluator {
	e := &evaluator{r: r, policyNS: policyNS, widen: widen, sourceOnly: sourceOnly}
	if r.Principal != "" {
		e.uri = spiffePrefix + r.Principal
	}
	return e
}

const spiffePrefix = "spiffe://"

// policy is the union of the policy's rules. An ALLOW or DENY policy without rules matches
// nothing (builder.go, rbacPolicyMatchNever); nil rules are skipped.
func (e *evaluator) policy(spec *securityv1beta1.AuthorizationPolicy) tri {
	t := no
	for _, rule := range spec.GetRules() {
		if rule != nil {
			t = t.or(e.rule(rule))
		}
	}
	return t
}

// rule is yes when any from, any to and every when match; an empty from or to matches. Every
// field is evaluated, without short cuts, so that a value Istio rejects is always seen.
func (e *evaluator) rule(rule *securityv1beta1.Rule) tri {
	e.void = false
	from := triOf(len(rule.GetFrom()) == 0)
	for _, f := range rule.GetFrom() {
		from = from.or(e.source(f.GetSource()))
	}
	to := triOf(len(rule.GetTo()) == 0)
	for _, o := range rule.GetTo() {
		to = to.or(e.operation(o.GetOperation()))
	}
	when := yes
	for _, c := range rule.GetWhen() {
		when = when.and(e.condition(c))
	}
	if e.void && !e.widen {
		return no
	}
	return from.and(to).and(when)
}

// fieldPair is a field of a Source or Operation and its not-field.
type fieldPair struct {
	name, notName     string // JSON names, for Unsupported
	values, notValues []string
	match             matcher
	peer              bool                    // derived from the peer principal
	checked           func(value string) bool // whether the resolver sees what the sidecar would; nil: always
}

func never(string) bool { return false }

func sourceFields(s *securityv1beta1.Source) []fieldPair {
	return []fieldPair{
		{"principals", "notPrincipals", s.GetPrincipals(), s.GetNotPrincipals(), (*evaluator).principal, true, nil},
		{"namespaces", "notNamespaces", s.GetNamespaces(), s.GetNotNamespaces(), (*evaluator).namespace, true, nil},
		{"serviceAccounts", "notServiceAccounts", s.GetServiceAccounts(), s.GetNotServiceAccounts(), (*evaluator).serviceAccount, true, nil},
		{"trustDomains", "notTrustDomains", s.GetTrustDomains(), s.GetNotTrustDomains(), (*evaluator).trustDomain, true, nil},
		{"requestPrincipals", "notRequestPrincipals", s.GetRequestPrincipals(), s.GetNotRequestPrincipals(), unobserved, false, never},
		{"ipBlocks", "notIpBlocks", s.GetIpBlocks(), s.GetNotIpBlocks(), ipBlock, false, never},
		{"remoteIpBlocks", "notRemoteIpBlocks", s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks(), ipBlock, false, never},
	}
}

func operationFields(o *securityv1beta1.Operation) []fieldPair {
	return []fieldPair{
		{"hosts", "notHosts", o.GetHosts(), o.GetNotHosts(), (*evaluator).host, false, nil},
		{"ports", "notPorts", o.GetPorts(), o.GetNotPorts(), (*evaluator).port, false, nil},
		{"methods", "notMethods", o.GetMethods(), o.GetNotMethods(), (*evaluator).method, false, nil},
		{"paths", "notPaths", o.GetPaths(), o.GetNotPaths(), (*evaluator).path, false, func(v string) bool { return !isPathTemplate(v) }},
	}
}

// source and operation are the And of their fields; a nil one matches.
func (e *evaluator) source(s *securityv1beta1.Source) tri { return e.fields(sourceFields(s)) }

func (e *evaluator) operation(o *securityv1beta1.Operation) tri {
	return e.fields(operationFields(o))
}

func (e *evaluator) fields(fs []fieldPair) tri {
	t := yes
	for _, f := range fs {
		t = t.and(e.field(f.peer, f.values, f.notValues, f.match))
	}
	return t
}

func (e *evaluator) condition(c *securityv1beta1.Condition) tri {
	m, peer, known, _ := conditionMatcher(c.GetKey())
	if !known {
		// Istio skips a rule with an unknown key whatever the action (model.New); a DENY
		// rule here denies instead, since the key may be one a later Istio knows.
		if !e.widen {
			e.void = true
		}
		return maybe
	}
	return e.field(peer, c.GetValues(), c.GetNotValues(), m)
}

// conditionMatcher returns the matcher for a when key, whether the key is derived from the
// peer principal, whether Istio knows the key (model.go, New), and whether the resolver can
// check it as the target's sidecar would.
func conditionMatcher(key string) (m matcher, peer, known, checked bool) {
	switch key {
	case "source.principal":
		return (*evaluator).principal, true, true, true
	case "source.namespace":
		return (*evaluator).namespace, true, true, true
	case "source.serviceAccount":
		return (*evaluator).serviceAccount, true, true, true
	case "source.trustDomain":
		return (*evaluator).trustDomain, true, true, true
	case "destination.port":
		return (*evaluator).port, false, true, true
	case "source.ip", "remote.ip", "destination.ip":
		return ipBlock, false, true, false
	case "request.auth.principal", "request.auth.audiences", "request.auth.presenter", "connection.sni":
		return unobserved, false, true, false
	}
	switch {
	case strings.HasPrefix(key, "request.headers"):
		name, ok := headerName(key)
		switch {
		case !ok:
			return invalid, false, true, true
		case !headerObserved(name):
			return unobserved, false, true, false
		}
		return func(e *evaluator, v string) (tri, bool) { return e.header(name, v) }, false, true, true
	case strings.HasPrefix(key, "request.auth.claims"):
		if !claimsKeyValid(strings.TrimPrefix(key, "request.auth.claims")) {
			return invalid, false, true, false
		}
		return unobserved, false, true, false
	case strings.HasPrefix(key, "experimental.envoy.filters."):
		if !strings.Contains(key, "[") {
			return invalid, false, true, false
		}
		return unobserved, false, true, false
	}
	return nil, false, false, false
}

// field is yes when some value matches (or there are none) and no notValue matches (model.go,
// rule.principal and rule.permission: an Or of values, a Not of the Or of notValues). In
// sourceOnly mode a field not derived from the peer principal matches.
func (e *evaluator) field(peer bool, values, notValues []string, m matcher) tri {
	if e.sourceOnly && !peer {
		return yes
	}
	t := yes
	if some, kept := e.anyOf(values, m); kept {
		t = t.and(some)
	}
	if some, kept := e.anyOf(notValues, m); kept {
		t = t.and(some.not())
	}
	return t
}

// anyOf is the Or of the values Istio can translate; kept is false when there were none, so
// that the field puts no constraint, as when Istio drops every value of a DENY policy.
func (e *evaluator) anyOf(values []string, m matcher) (some tri, kept bool) {
	some = no
	for _, v := range values {
		t, ok := m(e, v)
		if !ok {
			e.void = true
			continue
		}
		some, kept = some.or(t), true
	}
	return some, kept
}

func unobserved(*evaluator, string) (tri, bool) { return maybe, true }

func invalid(*evaluator, string) (tri, bool) { return no, false }

// ipBlock is unobserved, but a value that is not an IP or CIDR is still invalid to Istio
// (util.AddrStrToCidrRange).
func ipBlock(_ *evaluator, v string) (tri, bool) {
	var err error
	if strings.Contains(v, "/") {
		_, err = netip.ParsePrefix(v)
	} else {
		_, err = netip.ParseAddr(v)
	}
	return maybe, err == nil
}

// principal matches "spiffe://"+v against the URI SAN (generator.go, srcPrincipalGenerator):
// exact, "abc*" prefix, "*abc" suffix, "*" any; a caller without mTLS matches no value, as
// Envoy's Authenticated matcher is false without TLS (so notPrincipals matches it).
//
// Trust domains: Istio rewrites the trust domain of a value "td/ns/x/sa/y" to the mesh's trust
// domain and each alias (trustdomain/bundle.go, ReplaceTrustDomainAliases), and "cluster.local"
// always stands for the local one. The resolver knows neither, so a caller that matches only
// once its own trust domain is put in the value's place is maybe, not no: it can neither be
// allowed by such a value nor escape a DENY on it.
func (e *evaluator) principal(v string) (tri, bool) {
	p := e.r.Principal
	if p == "" {
		return no, true
	}
	if matchString(v, p) {
		return yes, true
	}
	if strings.Count(v, "/") == 4 {
		td, rest, _ := strings.Cut(v, "/")
		ptd, _, _ := strings.Cut(p, "/")
		if td != "*" && td != ptd && matchString(ptd+"/"+rest, p) {
			return maybe, true
		}
	}
	return no, true
}

// namespace is Istio's regex ".*/ns/<v>/.*" on the URI SAN, each '*' in v becoming ".*"
// (generator.go, srcNamespaceGenerator): the literal pieces in order, anywhere in the URI.
func (e *evaluator) namespace(v string) (tri, bool) {
	if e.uri == "" {
		return no, true
	}
	pieces := strings.Split(v, "*")
	pieces[0] = "/ns/" + pieces[0]
	pieces[len(pieces)-1] += "/"
	rest := e.uri
	for _, piece := range pieces {
		i := strings.Index(rest, piece)
		if i < 0 {
			return no, true
		}
		rest = rest[i+len(piece):]
	}
	return yes, true
}

// serviceAccount is "ns/sa", or "sa" in the policy's namespace, matched as Istio's regex
// "spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?" on the URI SAN (generator.go, serviceAccountRegex).
func (e *evaluator) serviceAccount(v string) (tri, bool) {
	p := e.r.Principal
	if p == "" {
		return no, true
	}
	ns, sa, ok := strings.Cut(v, "/")
	if !ok {
		ns, sa = e.policyNS, v
	}
	nsPart, saPart := "/ns/"+ns+"/", "sa/"+sa
	for i := 1; i < len(p); i++ {
		if !strings.HasPrefix(p[i:], nsPart) {
			continue
		}
		rest := p[i+len(nsPart):]
		for j := 0; j < len(rest); j++ {
			if !strings.HasPrefix(rest[j:], saPart) || (j != 0 && (j < 2 || rest[j-1] != '/')) {
				continue
			}
			if tail := rest[j+len(saPart):]; tail == "" || (tail[0] == '/' && len(tail) > 1) {
				return yes, true
			}
		}
	}
	return no, true
}

// trustDomain matches the part of the principal before its first '/' (generator.go,
// srcTrustDomainGenerator): "*" any caller with mTLS, exact, or one '*' inside the trust
// domain. Aliases are matched exactly: expanding them needs the mesh config (see principal).
func (e *evaluator) trustDomain(v string) (tri, bool) {
	p := e.r.Principal
	if p == "" {
		return no, true
	}
	if v == "*" {
		return yes, true
	}
	td, _, found := strings.Cut(p, "/")
	if !found {
		return no, true
	}
	before, after, glob := strings.Cut(v, "*")
	if !glob {
		return triOf(td == v), true
	}
	return triOf(len(td) >= len(before)+len(after) && strings.HasPrefix(td, before) && strings.HasSuffix(td, after)), true
}

// host matches the request's authority without removing a port, ignoring ASCII case
// (matcher/header.go, HostMatcher): "example.com" does not match "example.com:80".
func (e *evaluator) host(v string) (tri, bool) {
	return triOf(matchString(asciiLower(v), asciiLower(e.r.Host))), true
}

// method is a case-sensitive header match on :method (matcher/header.go, HeaderMatcher).
func (e *evaluator) method(v string) (tri, bool) {
	return triOf(matchString(v, e.r.Method)), true
}

// path matches the path without its query (matcher/header.go, PathMatcher). A template with
// {*} or {**} becomes an Envoy URI template, whose character classes differ between Envoy
// versions: it is unobserved.
func (e *evaluator) path(v string) (tri, bool) {
	if isPathTemplate(v) {
		return maybe, true
	}
	return triOf(matchString(v, e.r.Path)), true
}

func isPathTemplate(v string) bool {
	return strings.Contains(v, "{*}") || strings.Contains(v, "{**}")
}

// port is the target pod's port (Envoy's destination_port, the connection's local port); an
// unknown port is maybe. A value that is not a port is invalid (util.go, convertToPort).
func (e *evaluator) port(v string) (tri, bool) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n > 65535 {
		return no, false
	}
	if e.r.Port <= 0 {
		return maybe, true
	}
	return triOf(uint64(e.r.Port) == n), true
}

// header matches the values of a request header joined with ',', as Envoy does for a header
// sent more than once (header_utility.cc, getAllOfHeaderAsString). A missing header matches
// no value, so it matches every notValues.
func (e *evaluator) header(name, v string) (tri, bool) {
	values := e.r.Headers.Values(name)
	if len(values) == 0 {
		return no, true
	}
	if v == "*" {
		return yes, true
	}
	return triOf(matchString(v, strings.Join(values, ","))), true
}

// headerName returns NAME from "request.headers[NAME]" (model/util.go, extractNameInBrackets).
func headerName(key string) (string, bool) {
	s := strings.TrimPrefix(key, "request.headers")
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") || len(s) < 2 {
		return "", false
	}
	return s[1 : len(s)-1], true
}

// headerObserved reports whether the resolver sees header name as the target's sidecar would:
// pseudo-headers and Host are not in Request.Headers, and an empty name is no header.
func headerObserved(name string) bool {
	return name != "" && !strings.HasPrefix(name, ":") && !strings.EqualFold(name, "host")
}

// claimsKeyValid mirrors extractNameInNestedBrackets: "[a]", "[a][b]" or nothing.
func claimsKeyValid(s string) bool {
	return s == "" || (len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']')
}

// matchString is Istio's string match (matcher/string.go, StringMatcher): "*" any non-empty
// value, "*abc" suffix, "abc*" prefix, otherwise exact.
func matchString(pattern, s string) bool {
	switch {
	case pattern == "*":
		return s != ""
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(s, pattern[1:])
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(s, pattern[:len(pattern)-1])
	}
	return s == pattern
}

// asciiLower folds ASCII only, as Envoy's ignore_case does.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
