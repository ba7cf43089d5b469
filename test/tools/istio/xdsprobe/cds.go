package main

import (
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

const httpOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Cluster is the printed form of one CDS resource: how a proxy finds the cluster's endpoints,
// which HTTP version it speaks to them, and with which transport sockets.
type Cluster struct {
	Name string `json:"name"`
	// Type is the discovery type: EDS, ORIGINAL_DST, STATIC, STRICT_DNS...
	Type string `json:"type"`
	// Upstream is the HTTP protocol towards the endpoints: http1, http2, downstream (the one the
	// request came in with), auto, or empty when the cluster sets none (TCP, or Envoy's HTTP/1.1
	// default).
	Upstream string `json:"upstream,omitempty"`
	// TransportSocket is the name of the cluster's one transport socket, if it has one.
	TransportSocket string `json:"transportSocket,omitempty"`
	// TransportSocketMatches name the sockets chosen per endpoint by its metadata: Istio's
	// automatic mTLS is a "tlsMode-istio" match for endpoints labelled istio.tlsMode=istio.
	TransportSocketMatches []string `json:"transportSocketMatches,omitempty"`
	// Ejects says whether outlier detection would eject an endpoint for consecutive 5xx answers
	// or gateway errors (Envoy's defaults applied to the fields left unset).
	Ejects bool `json:"ejects"`
}

func clusters(res []*anypb.Any, match string) ([]Cluster, error) {
	out := []Cluster{}
	for _, r := range res {
		var c clusterv3.Cluster
		if err := r.UnmarshalTo(&c); err != nil {
			return nil, err
		}
		if match != "" && !strings.Contains(c.GetName(), match) {
			continue
		}
		s := Cluster{Name: c.GetName(), Type: c.GetType().String(), TransportSocket: c.GetTransportSocket().GetName()}
		if u, ok := c.GetTypedExtensionProtocolOptions()[httpOptionsKey]; ok {
			var h httpv3.HttpProtocolOptions
			if err := u.UnmarshalTo(&h); err != nil {
				return nil, err
			}
			s.Upstream = upstream(&h)
		}
		if od := c.GetOutlierDetection(); od != nil {
			enforcing5xx := uint32(100)
			if v := od.GetEnforcingConsecutive_5Xx(); v != nil {
				enforcing5xx = v.GetValue()
			}
			s.Ejects = enforcing5xx > 0 || od.GetEnforcingConsecutiveGatewayFailure().GetValue() > 0
		}
		for _, m := range c.GetTransportSocketMatches() {
			s.TransportSocketMatches = append(s.TransportSocketMatches, m.GetName())
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func upstream(h *httpv3.HttpProtocolOptions) string {
	switch {
	case h.GetUseDownstreamProtocolConfig() != nil:
		return "downstream"
	case h.GetAutoConfig() != nil:
		return "auto"
	case h.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
		return "http2"
	case h.GetExplicitHttpConfig().GetHttp3ProtocolOptions() != nil:
		return "http3"
	case h.GetExplicitHttpConfig() != nil:
		return "http1"
	}
	return ""
}
