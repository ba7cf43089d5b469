//go:build envtest

package reconciler_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/internal/names"
)

var _ = Describe("The replay routes", func() {
	BeforeEach(func() { setResolverReady(true) })

	// replay returns the replay DestinationRule's subsets as name=version, its SNI (the tests'
	// mark of a traffic policy), and the replay VirtualService's route names.
	replay := func(g Gomega, ns string) (subsets []string, sni string, routes []string) {
		dr := &networkingv1.DestinationRule{}
		g.Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: ns, Name: names.PrivateDestinationRule("target")}, dr)).To(Succeed())
		for _, s := range dr.Spec.GetSubsets() {
			subsets = append(subsets, s.GetName()+"="+s.GetLabels()["version"])
		}
		vs := &networkingv1.VirtualService{}
		g.Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: ns, Name: names.PrivateVirtualService("target")}, vs)).To(Succeed())
		for _, r := range vs.Spec.GetHttp() {
			routes = append(routes, r.GetName())
		}
		return subsets, dr.Spec.GetTrafficPolicy().GetTls().GetSni(), routes
	}

	It("merges the subsets of every DestinationRule of the host, and uses a wildcard host when no exact one is left", func() {
		// The replay routes are made when Proxy mode is first wanted, and kept from then on.
		f := newFixture(1)
		toZero(f)
		By("splitting the subsets over two rules: v1 in the fixture's, v2 and a traffic policy in a newer one")
		dr := &networkingv1.DestinationRule{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: "target"}, dr)).To(Succeed())
		dr.Spec.Subsets = dr.Spec.Subsets[:1]
		Expect(k8s.Update(testCtx, dr)).To(Succeed())
		canary := &networkingv1.DestinationRule{ObjectMeta: objMeta("target-canary", f.ns)}
		canary.Spec.Host = "target." + f.ns + ".svc.cluster.local"
		canary.Spec.Subsets = []*apinetworking.Subset{{Name: "v2", Labels: map[string]string{"version": "canary"}}}
		canary.Spec.TrafficPolicy = &apinetworking.TrafficPolicy{Tls: &apinetworking.ClientTLSSettings{
			Mode: apinetworking.ClientTLSSettings_ISTIO_MUTUAL, Sni: "canary"}}
		Expect(k8s.Create(testCtx, canary)).To(Succeed())

		// The fixture's VirtualService sends 90 to v1 and 10 to v2: both must be replayable.
		Eventually(func(g Gomega) {
			subsets, sni, routes := replay(g, f.ns)
			g.Expect(subsets).To(Equal([]string{"v1=v1", "v2=canary"}))
			g.Expect(sni).To(Equal("canary"), "the first traffic policy of the merged rules")
			g.Expect(routes).To(Equal([]string{"subset-v1", "subset-v2", "any"}))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())

		By("replacing both with a rule for every host of the namespace")
		Expect(k8s.Delete(testCtx, dr)).To(Succeed())
		Expect(k8s.Delete(testCtx, canary)).To(Succeed())
		Eventually(func() bool {
			err := k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.PrivateDestinationRule("target")}, &networkingv1.DestinationRule{})
			return apierrors.IsNotFound(err)
		}).WithTimeout(wait).WithPolling(tick).Should(BeTrue(), "the replay rule outlived the last rule of the host")
		wildcard := &networkingv1.DestinationRule{ObjectMeta: objMeta("namespace-wide", f.ns)}
		wildcard.Spec.Host = "*." + f.ns + ".svc.cluster.local"
		wildcard.Spec.Subsets = []*apinetworking.Subset{{Name: "v3", Labels: map[string]string{"version": "wide"}}}
		Expect(k8s.Create(testCtx, wildcard)).To(Succeed())
		Eventually(func(g Gomega) {
			subsets, sni, routes := replay(g, f.ns)
			g.Expect(subsets).To(Equal([]string{"v3=wide"}))
			g.Expect(sni).To(BeEmpty())
			g.Expect(routes).To(Equal([]string{"subset-v3", "any"}))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
	})

	It("exports the private Service and the replay routes to the resolver's namespace, and puts that back", func() {
		f := newFixture(1)
		toZero(f)
		want := []string{".", resolverNS}
		privateKey := client.ObjectKey{Namespace: f.ns, Name: names.PrivateService("target")}
		Eventually(func(g Gomega) {
			dr := &networkingv1.DestinationRule{}
			g.Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.PrivateDestinationRule("target")}, dr)).To(Succeed())
			g.Expect(dr.Spec.GetExportTo()).To(Equal(want))
			vs := &networkingv1.VirtualService{}
			g.Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.PrivateVirtualService("target")}, vs)).To(Succeed())
			g.Expect(vs.Spec.GetExportTo()).To(Equal(want))
			private := &corev1.Service{}
			g.Expect(k8s.Get(testCtx, privateKey, private)).To(Succeed())
			g.Expect(private.Annotations).To(HaveKeyWithValue("networking.istio.io/exportTo", ".,"+resolverNS))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())

		private := &corev1.Service{}
		Expect(k8s.Get(testCtx, privateKey, private)).To(Succeed())
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"networking.istio.io/exportTo":"."}}}`))
		Expect(k8s.Patch(testCtx, private, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			got := &corev1.Service{}
			g.Expect(k8s.Get(testCtx, privateKey, got)).To(Succeed())
			g.Expect(got.Annotations).To(HaveKeyWithValue("networking.istio.io/exportTo", ".,"+resolverNS))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
	})
})
