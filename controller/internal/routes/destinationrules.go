package routes

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// DestinationRuleScope says whose view of the DestinationRules is wanted.
type DestinationRuleScope struct {
	// Caller is the namespace of the sidecar that sends the traffic.
	Caller string
	// Service is the namespace of the Service that owns the host.
	Service string
	// Root is the mesh's root namespace (meshConfig.rootNamespace).
	Root string
	// Domain is the cluster DNS domain, for short DestinationRule hosts.
	Domain string
}

// HostMatches reports whether a DestinationRule host (already Normalized) applies to host: the
// same name, or a wildcard whose suffix it has ("*" matches every host).
func HostMatches(pattern, host string) bool {
	return pattern == host || strings.HasPrefix(pattern, "*") && strings.HasSuffix(host, pattern[1:])
}

// EffectiveDestinationRule returns the DestinationRule that istiod applies to host for a sidecar
// in s.Caller, or nil when none does. It follows pilot's PushContext.destinationRule and
// mergeDestinationRule:
//
//  1. The first of these namespaces that has a rule for the host decides: the caller's own (any
//     rule visible there), then the Service's, then the root namespace (rules exported to the
//     caller). In the root namespace itself, its private rules come first.
//  2. Within a namespace an exact host beats a wildcard, and a longer wildcard a shorter one.
//  3. Rules for that same host are merged in creation order (then name, then namespace): the
//     subsets of later ones are appended unless a subset of that name exists, and the first
//     traffic policy wins. Rules merge only when their exportTo sets are equal or the later one's
//     includes the earlier one's; otherwise the later one stands alone, and the sidecar uses the
//     last rule standing.
//
// Rules with a workloadSelector are left out: they apply only to the workloads they select, and
// the mesh-wide exportTo default is taken to be Istio's "*".
func EffectiveDestinationRule(drs []*networkingv1.DestinationRule, host string, s DestinationRuleScope) *apinetworking.DestinationRule {
	sorted := slices.DeleteFunc(slices.Clone(drs), func(dr *networkingv1.DestinationRule) bool {
		return dr == nil || dr.Spec.GetWorkloadSelector() != nil
	})
	slices.SortStableFunc(sorted, func(a, b *networkingv1.DestinationRule) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace, b.Namespace)
	})
	type tier struct {
		in       func(*networkingv1.DestinationRule) bool
		exported bool // entries must also be exported to the caller
	}
	local := tier{in: func(dr *networkingv1.DestinationRule) bool {
		return dr.Namespace == s.Caller && visibleIn(dr, s.Caller)
	}}
	if s.Caller == s.Root {
		local.in = func(dr *networkingv1.DestinationRule) bool { return dr.Namespace == s.Root && privateOnly(dr) }
	}
	exportedFrom := func(ns string) tier {
		return tier{exported: true, in: func(dr *networkingv1.DestinationRule) bool { return dr.Namespace == ns && !privateOnly(dr) }}
	}
	for _, t := range []tier{local, exportedFrom(s.Service), exportedFrom(s.Root)} {
		var candidates []*networkingv1.DestinationRule
		for _, dr := range sorted {
			if t.in(dr) {
				candidates = append(candidates, dr)
			}
		}
		rules := consolidate(mostSpecific(candidates, host, s.Domain))
		if t.exported {
			rules = slices.DeleteFunc(rules, func(m *mergedRule) bool {
				return len(m.exportTo) > 0 && !m.exportTo["*"] && !m.exportTo[s.Caller]
			})
		}
		if len(rules) > 0 {
			return rules[len(rules)-1].spec
		}
	}
	return nil
}

// mostSpecific keeps the rules, in order, whose host is the best match for host.
func mostSpecific(drs []*networkingv1.DestinationRule, host, domain string) []*networkingv1.DestinationRule {
	best := ""
	for _, dr := range drs {
		h := Normalize(dr.Spec.GetHost(), dr.Namespace, domain)
		switch {
		case !HostMatches(h, host):
		case h == host:
			best = h
		case best != host && len(h) > len(best):
			best = h
		}
	}
	if best == "" {
		return nil
	}
	return slices.DeleteFunc(slices.Clone(drs), func(dr *networkingv1.DestinationRule) bool {
		return Normalize(dr.Spec.GetHost(), dr.Namespace, domain) != best
	})
}

type mergedRule struct {
	exportTo map[string]bool
	spec     *apinetworking.DestinationRule
}

// consolidate merges rules for one host as istiod does, in order; see EffectiveDestinationRule.
func consolidate(drs []*networkingv1.DestinationRule) []*mergedRule {
	var out []*mergedRule
	for _, dr := range drs {
		exp := exportSet(dr)
		alone := true
		for _, m := range out {
			if !equalSets(exp, m.exportTo) && (len(m.exportTo) == 0 || !includes(exp, m.exportTo)) {
				alone = true
				continue
			}
			alone = false
			for _, sub := range dr.Spec.GetSubsets() {
				if !slices.ContainsFunc(m.spec.Subsets, func(have *apinetworking.Subset) bool { return have.GetName() == sub.GetName() }) {
					m.spec.Subsets = append(m.spec.Subsets, proto.Clone(sub).(*apinetworking.Subset))
				}
			}
			if m.spec.TrafficPolicy == nil && dr.Spec.GetTrafficPolicy() != nil {
				m.spec.TrafficPolicy = proto.Clone(dr.Spec.GetTrafficPolicy()).(*apinetworking.TrafficPolicy)
			}
		}
		if alone {
			out = append(out, &mergedRule{exportTo: exp, spec: proto.Clone(&dr.Spec).(*apinetworking.DestinationRule)})
		}
	}
	return out
}

func exportSet(dr *networkingv1.DestinationRule) map[string]bool {
	set := map[string]bool{}
	for _, e := range dr.Spec.GetExportTo() {
		set[e] = true
	}
	return set
}

// visibleIn reports whether istiod indexes dr for sidecars in its own namespace.
func visibleIn(dr *networkingv1.DestinationRule, ns string) bool {
	exp := exportSet(dr)
	return len(exp) == 0 || exp["*"] || exp["."] || exp[ns]
}

// privateOnly reports whether dr is exported to its own namespace alone.
func privateOnly(dr *networkingv1.DestinationRule) bool {
	exp := exportSet(dr)
	return len(exp) == 1 && (exp["."] || exp[dr.Namespace])
}

func equalSets(a, b map[string]bool) bool {
	return len(a) == len(b) && includes(a, b)
}

func includes(a, b map[string]bool) bool {
	for k := range b {
		if !a[k] {
			return false
		}
	}
	return true
}
