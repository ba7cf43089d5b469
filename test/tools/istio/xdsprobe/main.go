// Command xdsprobe asks istiod for xDS resources the way a sidecar or a gateway would, and prints
// them as JSON, reduced to what decides where traffic goes: for routes (RDS) the virtual hosts,
// their routes and weighted clusters; for clusters (CDS) the discovery type, the upstream HTTP
// protocol and whether Istio mTLS applies; for endpoints (EDS) each address with its TLS mode and
// workload identity; for listeners (LDS) each filter chain's match and what it hands traffic to.
// There is no Envoy binary in the e2e tier, so this is how the suite sees what a proxy would do.
//
//	xdsprobe -namespace default -route 80 -host target.default.svc.cluster.local
//	xdsprobe -type router -labels istio=ingressgateway -namespace gw -route http.80 -host shop.example.com
//	xdsprobe -kind cds -namespace shop -match elasti-resolver
//	xdsprobe -kind eds -namespace shop -names 'outbound|80||web.shop.svc.cluster.local'
//	xdsprobe -kind lds -namespace elasti-system -pod elasti-resolver-0 -ip 10.244.0.12 -match 8012
//
// The gateway form asks as a proxy whose labels a Gateway's selector matches; its routes are named
// http.<port> after the Gateway server's port. Asking as a real pod (-pod, -ip and -labels of
// that pod) gives that pod's inbound listeners.
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
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	routeType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "xdsprobe:", err)
		os.Exit(1)
	}
}

type options struct {
	kind, host, match string
	names             []string
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:15010", "istiod's plain-text gRPC (xDS) address.")
	ns := flag.String("namespace", "default", "Namespace the pretend proxy lives in.")
	pod := flag.String("pod", "xdsprobe", "Pod name of the pretend proxy.")
	ip := flag.String("ip", "10.244.0.250", "Pod IP of the pretend proxy.")
	kind := flag.String("kind", "rds", "What to ask for: rds (routes), cds (clusters), eds (endpoints) or lds (listeners).")
	routes := flag.String("route", "80", "For rds: comma-separated route names (a sidecar's outbound routes are named by port, a gateway's http.<port>).")
	names := flag.String("names", "", "For eds: comma-separated cluster names, such as outbound|80||web.shop.svc.cluster.local. For rds, the same as -route.")
	match := flag.String("match", "", "For cds and lds: print only resources whose name contains this.")
	typ := flag.String("type", "sidecar", "Proxy type: sidecar, or router for a gateway.")
	labels := flag.String("labels", "", "Comma-separated k=v pod labels of the pretend proxy; a gateway's must match its Gateway's selector. Default app=<pod>.")
	host := flag.String("host", "", "For rds: print only virtual hosts with this domain, e.g. target.default.svc.cluster.local.")
	timeout := flag.Duration("timeout", 15*time.Second, "Give up after this long.")
	flag.Parse()

	if *typ != "sidecar" && *typ != "router" {
		return fmt.Errorf("-type must be sidecar or router, got %q", *typ)
	}
	o := options{kind: *kind, host: *host, match: *match}
	switch o.kind {
	case "rds":
		o.names = split(*routes)
		if *names != "" {
			o.names = split(*names)
		}
	case "eds":
		if o.names = split(*names); len(o.names) == 0 {
			return errors.New("-kind eds needs -names")
		}
	case "cds", "lds":
	default:
		return fmt.Errorf("-kind must be rds, cds, eds or lds, got %q", o.kind)
	}
	podLabels := map[string]any{"app": *pod}
	if *labels != "" {
		podLabels = map[string]any{}
		for _, kv := range split(*labels) {
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
	out, err := ask(stream, node, o)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// ask sends requests in Envoy's order, clusters first, so that istiod has initialised the
// connection's push context before the request that matters, and returns the summary of the
// first response of the asked type.
func ask(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, node *corev3.Node, o options) (any, error) {
	reqs := []*discoveryv3.DiscoveryRequest{{Node: node, TypeUrl: clusterType}}
	want := clusterType
	switch o.kind {
	case "rds":
		want = routeType
		reqs = append(reqs, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: routeType, ResourceNames: o.names})
	case "eds":
		want = endpointType
		reqs = append(reqs, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: endpointType, ResourceNames: o.names})
	case "lds":
		want = listenerType
		reqs = append(reqs, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: listenerType})
	}
	for _, req := range reqs {
		if err := stream.Send(req); err != nil {
			return nil, fmt.Errorf("sending %s request: %w", req.TypeUrl, err)
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w", o.kind, err)
		}
		if resp.TypeUrl != want {
			continue
		}
		return summarise(resp.Resources, o)
	}
}

func summarise(res []*anypb.Any, o options) (any, error) {
	switch o.kind {
	case "rds":
		return routeConfigs(res, o.host, o.names)
	case "cds":
		return clusters(res, o.match)
	case "eds":
		return loadAssignments(res)
	default:
		return listeners(res, o.match)
	}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
