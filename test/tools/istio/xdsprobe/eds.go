package main

import (
	"fmt"
	"sort"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// LoadAssignment is the printed form of one EDS resource.
type LoadAssignment struct {
	Cluster   string     `json:"cluster"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one address of a cluster, with what Istio tells the proxy about the workload
// behind it: TLSMode "istio" makes the caller's proxy use mTLS (automatic mTLS), and Workload is
// "name;namespace;canonical name;revision;cluster", empty fields when istiod found no pod.
type Endpoint struct {
	Address  string `json:"address"`
	Health   string `json:"health"`
	TLSMode  string `json:"tlsMode,omitempty"`
	Workload string `json:"workload,omitempty"`
}

func loadAssignments(res []*anypb.Any) ([]LoadAssignment, error) {
	out := []LoadAssignment{}
	for _, r := range res {
		var la endpointv3.ClusterLoadAssignment
		if err := r.UnmarshalTo(&la); err != nil {
			return nil, err
		}
		s := LoadAssignment{Cluster: la.GetClusterName(), Endpoints: []Endpoint{}}
		for _, loc := range la.GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				md := lb.GetMetadata().GetFilterMetadata()
				s.Endpoints = append(s.Endpoints, Endpoint{
					Address:  fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()),
					Health:   lb.GetHealthStatus().String(),
					TLSMode:  md["envoy.transport_socket_match"].GetFields()["tlsMode"].GetStringValue(),
					Workload: md["istio"].GetFields()["workload"].GetStringValue(),
				})
			}
		}
		sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].Address < s.Endpoints[j].Address })
		out = append(out, s)
	}
	return out, nil
}
