package main

import (
	"errors"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// RouteConfig is the printed form of one RDS resource.
type RouteConfig struct {
	Name         string        `json:"name"`
	VirtualHosts []VirtualHost `json:"virtualHosts"`
}

// VirtualHost keeps the domains so callers can pick the host of the Service under test.
type VirtualHost struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Routes  []Route  `json:"routes"`
}

// Route names its destination either as one cluster or as weighted clusters. Headers are the
// request headers the route adds; Istio puts a lone destination's headers here.
type Route struct {
	Name     string            `json:"name,omitempty"`
	Match    string            `json:"match"`
	Clusters []WeightedCluster `json:"clusters"`
	Headers  map[string]string `json:"headers,omitempty"`
	Remove   []string          `json:"remove,omitempty"`
}

// WeightedCluster is an Envoy cluster name such as outbound|80|live|target.default.svc.cluster.local,
// with the request headers added, and removed, when a request takes it.
type WeightedCluster struct {
	Name    string            `json:"name"`
	Weight  uint32            `json:"weight"`
	Headers map[string]string `json:"headers,omitempty"`
	Remove  []string          `json:"remove,omitempty"`
}

func routeConfigs(res []*anypb.Any, host string, names []string) ([]RouteConfig, error) {
	var out []RouteConfig
	for _, r := range res {
		var rc routev3.RouteConfiguration
		if err := r.UnmarshalTo(&rc); err != nil {
			return nil, err
		}
		out = append(out, routeConfig(&rc, host))
	}
	if len(out) == 0 {
		return nil, errors.New("istiod sent no route configuration for " + strings.Join(names, ","))
	}
	return out, nil
}

func routeConfig(rc *routev3.RouteConfiguration, host string) RouteConfig {
	out := RouteConfig{Name: rc.GetName(), VirtualHosts: []VirtualHost{}}
	for _, vh := range rc.GetVirtualHosts() {
		if host != "" && !slices.Contains(vh.GetDomains(), host) {
			continue
		}
		v := VirtualHost{Name: vh.GetName(), Domains: slices.Clone(vh.GetDomains())}
		for _, r := range vh.GetRoutes() {
			rt := Route{Name: r.GetName(), Match: match(r.GetMatch()), Headers: headers(r.GetRequestHeadersToAdd()),
				Remove: r.GetRequestHeadersToRemove()}
			a := r.GetRoute()
			if c := a.GetCluster(); c != "" {
				rt.Clusters = []WeightedCluster{{Name: c, Weight: 100}}
			}
			for _, wc := range a.GetWeightedClusters().GetClusters() {
				rt.Clusters = append(rt.Clusters, WeightedCluster{Name: wc.GetName(), Weight: wc.GetWeight().GetValue(),
					Headers: headers(wc.GetRequestHeadersToAdd()), Remove: wc.GetRequestHeadersToRemove()})
			}
			v.Routes = append(v.Routes, rt)
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	return out
}

func headers(opts []*corev3.HeaderValueOption) map[string]string {
	if len(opts) == 0 {
		return nil
	}
	out := make(map[string]string, len(opts))
	for _, o := range opts {
		out[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return out
}

func match(m *routev3.RouteMatch) string {
	switch {
	case m.GetPrefix() != "":
		return "prefix " + m.GetPrefix()
	case m.GetPath() != "":
		return "path " + m.GetPath()
	case m.GetSafeRegex() != nil:
		return "regex " + m.GetSafeRegex().GetRegex()
	case m.GetPathSeparatedPrefix() != "":
		return "prefix " + m.GetPathSeparatedPrefix()
	}
	return "any"
}
