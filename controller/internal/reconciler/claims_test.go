//go:build envtest

package reconciler_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
)

// another creates a second ElastiService, name, with f's spec: the same Service and target.
func (f *fixture) another(name string) *v1alpha1.ElastiService {
	GinkgoHelper()
	es := &v1alpha1.ElastiService{ObjectMeta: objMeta(name, f.ns), Spec: *f.es.Spec.DeepCopy()}
	Expect(k8s.Create(testCtx, es)).To(Succeed())
	return es
}

// readyOf returns es's Ready condition as stored, or an empty one.
func readyOf(g Gomega, es *v1alpha1.ElastiService) (metav1.Condition, v1alpha1.ElastiServiceStatus) {
	got := &v1alpha1.ElastiService{}
	g.Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(es), got)).To(Succeed())
	if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return *c, got.Status
	}
	return metav1.Condition{}, got.Status
}

// controlledBy returns the UID of the controller of the object key names, of kind o.
func controlledBy(g Gomega, o client.Object) string {
	g.Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(o), o)).To(Succeed())
	if ref := metav1.GetControllerOf(o); ref != nil {
		return string(ref.UID)
	}
	return ""
}

var _ = Describe("Two ElastiServices for one Service", func() {
	BeforeEach(resetFakes)
	AfterEach(resetFakes)

	It("refuses the later one, which does nothing, and hands the Service over when the first goes", func() {
		f := newFixture(1)
		toZero(f)
		first := &v1alpha1.ElastiService{}
		Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), first)).To(Succeed())
		private := &corev1.Service{ObjectMeta: objMeta(names.PrivateService("target"), f.ns)}
		elastis := []client.Object{
			private,
			&discoveryv1.EndpointSlice{ObjectMeta: objMeta(names.ResolverSlice("target", "ipv4"), f.ns)},
			&networkingv1.DestinationRule{ObjectMeta: objMeta(names.PrivateDestinationRule("target"), f.ns)},
			&networkingv1.VirtualService{ObjectMeta: objMeta(names.PrivateVirtualService("target"), f.ns)},
		}
		// The first keeps working: at zero, every route on the resolver in its name, and every
		// object its own.
		firstAtWork := func(g Gomega) {
			g.Expect(f.replicas()).To(BeZero())
			vs := f.virtualService()
			g.Expect(pointsAtResolver(vs)).To(BeTrue())
			for _, d := range vs.Spec.Http[0].Route {
				g.Expect(d.GetHeaders().GetRequest().GetSet()).To(HaveKeyWithValue(v1alpha1.HeaderElastiService, f.ns+"/target-es"))
			}
			for _, o := range elastis {
				g.Expect(controlledBy(g, o)).To(Equal(string(first.UID)), "%T %s", o, o.GetName())
			}
			_, st := readyOf(g, first)
			g.Expect(st.Mode).To(Equal(v1alpha1.ModeProxy))
		}

		second := f.another("target-es-2")
		By("refusing the second with a condition that names the first")
		Eventually(func(g Gomega) {
			c, _ := readyOf(g, second)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonServiceClaimed))
			g.Expect(c.Message).To(ContainSubstring("ElastiService target-es already claims Service target"))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
		By("the second doing nothing: no mode, no routes, no wake, while the first works on")
		// Its creation is activity: an ElastiService that acted would wake the target.
		Consistently(func(g Gomega) {
			firstAtWork(g)
			_, st := readyOf(g, second)
			g.Expect(st.Mode).To(BeEmpty())
			g.Expect(st.Routes).To(BeEmpty())
		}).WithTimeout(2 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		By("deleting the second without touching the first's target, routes or objects")
		Expect(k8s.Delete(testCtx, second)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(testCtx, client.ObjectKeyFromObject(second), &v1alpha1.ElastiService{}))
		}).WithTimeout(wait).WithPolling(tick).Should(BeTrue())
		Consistently(firstAtWork).WithTimeout(2 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		By("handing the Service to a second once the first is gone")
		second = f.another("target-es-2")
		Eventually(func(g Gomega) {
			c, _ := readyOf(g, second)
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonServiceClaimed))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
		Expect(k8s.Delete(testCtx, f.es)).To(Succeed())
		// The first's finalizer wakes the target and restores the routes once it is ready.
		Eventually(f.replicas).WithTimeout(wait).Should(Equal(int32(2)))
		setTargetReady(f.ns, 2)
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), &v1alpha1.ElastiService{}))
		}).WithTimeout(wait).WithPolling(tick).Should(BeTrue())
		Eventually(func(g Gomega) {
			c, _ := readyOf(g, second)
			g.Expect(c.Reason).NotTo(Equal(v1alpha1.ReasonServiceClaimed))
			g.Expect(controlledBy(g, private)).To(Equal(string(second.UID)))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
		By("and the second scaling it to zero in its own name")
		Eventually(f.replicas).WithTimeout(wait).Should(BeZero())
		for _, d := range f.virtualService().Spec.Http[0].Route {
			Expect(d.GetHeaders().GetRequest().GetSet()).To(HaveKeyWithValue(v1alpha1.HeaderElastiService, f.ns+"/target-es-2"))
		}
	})
})
