//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
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
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/testsupport/workload"
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
	It("sends real calls where istiod says, weights kept: to the resolver at zero, answered after the wake, then straight to the pods", func(sctx SpecContext) {
		begin := time.Now()
		prom.Active.Store(false)
		a := deployApp(5)
		DeferCleanup(func() { _ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}}) })
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, vs)).To(Succeed())
		// Half of the gRPC calls to subset v1 of the target, half to another Service that elasti
		// does not manage; a header-matched route sends a call to the target alone.
		// The other Service lives in a namespace of its own: toZero waits for every pod of a.ns to go.
		otherNS := a.ns + "-other"
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: otherNS}})).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: otherNS}}) })
		Expect(k8s.Create(ctx, workload.SampleApp(otherNS, "other", map[string]string{"app": "other"}))).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: otherNS}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "other"},
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: 9090, TargetPort: intstr.FromString("grpc"), AppProtocol: ptr.To("kubernetes.io/h2c")}},
		}})).To(Succeed())
		port := &apinetworking.PortSelector{Number: 9090}
		vs.Spec.Http = append([]*apinetworking.HTTPRoute{{
			Name: "grpc-shop-only",
			Match: []*apinetworking.HTTPMatchRequest{{Port: 9090, Headers: map[string]*apinetworking.StringMatch{
				"x-route": {MatchType: &apinetworking.StringMatch_Exact{Exact: "shop"}}}}},
			Route: []*apinetworking.HTTPRouteDestination{{Destination: &apinetworking.Destination{Host: "shop", Subset: "v1", Port: port}}},
		}, {
			Name:  "grpc",
			Match: []*apinetworking.HTTPMatchRequest{{Port: 9090}},
			Route: []*apinetworking.HTTPRouteDestination{
				{Destination: &apinetworking.Destination{Host: "shop", Subset: "v1", Port: port}, Weight: 50},
				{Destination: &apinetworking.Destination{Host: "other." + otherNS + ".svc.cluster.local", Port: port}, Weight: 50},
			},
		}}, vs.Spec.Http...)
		Expect(k8s.Update(ctx, vs)).To(Succeed())
		target := "xds:///shop." + a.ns + ".svc.cluster.local:9090"
		podIPs := func(app string) []string {
			var pods corev1.PodList
			ns := a.ns
			if app == "other" {
				ns = otherNS
			}
			Expect(k8s.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": app})).To(Succeed())
			var ips []string
			for _, p := range pods.Items {
				ips = append(ips, p.Status.PodIP)
			}
			return ips
		}
		// burst makes n concurrent calls and returns the address that answered each, by id, or
		// the first error.
		burst := func(conn *grpc.ClientConn, prefix string, n int) (map[string]string, error) {
			callCtx, cancel := context.WithTimeout(sctx, 90*time.Second)
			defer cancel()
			var mu sync.Mutex
			var wg sync.WaitGroup
			got, errs := map[string]string{}, map[string]error{}
			for i := range n {
				id := fmt.Sprintf("%s-%02d", prefix, i)
				wg.Go(func() {
					addr, err := echo(callCtx, conn, id)
					mu.Lock()
					defer mu.Unlock()
					got[id], errs[id] = addr, err
				})
			}
			wg.Wait()
			for id, err := range errs {
				if err != nil {
					return nil, fmt.Errorf("call %s: %w", id, err)
				}
			}
			return got, nil
		}
		// split counts the answers by who gave them.
		split := func(got map[string]string, groups map[string][]string) map[string]int {
			out := map[string]int{}
			for _, addr := range got {
				who := "unknown " + addr
				for name, ips := range groups {
					if slices.Contains(ips, addr) {
						who = name
					}
				}
				out[who]++
			}
			return out
		}

		By("in Serve mode istiod splits the calls between the target's subset v1 pods and the other Service's pods")
		serve := proxylessConn(a.ns, target)
		// Until the other Service's pod is ready, its half has no endpoint to pick.
		servedBy := func(conn *grpc.ClientConn) func() (map[string]int, error) {
			return func() (map[string]int, error) {
				got, err := burst(conn, fmt.Sprintf("serve-%d", time.Now().UnixNano()), 20)
				return split(got, map[string][]string{"shop": podIPs("shop"), "other": podIPs("other")}), err
			}
		}
		Eventually(servedBy(serve)).WithTimeout(time.Minute).WithPolling(500 * time.Millisecond).
			Should(And(HaveKey("shop"), HaveKey("other"), HaveLen(2)))

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
		// With the burst, a server stream that a header-matched route sends to the target alone:
		// held at the resolver like the calls, it must keep its messages and its OK status
		// (trailers) through it.
		type streamResult struct {
			peer string
			msgs []string
			err  error
		}
		streamed := make(chan streamResult, 1)
		go func() {
			defer GinkgoRecover()
			var p peer.Peer
			var r streamResult
			defer func() { streamed <- r }()
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(sctx, "x-route", "shop", "x-request-id", "stream-0"), 90*time.Second)
			defer cancel()
			stream, err := proxied.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/elasti.test.Echo/Count", grpc.Peer(&p))
			if r.err = err; err != nil {
				return
			}
			if r.err = stream.SendMsg(wrapperspb.String("n")); r.err != nil {
				return
			}
			if r.err = stream.CloseSend(); r.err != nil {
				return
			}
			for {
				m := new(wrapperspb.StringValue)
				if err := stream.RecvMsg(m); err != nil {
					if !errors.Is(err, io.EOF) {
						r.err = err
					}
					break
				}
				r.msgs = append(r.msgs, m.GetValue())
			}
			if p.Addr != nil {
				r.peer, _, _ = net.SplitHostPort(p.Addr.String())
			}
		}()
		cold, err := burst(proxied, "cold", 20)
		Expect(err).NotTo(HaveOccurred())
		held := split(cold, map[string][]string{"resolver": resolverIPs, "other": podIPs("other")})
		GinkgoWriter.Printf("at zero, 20 concurrent calls answered in %s: %v\n", time.Since(start).Round(10*time.Millisecond), held)
		Expect(held).To(And(HaveKey("resolver"), HaveKey("other"), HaveLen(2)), "the target's share did not go to the resolver, or the other's did")
		var r streamResult
		Eventually(streamed).WithTimeout(90 * time.Second).Should(Receive(&r))
		Expect(r.err).NotTo(HaveOccurred(), "stream ended with %v", status.Code(r.err))
		Expect(r.msgs).To(Equal([]string{"n 0", "n 1", "n 2", "n 3", "n 4"}))
		Expect(r.peer).To(BeElementOf(resolverIPs), "the stream at zero did not go to a resolver")

		By("once in Serve mode, istiod sends the same channel's calls straight to the pods")
		Eventually(func() v1alpha1.Mode { return a.status().Mode }).WithTimeout(time.Minute).Should(Equal(v1alpha1.ModeServe))
		Eventually(servedBy(proxied)).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).
			Should(And(HaveKey("shop"), HaveKey("other"), HaveLen(2)))
		seen := a.counts()
		for id, addr := range cold {
			if slices.Contains(resolverIPs, addr) {
				Expect(seen).To(HaveKeyWithValue(id, 1), "held call %s was not executed exactly once by the target", id)
			} else {
				Expect(seen).NotTo(HaveKey(id), "call %s for the other Service reached the target", id)
			}
		}
		GinkgoWriter.Printf("proxyless gRPC scenario took %s\n", time.Since(begin).Round(100*time.Millisecond))
	}, SpecTimeout(4*time.Minute))
})
