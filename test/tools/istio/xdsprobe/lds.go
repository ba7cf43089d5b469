package main

import (
	"fmt"
	"sort"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

// Listener is the printed form of one LDS resource.
type Listener struct {
	Name    string        `json:"name"`
	Address string        `json:"address"`
	Chains  []FilterChain `json:"chains"`
}

// FilterChain is what a listener does with the connections its match selects: an HTTP
// connection manager names its route configuration (RDS, or the inline one's name for inbound
// chains), a TCP proxy its cluster.
type FilterChain struct {
	Name string `json:"name,omitempty"`
	// Match is the chain's match in short: destination port, transport and application
	// protocols, server names.
	Match   string   `json:"match,omitempty"`
	Filters []string `json:"filters"`
	// HTTPRoute is the route configuration of the chain's HTTP connection manager.
	HTTPRoute string `json:"httpRoute,omitempty"`
	// HTTPFilters are the HTTP filters of that connection manager, such as envoy.filters.http.rbac.
	HTTPFilters []string `json:"httpFilters,omitempty"`
	// TCPCluster is the cluster of the chain's TCP proxy.
	TCPCluster string `json:"tcpCluster,omitempty"`
	// ForwardClientCert is the connection manager's x-forwarded-client-cert mode, and
	// ClientCertURI whether it adds the caller certificate's URI (its SPIFFE identity).
	ForwardClientCert string `json:"forwardClientCert,omitempty"`
	ClientCertURI     bool   `json:"clientCertURI,omitempty"`
	// RBAC are the connection manager's RBAC filters: what AuthorizationPolicies became.
	RBAC []RBAC `json:"rbac,omitempty"`
}

// RBAC is one RBAC HTTP filter: its action, and each policy's principals as JSON (the policy
// names are Istio's, ns[NAMESPACE]-policy[NAME]-rule[N]).
type RBAC struct {
	Action   string            `json:"action"`
	Policies map[string]string `json:"policies"`
}

func listeners(res []*anypb.Any, match string) ([]Listener, error) {
	out := []Listener{}
	for _, r := range res {
		var l listenerv3.Listener
		if err := r.UnmarshalTo(&l); err != nil {
			return nil, err
		}
		sa := l.GetAddress().GetSocketAddress()
		s := Listener{Name: l.GetName(), Address: fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()), Chains: []FilterChain{}}
		chains := l.GetFilterChains()
		if d := l.GetDefaultFilterChain(); d != nil {
			chains = append(chains, d)
		}
		for _, fc := range chains {
			c, err := filterChain(fc)
			if err != nil {
				return nil, err
			}
			if match != "" && !strings.Contains(s.Name, match) && !strings.Contains(c.Match, match) {
				continue
			}
			s.Chains = append(s.Chains, c)
		}
		if match != "" && len(s.Chains) == 0 {
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func filterChain(fc *listenerv3.FilterChain) (FilterChain, error) {
	c := FilterChain{Name: fc.GetName(), Match: chainMatch(fc.GetFilterChainMatch()), Filters: []string{}}
	for _, f := range fc.GetFilters() {
		c.Filters = append(c.Filters, f.GetName())
		tc := f.GetTypedConfig()
		switch {
		case tc.MessageIs(&hcmv3.HttpConnectionManager{}):
			var h hcmv3.HttpConnectionManager
			if err := tc.UnmarshalTo(&h); err != nil {
				return c, err
			}
			c.HTTPRoute = h.GetRds().GetRouteConfigName()
			if c.HTTPRoute == "" {
				c.HTTPRoute = h.GetRouteConfig().GetName()
			}
			c.ForwardClientCert = h.GetForwardClientCertDetails().String()
			c.ClientCertURI = h.GetSetCurrentClientCertDetails().GetUri()
			for _, hf := range h.GetHttpFilters() {
				c.HTTPFilters = append(c.HTTPFilters, hf.GetName())
				if hf.GetTypedConfig().MessageIs(&rbacfilterv3.RBAC{}) {
					var rf rbacfilterv3.RBAC
					if err := hf.GetTypedConfig().UnmarshalTo(&rf); err != nil {
						return c, err
					}
					if rf.GetRules() == nil {
						continue // shadow rules only
					}
					r := RBAC{Action: rf.GetRules().GetAction().String(), Policies: map[string]string{}}
					for name, p := range rf.GetRules().GetPolicies() {
						var ids []string
						for _, id := range p.GetPrincipals() {
							b, err := protojson.Marshal(id)
							if err != nil {
								return c, err
							}
							ids = append(ids, string(b))
						}
						r.Policies[name] = strings.Join(ids, ",")
					}
					c.RBAC = append(c.RBAC, r)
				}
			}
		case tc.MessageIs(&tcpv3.TcpProxy{}):
			var t tcpv3.TcpProxy
			if err := tc.UnmarshalTo(&t); err != nil {
				return c, err
			}
			c.TCPCluster = t.GetCluster()
			for _, wc := range t.GetWeightedClusters().GetClusters() {
				c.TCPCluster += wc.GetName() + " "
			}
			c.TCPCluster = strings.TrimSpace(c.TCPCluster)
		}
	}
	return c, nil
}

func chainMatch(m *listenerv3.FilterChainMatch) string {
	var parts []string
	if p := m.GetDestinationPort(); p != nil {
		parts = append(parts, fmt.Sprintf("port %d", p.GetValue()))
	}
	if t := m.GetTransportProtocol(); t != "" {
		parts = append(parts, "transport "+t)
	}
	if a := m.GetApplicationProtocols(); len(a) > 0 {
		parts = append(parts, "alpn "+strings.Join(a, ","))
	}
	if s := m.GetServerNames(); len(s) > 0 {
		parts = append(parts, "sni "+strings.Join(s, ","))
	}
	return strings.Join(parts, " ")
}
