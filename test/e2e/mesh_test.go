//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/types/known/wrapperspb"
	apinetworking "istio.io/api/networking/v1alpha3"
	apisecurity "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// The printed forms of xdsprobe's -kind cds, eds and lds (test/tools/istio/xdsprobe).
type (
	xdsCluster struct {
		Name                   string
		Upstream               string
		TransportSocketMatches []string
		Ejects                 bool
	}
	xdsLoadAssignment struct {
		Cluster   string
		Endpoints []struct{ Address, Health, TLSMode, Workload string }
	}
	xdsListener struct {
		Name   string
		Chains []struct{ Name, Match, HTTPRoute, TCPCluster string }
	}
)

// probeXDS runs xdsprobe with args and decodes its JSON into a T.
func probeXDS[T any](ctx context.Context, args ...string) (T, error) {
	var out T
	raw, err := exec.CommandContext(ctx, "xdsprobe", append([]string{"-timeout", "10s"}, args...)...).Output()
	if err != nil {
		return out, fmt.Errorf("xdsprobe %v: %w", args, err)
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("xdsprobe %v said %s: %w", args, raw, err)
	}
	return out, nil
}

// asPod gives xdsprobe the identity of a real pod, whose inbound listeners istiod builds from the
// Services that select it.
func asPod(p corev1.Pod) []string {
	var labels []string
	for k, v := range p.Labels {
		labels = append(labels, k+"="+v)
	}
	return []string{"-namespace", p.Namespace, "-pod", p.Name, "-ip", p.Status.PodIP, "-labels", strings.Join(labels, ",")}
}

// resolverWorkload is how istiod names a resolver pod in an endpoint's metadata: found by its
// Pod reference, with its namespace and canonical name.
const resolverWorkload = "elasti-resolver;elasti-system;elasti-resolver;"

var _ = Describe("Istio as it runs", Label("istio", "mesh"), func() {
	It("gives callers mTLS to the resolver under STRICT, keeps it in a Sidecar's scope, and keeps HTTP/2 for gRPC", func(sctx SpecContext) {
		begin := time.Now()
		prom.Active.Store(false)
		a := deployApp(5)
		DeferCleanup(func() { _ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}}) })
		fqdn := func(svc string) string { return svc + "." + a.ns + ".svc.cluster.local" }

		By("a gRPC route, STRICT mTLS mesh-wide, a Sidecar scoping the namespace to its own Services on ports 80 and 9090, and a root-namespace default Sidecar")
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, vs)).To(Succeed())
		vs.Spec.Http = append([]*apinetworking.HTTPRoute{{
			Name:  "grpc",
			Match: []*apinetworking.HTTPMatchRequest{{Port: 9090}},
			Route: []*apinetworking.HTTPRouteDestination{{Destination: &apinetworking.Destination{Host: "shop", Port: &apinetworking.PortSelector{Number: 9090}}}},
		}}, vs.Spec.Http...)
		Expect(k8s.Update(ctx, vs)).To(Succeed())
		strict := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "istio-system"}}
		strict.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_STRICT}
		scoped := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: a.ns}}
		scoped.Spec.Egress = []*apinetworking.IstioEgressListener{
			{Port: &apinetworking.SidecarPort{Number: 80, Protocol: "HTTP", Name: "http"}, Hosts: []string{"./*"}},
			{Port: &apinetworking.SidecarPort{Number: 9090, Protocol: "GRPC", Name: "grpc"}, Hosts: []string{"./*"}},
		}
		root := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "istio-system"}}
		root.Spec.Egress = []*apinetworking.IstioEgressListener{{Hosts: []string{"./*", "istio-system/*"}}}
		// A mesh-wide DestinationRule that ejects an endpoint after one 5xx, and a Service it
		// covers, to show that it applies where no exact host overrides it.
		ejecting := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "eject-fast", Namespace: "istio-system"}}
		ejecting.Spec.Host = "*.svc.cluster.local"
		ejecting.Spec.TrafficPolicy = &apinetworking.TrafficPolicy{OutlierDetection: &apinetworking.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(1)}}
		plain := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: a.ns}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "plain"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
		for _, o := range []client.Object{strict, scoped, root, ejecting, plain} {
			Expect(k8s.Create(ctx, o)).To(Succeed())
			DeferCleanup(func() { _ = k8s.Delete(ctx, o) })
		}

		a.toZero()
		caller := []string{"-namespace", a.ns}
		var resolvers corev1.PodList
		Expect(k8s.List(ctx, &resolvers, client.InNamespace("elasti-system"), client.MatchingLabels{"app": "elasti-resolver"})).To(Succeed())
		Expect(resolvers.Items).NotTo(BeEmpty())

		By("routes: the caller's route for each port names the proxy Service on that port")
		Eventually(func() (map[string][]xdsDest, error) { return xdsRoutes(sctx, "80", fqdn("shop"), caller...) }).
			WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(HaveKeyWithValue("", ConsistOf(toResolver(100, a.ns+"/shop", "v1"))))
		Eventually(func() (map[string][]xdsDest, error) { return xdsRoutes(sctx, "9090", fqdn("shop"), caller...) }).
			WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(
			HaveKeyWithValue("grpc", ConsistOf(HaveField("Cluster", proxyCluster(a.ns, 9090)))))

		By("clusters: the Sidecar keeps both proxy clusters in the caller's scope, with automatic mTLS, no outlier ejection, and the HTTP version of the target's own cluster: HTTP/1.1 on the HTTP port, HTTP/2 on the gRPC port")
		Eventually(func(g Gomega) {
			cs, err := probeXDS[[]xdsCluster](sctx, append(caller, "-kind", "cds", "-match", "."+a.ns+".svc")...)
			g.Expect(err).NotTo(HaveOccurred())
			upstream := map[string]string{}
			for _, c := range cs {
				upstream[c.Name] = c.Upstream
			}
			g.Expect(cs).To(ContainElements(
				And(HaveField("Name", proxyCluster(a.ns, 80)), HaveField("TransportSocketMatches", ContainElement("tlsMode-istio"))),
				And(HaveField("Name", proxyCluster(a.ns, 9090)), HaveField("TransportSocketMatches", ContainElement("tlsMode-istio"))),
			))
			// The mesh-wide rule ejects from a cluster it covers, never from the proxy Service's.
			g.Expect(cs).To(ContainElement(And(HaveField("Name", "outbound|80||"+fqdn("plain")), HaveField("Ejects", true))))
			g.Expect(cs).To(ContainElement(And(HaveField("Name", proxyCluster(a.ns, 80)), HaveField("Ejects", false))))
			// No options is Envoy's default, HTTP/1.1.
			g.Expect(upstream[proxyCluster(a.ns, 80)]).To(And(Equal(upstream["outbound|80||"+fqdn("shop")]), BeElementOf("", "http1")))
			g.Expect(upstream[proxyCluster(a.ns, 9090)]).To(And(Equal(upstream["outbound|9090||"+fqdn("shop")]), Equal("http2")))
		}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

		By("endpoints: every path to the resolver lists its pods as Istio workloads with tlsMode istio, so callers send mTLS with the resolver's identity")
		onResolver := HaveEach(And(HaveField("TLSMode", "istio"), HaveField("Workload", HavePrefix(resolverWorkload))))
		for _, cluster := range []string{
			"outbound|80||" + fqdn("shop"), "outbound|9090||" + fqdn("shop"), // callers without a VirtualService
			proxyCluster(a.ns, 80), proxyCluster(a.ns, 9090), // callers whose route elasti rewrote
		} {
			Eventually(func() ([]xdsLoadAssignment, error) {
				return probeXDS[[]xdsLoadAssignment](sctx, append(caller, "-kind", "eds", "-names", cluster)...)
			}).
				WithTimeout(30*time.Second).WithPolling(500*time.Millisecond).Should(ConsistOf(And(
				HaveField("Cluster", cluster), HaveField("Endpoints", And(HaveLen(len(resolvers.Items)), onResolver)))), "cluster %s", cluster)
		}

		res := asPod(resolvers.Items[0])
		By("the resolver's own proxy: STRICT leaves no plain-text chain on its port, it keeps the caller's HTTP version, and the root Sidecar hides no private Service from it")
		Eventually(func(g Gomega) {
			ls, err := probeXDS[[]xdsListener](sctx, append(res, "-kind", "lds", "-match", "virtualInbound")...)
			g.Expect(err).NotTo(HaveOccurred())
			n := 0
			for _, l := range ls {
				for _, c := range l.Chains {
					if strings.Contains(c.Match, "port 8012 ") {
						n++
						g.Expect(c.Match).To(ContainSubstring("transport tls"), "chain %+v", c)
					}
				}
			}
			g.Expect(n).To(BeNumerically(">", 0), "no inbound chain for port 8012")
		}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
		Eventually(func() ([]xdsCluster, error) {
			return probeXDS[[]xdsCluster](sctx, append(res, "-kind", "cds", "-match", "inbound|8012|")...)
		}).
			WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(ConsistOf(HaveField("Upstream", "downstream")))
		Eventually(func() (map[string]string, error) {
			cs, err := probeXDS[[]xdsCluster](sctx, append(res, "-kind", "cds", "-match", "shop-elasti-private."+a.ns)...)
			upstream := map[string]string{}
			for _, c := range cs {
				upstream[c.Name] = c.Upstream
			}
			return upstream, err
		}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(And(
			HaveKey("outbound|80||"+fqdn("shop-elasti-private")), HaveKey("outbound|80|v1|"+fqdn("shop-elasti-private")),
			// The replay of a gRPC call leaves the resolver's sidecar as HTTP/2.
			HaveKeyWithValue("outbound|9090||"+fqdn("shop-elasti-private"), "http2")))

		By("a request wakes the target; in Serve mode the Service's endpoints are its own pods again")
		Expect(a.get("/echo")).To(Succeed())
		Eventually(func() v1alpha1.Mode { return a.status().Mode }).WithTimeout(time.Minute).Should(Equal(v1alpha1.ModeServe))
		Eventually(func() ([]xdsLoadAssignment, error) {
			return probeXDS[[]xdsLoadAssignment](sctx, append(caller, "-kind", "eds", "-names", "outbound|80||"+fqdn("shop"))...)
		}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(ConsistOf(HaveField("Endpoints",
			And(Not(BeEmpty()), HaveEach(HaveField("Workload", HavePrefix("shop;"+a.ns+";")))))))
		GinkgoWriter.Printf("mesh scenario took %s\n", time.Since(begin).Round(100*time.Millisecond))
	}, SpecTimeout(4*time.Minute))
})
