//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/wrapperspb"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
)

// proxylessConn dials target (xds:///host:port) with gRPC-Go's own xDS client against the
// cluster's istiod, as a proxyless gRPC workload in namespace ns: istiod's answers (listener,
// routes, clusters, endpoints) decide which address each call goes to. Plain text: the e2e pods
// have no sidecars to terminate mTLS.
func proxylessConn(ns, target string) *grpc.ClientConn {
	GinkgoHelper()
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri": "127.0.0.1:15010", "channel_creds": []any{map[string]any{"type": "insecure"}},
			"server_features": []any{"xds_v3"},
		}},
		"node": map[string]any{
			"id": fmt.Sprintf("sidecar~10.244.0.251~grpc-caller.%s~%s.svc.cluster.local", ns, ns),
			// GENERATOR grpc makes istiod answer as it does for proxyless gRPC.
			"metadata": map[string]any{"GENERATOR": "grpc", "NAMESPACE": ns, "CLUSTER_ID": "Kubernetes",
				"INSTANCE_IPS": "10.244.0.251", "ISTIO_VERSION": "1.31.0", "LABELS": map[string]any{"app": "grpc-caller"}},
		},
	})
	Expect(err).NotTo(HaveOccurred())
	builder, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	Expect(err).NotTo(HaveOccurred())
	conn, err := grpc.NewClient(target, grpc.WithResolvers(builder),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return conn
}

// echo calls elasti.test.Echo/Echo with request id id, and returns the address that answered.
func echo(ctx context.Context, conn *grpc.ClientConn, id string) (string, error) {
	var p peer.Peer
	out := new(wrapperspb.StringValue)
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", id)
	if err := conn.Invoke(ctx, "/elasti.test.Echo/Echo", wrapperspb.String(id), out, grpc.Peer(&p)); err != nil {
		return "", err
	}
	if out.GetValue() != id {
		return "", fmt.Errorf("echo of %q answered %q", id, out.GetValue())
	}
	host, _, _ := net.SplitHostPort(p.Addr.String())
	return host, nil
}

var _ = Describe("Proxyless gRPC through istiod", Label("istio", "mesh", "proxyless"), func() {
	It("sends real calls where istiod says: to the resolver at zero, answered after the wake, then straight to the pods", func(sctx SpecContext) {
		begin := time.Now()
		prom.active.Store(false)
		a := deployApp(5)
		DeferCleanup(func() { _ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}}) })
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, vs)).To(Succeed())
		vs.Spec.Http = append([]*apinetworking.HTTPRoute{{
			Name:  "grpc",
			Match: []*apinetworking.HTTPMatchRequest{{Port: 9090}},
			Route: []*apinetworking.HTTPRouteDestination{{Destination: &apinetworking.Destination{Host: "shop", Subset: "v1", Port: &apinetworking.PortSelector{Number: 9090}}}},
		}}, vs.Spec.Http...)
		Expect(k8s.Update(ctx, vs)).To(Succeed())
		target := "xds:///shop." + a.ns + ".svc.cluster.local:9090"
		podIPs := func() []string {
			var pods corev1.PodList
			Expect(k8s.List(ctx, &pods, client.InNamespace(a.ns), client.MatchingLabels{"app": "shop"})).To(Succeed())
			var ips []string
			for _, p := range pods.Items {
				ips = append(ips, p.Status.PodIP)
			}
			return ips
		}

		By("in Serve mode a call goes to a pod of subset v1")
		serve := proxylessConn(a.ns, target)
		Eventually(func() (string, error) { return echo(sctx, serve, "serve-0") }).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).
			Should(BeElementOf(podIPs()))

		By("at zero istiod sends the call to the resolver, which holds it, wakes the target and replays it once")
		a.toZero()
		var resolvers corev1.PodList
		Expect(k8s.List(ctx, &resolvers, client.InNamespace("elasti-system"), client.MatchingLabels{"app": "elasti-resolver"})).To(Succeed())
		var resolverIPs []string
		for _, p := range resolvers.Items {
			resolverIPs = append(resolverIPs, p.Status.PodIP)
		}
		// A new channel: its first resolution comes after the switch, as a new caller's would.
		proxied := proxylessConn(a.ns, target)
		start := time.Now()
		callCtx, cancel := context.WithTimeout(sctx, 90*time.Second)
		defer cancel()
		addr, err := echo(callCtx, proxied, "cold-0")
		Expect(err).NotTo(HaveOccurred())
		Expect(addr).To(BeElementOf(resolverIPs), "the call at zero did not go to a resolver")
		GinkgoWriter.Printf("proxyless gRPC call at zero answered through the resolver at %s in %s\n", addr, time.Since(start).Round(10*time.Millisecond))

		By("a server stream through the resolver keeps its messages and its OK status (trailers)")
		stream, err := proxied.NewStream(sctx, &grpc.StreamDesc{ServerStreams: true}, "/elasti.test.Echo/Count")
		Expect(err).NotTo(HaveOccurred())
		Expect(stream.SendMsg(wrapperspb.String("n"))).To(Succeed())
		Expect(stream.CloseSend()).To(Succeed())
		var got []string
		for {
			m := new(wrapperspb.StringValue)
			if err := stream.RecvMsg(m); err != nil {
				Expect(err).To(Equal(io.EOF), "stream ended with %v", status.Code(err))
				break
			}
			got = append(got, m.GetValue())
		}
		Expect(got).To(Equal([]string{"n 0", "n 1", "n 2", "n 3", "n 4"}))

		By("once in Serve mode, istiod sends the same channel's calls straight to the pods")
		Eventually(func() v1alpha1.Mode { return a.status().Mode }).WithTimeout(time.Minute).Should(Equal(v1alpha1.ModeServe))
		Eventually(func() (string, error) { return echo(sctx, proxied, "serve-1") }).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).
			Should(BeElementOf(podIPs()))
		Expect(a.counts()).To(HaveKeyWithValue("cold-0", 1), "the held call was not executed exactly once")
		_, err = echo(sctx, proxied, "serve-2")
		Expect(status.Code(err)).To(Equal(codes.OK))
		GinkgoWriter.Printf("proxyless gRPC scenario took %s\n", time.Since(begin).Round(100*time.Millisecond))
	}, SpecTimeout(4*time.Minute))
})
