//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	gtypes "github.com/onsi/gomega/types"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// proxyCluster is the Envoy cluster of the proxy Service of Service shop in namespace ns on
// port, the one rewritten routes send to: its endpoints are the resolver pods.
func proxyCluster(ns string, port int) string {
	return fmt.Sprintf("outbound|%d||shop-elasti-proxy.%s.svc.cluster.local", port, ns)
}

// xdsDest is one weighted destination of a route as istiod serves it, with the request headers
// Envoy adds when a request takes it (the route's own headers for a lone destination).
type xdsDest struct {
	Cluster string
	Weight  uint32
	Headers map[string]string
	// Remove lists the request headers the proxy removes before it adds Headers.
	Remove []string
}

// xdsRoutes asks istiod, with xdsprobe, for the routes of the virtual host with domain host in
// the RDS route configuration named route, as a proxy with probeArgs (-namespace, -type,
// -labels) would, and returns them by route name.
func xdsRoutes(ctx context.Context, route, host string, probeArgs ...string) (map[string][]xdsDest, error) {
	args := append([]string{"-route", route, "-host", host, "-timeout", "10s"}, probeArgs...)
	out, err := exec.CommandContext(ctx, "xdsprobe", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("xdsprobe %v: %w", args, err)
	}
	var rcs []struct {
		VirtualHosts []struct {
			Routes []struct {
				Name     string
				Headers  map[string]string
				Remove   []string
				Clusters []struct {
					Name    string
					Weight  uint32
					Headers map[string]string
					Remove  []string
				}
			}
		}
	}
	if err := json.Unmarshal(out, &rcs); err != nil {
		return nil, fmt.Errorf("xdsprobe said %s: %w", out, err)
	}
	got := map[string][]xdsDest{}
	for _, rc := range rcs {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				for _, c := range r.Clusters {
					h := maps.Clone(r.Headers)
					if h == nil {
						h = map[string]string{}
					}
					maps.Copy(h, c.Headers)
					got[r.Name] = append(got[r.Name], xdsDest{Cluster: c.Name, Weight: c.Weight, Headers: h,
						Remove: append(slices.Clone(r.Remove), c.Remove...)})
				}
			}
		}
	}
	return got, nil
}

// toResolver matches a destination rewritten to the resolver for ElastiService target, with the
// subset and port of the original destination in the headers, signed, and the weight kept. A
// header the route does not set is removed first, so that a client's copy cannot spoil the
// signature.
func toResolver(weight uint32, target, subset string) gtypes.GomegaMatcher {
	headers := And(HaveKeyWithValue(v1alpha1.HeaderElastiService, target), HaveKeyWithValue(v1alpha1.HeaderPort, "80"),
		HaveKey(v1alpha1.HeaderRestoreKey), HaveKeyWithValue(v1alpha1.HeaderSignature, Not(BeEmpty())))
	remove := Not(ContainElement(v1alpha1.HeaderSubset))
	if subset != "" {
		headers = And(headers, HaveKeyWithValue(v1alpha1.HeaderSubset, subset))
	} else {
		headers = And(headers, Not(HaveKey(v1alpha1.HeaderSubset)))
		remove = ContainElement(v1alpha1.HeaderSubset)
	}
	ns, _, _ := strings.Cut(target, "/")
	return And(HaveField("Cluster", proxyCluster(ns, 80)), HaveField("Weight", weight), HaveField("Headers", headers),
		HaveField("Remove", remove))
}

var _ = Describe("Istio routes over xDS", Label("istio"), func() {
	It("points weighted subset routes and a gateway's route in another namespace at the resolver in Proxy mode, and back in Serve mode", func(sctx SpecContext) {
		begin := time.Now()
		prom.Active.Store(false)
		a := deployApp(3600) // Serve until the cooldown is shortened below
		gwNS := a.ns + "-gw"
		DeferCleanup(func() {
			for _, ns := range []string{a.ns, gwNS} {
				_ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			}
		})
		fqdn := func(svc string) string { return svc + "." + a.ns + ".svc.cluster.local" }
		port80 := &apinetworking.PortSelector{Number: 80}

		By("routing 80/10 to subsets v1 and v2 and 10 to an unrelated Service, a header match to that Service alone, and a gateway in another namespace")
		Expect(k8s.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: a.ns},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "other"}, Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		})).To(Succeed())
		dr := &networkingv1.DestinationRule{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, dr)).To(Succeed())
		dr.Spec.Subsets = []*apinetworking.Subset{
			{Name: "v1", Labels: map[string]string{"version": "v1"}},
			{Name: "v2", Labels: map[string]string{"version": "v2"}},
		}
		Expect(k8s.Update(ctx, dr)).To(Succeed())
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, vs)).To(Succeed())
		vs.Spec.Http = []*apinetworking.HTTPRoute{
			{
				Name:  "by-header",
				Match: []*apinetworking.HTTPMatchRequest{{Headers: map[string]*apinetworking.StringMatch{"x-route": {MatchType: &apinetworking.StringMatch_Exact{Exact: "other"}}}}},
				Route: []*apinetworking.HTTPRouteDestination{{Destination: &apinetworking.Destination{Host: "other", Port: port80}}},
			},
			{
				Name: "split",
				Route: []*apinetworking.HTTPRouteDestination{
					{Destination: &apinetworking.Destination{Host: "shop", Subset: "v1", Port: port80}, Weight: 80},
					{Destination: &apinetworking.Destination{Host: "shop", Subset: "v2", Port: port80}, Weight: 10},
					{Destination: &apinetworking.Destination{Host: "other", Port: port80}, Weight: 10},
				},
			},
		}
		Expect(k8s.Update(ctx, vs)).To(Succeed())

		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: gwNS}})).To(Succeed())
		// A selector of its own, so that no other Gateway in the cluster serves this proxy.
		gwLabels := map[string]string{"istio": "ingress-" + a.ns}
		gw := &networkingv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: gwNS}}
		gw.Spec.Selector = gwLabels
		gw.Spec.Servers = []*apinetworking.Server{{Port: &apinetworking.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{"shop.example.com"}}}
		Expect(k8s.Create(ctx, gw)).To(Succeed())
		pub := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "shop-public", Namespace: gwNS}}
		pub.Spec.Hosts = []string{"shop.example.com"}
		pub.Spec.Gateways = []string{gwNS + "/gw"}
		pub.Spec.Http = []*apinetworking.HTTPRoute{{Name: "public", Route: []*apinetworking.HTTPRouteDestination{
			{Destination: &apinetworking.Destination{Host: fqdn("shop"), Port: port80}}}}}
		Expect(k8s.Create(ctx, pub)).To(Succeed())

		// A sidecar in the target's namespace, and the gateway's proxy, which Istio names
		// its HTTP routes after the Gateway server's port.
		sidecar := func() (map[string][]xdsDest, error) { return xdsRoutes(sctx, "80", fqdn("shop"), "-namespace", a.ns) }
		gateway := func() (map[string][]xdsDest, error) {
			return xdsRoutes(sctx, "http.80", "shop.example.com", "-type", "router", "-namespace", gwNS,
				"-labels", "istio="+gwLabels["istio"])
		}
		noHeaders := HaveField("Headers", BeEmpty())
		serveMesh := And(
			HaveKeyWithValue("by-header", ConsistOf(And(HaveField("Cluster", "outbound|80||"+fqdn("other")), HaveField("Weight", uint32(100)), noHeaders))),
			HaveKeyWithValue("split", ConsistOf(
				And(HaveField("Cluster", "outbound|80|v1|"+fqdn("shop")), HaveField("Weight", uint32(80)), noHeaders),
				And(HaveField("Cluster", "outbound|80|v2|"+fqdn("shop")), HaveField("Weight", uint32(10)), noHeaders),
				And(HaveField("Cluster", "outbound|80||"+fqdn("other")), HaveField("Weight", uint32(10)), noHeaders),
			)))
		serveGateway := HaveKeyWithValue("public", ConsistOf(And(HaveField("Cluster", "outbound|80||"+fqdn("shop")), noHeaders)))

		By("in Serve mode istiod routes to the subsets and to the Service")
		start := time.Now()
		Eventually(sidecar).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(serveMesh)
		Eventually(gateway).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(serveGateway)
		GinkgoWriter.Printf("Serve routes seen over xDS %s after the VirtualServices were written\n", time.Since(start).Round(100*time.Millisecond))
		before, err := sidecar()
		Expect(err).NotTo(HaveOccurred())

		By("in Proxy mode the target's destinations go to the resolver, weights kept, the unrelated ones unchanged")
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, es)).To(Succeed())
		es.Spec.CooldownPeriod = 5
		Expect(k8s.Update(ctx, es)).To(Succeed())
		a.toZero()
		start = time.Now()
		target := a.ns + "/shop"
		Eventually(sidecar).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(And(
			HaveKeyWithValue("by-header", ConsistOf(And(HaveField("Cluster", "outbound|80||"+fqdn("other")), HaveField("Weight", uint32(100)), noHeaders))),
			HaveKeyWithValue("split", ConsistOf(
				toResolver(80, target, "v1"),
				toResolver(10, target, "v2"),
				And(HaveField("Cluster", "outbound|80||"+fqdn("other")), HaveField("Weight", uint32(10)), noHeaders),
			))))
		Eventually(gateway).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(
			HaveKeyWithValue("public", ConsistOf(toResolver(100, target, ""))))
		GinkgoWriter.Printf("Proxy routes seen over xDS %s after the target reached zero\n", time.Since(start).Round(100*time.Millisecond))
		// The gateway's proxy, too, gets the proxy Service's cluster and its resolver endpoints
		// as mesh workloads, so it sends them mTLS.
		asGateway := []string{"-type", "router", "-namespace", gwNS, "-labels", "istio=" + gwLabels["istio"]}
		Eventually(func() ([]xdsCluster, error) {
			return probeXDS[[]xdsCluster](sctx, append(asGateway, "-kind", "cds", "-match", "shop-elasti-proxy")...)
		}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(ContainElement(
			And(HaveField("Name", proxyCluster(a.ns, 80)), HaveField("TransportSocketMatches", ContainElement("tlsMode-istio")))))
		Eventually(func() ([]xdsLoadAssignment, error) {
			return probeXDS[[]xdsLoadAssignment](sctx, append(asGateway, "-kind", "eds", "-names", proxyCluster(a.ns, 80))...)
		}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(ConsistOf(HaveField("Endpoints",
			And(Not(BeEmpty()), HaveEach(And(HaveField("TLSMode", "istio"), HaveField("Workload", HavePrefix(resolverWorkload))))))))
		if proxied, err := sidecar(); err == nil {
			for _, d := range proxied["split"] {
				GinkgoWriter.Printf("  split: %s weight %d headers %v\n", d.Cluster, d.Weight, d.Headers)
			}
		}

		By("a request wakes the target, and Serve mode gives back the original routes")
		Expect(a.get("/echo")).To(Succeed())
		Eventually(func() v1alpha1.Mode { return a.status().Mode }).WithTimeout(time.Minute).Should(Equal(v1alpha1.ModeServe))
		start = time.Now()
		Eventually(sidecar).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Equal(before))
		Eventually(gateway).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(serveGateway)
		GinkgoWriter.Printf("Serve routes back over xDS %s after the switch; Istio scenario took %s\n",
			time.Since(start).Round(100*time.Millisecond), time.Since(begin).Round(100*time.Millisecond))
	}, SpecTimeout(4*time.Minute))
})
