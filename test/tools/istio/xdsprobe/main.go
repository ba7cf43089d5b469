// Command xdsprobe asks istiod for route configurations the way a sidecar would and prints them as
// JSON, reduced to what elasti changes: virtual hosts, their routes and the weighted clusters each
// route sends to. There is no Envoy binary in the e2e tier, so this is how the suite checks that a
// VirtualService points at the resolver in Proxy mode and back at the target subset in Serve mode.
//
//	xdsprobe -namespace default -route 80 -host target.default.svc.cluster.local
//	xdsprobe -type router -labels istio=ingressgateway -namespace gw -route http.80 -host shop.example.com
//
// The second form asks as a gateway proxy whose labels a Gateway's selector matches; its routes
// are named http.<port> after the Gateway server's port.
//
// It must run where istiod's plain-text xDS port is reachable: inside the cluster's network
// namespace (elasti-cluster exec -- xdsprobe ...).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	routeType   = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	clusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
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

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "xdsprobe:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:15010", "istiod's plain-text gRPC (xDS) address.")
	ns := flag.String("namespace", "default", "Namespace the pretend sidecar lives in.")
	pod := flag.String("pod", "xdsprobe", "Pod name of the pretend sidecar.")
	ip := flag.String("ip", "10.244.0.250", "Pod IP of the pretend sidecar.")
	routes := flag.String("route", "80", "Comma-separated RDS route names (a sidecar's outbound routes are named by port, a gateway's http.<port>).")
	typ := flag.String("type", "sidecar", "Proxy type: sidecar, or router for a gateway.")
	labels := flag.String("labels", "", "Comma-separated k=v pod labels of the pretend proxy; a gateway's must match its Gateway's selector. Default app=<pod>.")
	host := flag.String("host", "", "Print only virtual hosts with this domain, e.g. target.default.svc.cluster.local.")
	timeout := flag.Duration("timeout", 15*time.Second, "Give up after this long.")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if *typ != "sidecar" && *typ != "router" {
		return fmt.Errorf("-type must be sidecar or router, got %q", *typ)
	}
	podLabels := map[string]any{"app": *pod}
	if *labels != "" {
		podLabels = map[string]any{}
		for _, kv := range strings.Split(*labels, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("-labels: %q is not k=v", kv)
			}
			podLabels[k] = v
		}
	}
	// istiod builds a proxy's view from the node id and this metadata; without NAMESPACE and
	// CLUSTER_ID it treats the caller as an unknown workload. A router's LABELS select its
	// Gateways.
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE": *ns, "NAME": *pod, "CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": "1.31.0",
		"INTERCEPTION_MODE": "REDIRECT", "LABELS": podLabels,
	})
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", *typ, *ip, *pod, *ns, *ns), Metadata: md}
	names := strings.Split(*routes, ",")
	// Ask in Envoy's order, clusters then routes, so istiod has initialised the connection's push
	// context before the route request.
	for _, req := range []*discoveryv3.DiscoveryRequest{
		{Node: node, TypeUrl: clusterType},
		{Node: node, TypeUrl: routeType, ResourceNames: names},
	} {
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("sending %s request: %w", req.TypeUrl, err)
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("waiting for routes %v: %w", names, err)
		}
		if resp.TypeUrl != routeType {
			continue
		}
		var out []RouteConfig
		for _, res := range resp.Resources {
			var rc routev3.RouteConfiguration
			if err := res.UnmarshalTo(&rc); err != nil {
				return err
			}
			out = append(out, summarise(&rc, *host))
		}
		if len(out) == 0 {
			return errors.New("istiod sent no route configuration for " + *routes)
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
}

func summarise(rc *routev3.RouteConfiguration, host string) RouteConfig {
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
