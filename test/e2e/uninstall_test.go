//go:build e2e

package e2e

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// Uninstalling the chart runs its pre-delete hook, which deletes every ElastiService in the
// cluster. Specs that run before this one are done with theirs; the ones after find elasti
// reinstalled, as the suite installed it.
var _ = Describe("Chart uninstall", Label("uninstall"), func() {
	It("restores the replicas and the routes of a Service at zero in Proxy mode", func(sctx SpecContext) {
		begin := time.Now()
		prom.Active.Store(false)
		a := deployApp(5)
		DeferCleanup(func() { _ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}}) })
		a.toZero()
		host := "shop." + a.ns + ".svc.cluster.local"
		sidecar := func() (map[string][]xdsDest, error) { return xdsRoutes(sctx, "80", host, "-namespace", a.ns) }
		Eventually(sidecar).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(
			HaveEach(ConsistOf(HaveField("Cluster", proxyCluster(a.ns, 80)))))

		By("helm uninstall, under load")
		DeferCleanup(installElasti)
		stop := steadyLoad(a, "uninstall", 25*time.Millisecond, 6*time.Minute)
		start := time.Now()
		helm("uninstall", "elasti", "--namespace", "elasti-system", "--wait", "--timeout", "5m")
		GinkgoWriter.Printf("helm uninstall, with its pre-delete hook, took %s\n", time.Since(start).Round(100*time.Millisecond))
		// kube-proxy follows the resolver's removal a moment later: callers must not see it.
		time.Sleep(10 * time.Second)
		expectAllOK(a, "callers across helm uninstall", stop())

		By("the ElastiService is gone, the target back at minTargetReplicas, the routes restored")
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, &v1alpha1.ElastiService{}))).
			To(BeTrue(), "the hook did not delete the ElastiService, or its finalizer did not run")
		Expect(a.replicas()).To(Equal(int32(1)))
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, vs)).To(Succeed())
		Expect(vs.Spec.Http).To(HaveLen(1))
		Expect(vs.Spec.Http[0].Route).To(HaveLen(1))
		Expect(vs.Spec.Http[0].Route[0].GetDestination()).To(And(HaveField("Host", "shop"), HaveField("Subset", "v1"),
			HaveField("Port.Number", uint32(80))))
		Expect(vs.Spec.Http[0].Route[0].GetHeaders()).To(BeNil())
		Expect(vs.Annotations).NotTo(HaveKey(v1alpha1.AnnotationOriginalRoutes))
		var slices discoveryv1.EndpointSliceList
		Expect(k8s.List(ctx, &slices, client.InNamespace(a.ns), client.MatchingLabels{discoveryv1.LabelManagedBy: "controller.elasti.dev"})).To(Succeed())
		Expect(slices.Items).To(BeEmpty(), "elasti's EndpointSlice still sends the Service's callers to the resolver")
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop-elasti-private"}, &corev1.Service{}))).To(BeTrue())
		Eventually(sidecar).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(
			HaveKeyWithValue("", ConsistOf(And(HaveField("Cluster", "outbound|80|v1|"+host), HaveField("Weight", uint32(100)),
				HaveField("Headers", BeEmpty())))))
		probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		Eventually(func() (int, error) {
			req, _ := http.NewRequest(http.MethodGet, a.url+"/echo", nil)
			resp, err := a.do(probe, req)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Equal(http.StatusOK))

		By("elasti is gone, and so is the hook's Job with its identity")
		for _, o := range []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "elasti-system", Name: "elasti-controller"}},
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "elasti-system", Name: "elasti-resolver"}},
			&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "elasti-system", Name: "elasti-controller-uninstall"}},
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "elasti-controller-uninstall"}},
		} {
			Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(o), o))).To(BeTrue(), "%T %s is still there", o, o.GetName())
		}
		GinkgoWriter.Printf("uninstall scenario took %s before the reinstall\n", time.Since(begin).Round(100*time.Millisecond))
	}, SpecTimeout(8*time.Minute))
})
