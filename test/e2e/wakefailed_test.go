//go:build e2e

package e2e

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

var _ = Describe("A wake that never becomes ready", Label("wake-failed"), func() {
	// Small enough for a short spec: the CRD's smallest wakeTimeout, a hold shorter than it.
	const cooldown = 5
	const holdTimeout, wakeTimeout = 5 * time.Second, 10 * time.Second

	It("answers 504, says WakeFailed with the pods' reason and a Warning event, and goes back to zero after the cooldown", func() {
		begin := time.Now()
		prom.Active.Store(false)
		a := deployApp(cooldown)
		DeferCleanup(func() {
			// Ready again, so that the finalizer does not wait for it when the namespace goes.
			setReadiness(a, "/healthz", 0)
			removeApp(a)
		})
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, es)).To(Succeed())
		patch := client.MergeFrom(es.DeepCopy())
		es.Spec.WakeTimeout = &metav1.Duration{Duration: wakeTimeout}
		es.Spec.Queue = &v1alpha1.QueueSettings{HoldTimeout: &metav1.Duration{Duration: holdTimeout}}
		Expect(k8s.Patch(ctx, es, patch)).To(Succeed())
		a.toZero()
		// A readiness probe on a path the sample app answers 404: its pod runs, never ready.
		setReadiness(a, "/never-ready", 0)

		By("holding a request at zero until the hold timeout")
		sent := time.Now()
		r := getOnce(a, "wake-failed")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusGatewayTimeout), r.body)
		Expect(r.body).To(ContainSubstring("did not become ready within " + holdTimeout.String()))
		Expect(time.Since(sent)).To(BeNumerically(">=", holdTimeout))
		answered := time.Now()
		Expect(a.replicas()).To(Equal(int32(1)), "the request did not wake the target")

		By("saying WakeFailed, with the pods' reason, once the wake bound has passed")
		var failed metav1.Condition
		Eventually(func(g Gomega) {
			c := meta.FindStatusCondition(a.status().Conditions, v1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonWakeFailed))
			failed = *c
		}).WithTimeout(wakeTimeout + 15*time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("Ready=False/WakeFailed %s after the request: %s\n", time.Since(sent).Round(100*time.Millisecond), failed.Message)
		Expect(failed.Message).To(ContainSubstring("container app running but not ready (readiness probe failing)"))
		st := a.status()
		Expect(st.LastWakeFailureTime).NotTo(BeNil())
		Expect(st.LastWakeFailureTime.Sub(st.LastScaledUpTime.Time)).To(BeNumerically(">=", wakeTimeout), "failed before the bound")
		Eventually(func(g Gomega) {
			var list eventsv1.EventList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(a.ns))).To(Succeed())
			g.Expect(list.Items).To(ContainElement(And(
				HaveField("Type", corev1.EventTypeWarning),
				HaveField("Reason", v1alpha1.ReasonWakeFailed),
				HaveField("Regarding.Name", "shop"),
				HaveField("Note", ContainSubstring("readiness probe failing")))))
		}).WithTimeout(10 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

		By("going back to zero once the cooldown has passed since the last request, routes still on the resolver")
		Eventually(a.replicas).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(BeZero())
		Eventually(func(g Gomega) {
			st := a.status()
			g.Expect(st.LastScaledToZeroTime).NotTo(BeNil())
			g.Expect(st.LastScaledToZeroTime.Time).To(BeTemporally(">=", st.LastWakeFailureTime.Time))
			// Status times are whole seconds.
			g.Expect(st.LastScaledToZeroTime.Sub(answered)).To(BeNumerically(">=", cooldown*time.Second-time.Second),
				"back to zero before the cooldown after the last request")
			g.Expect(st.Mode).To(Equal(v1alpha1.ModeProxy))
			g.Expect(meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)).To(HaveField("Reason", v1alpha1.ReasonWakeFailed))
			routesIn(g, a, v1alpha1.ModeProxy)
		}).WithTimeout(10 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("back at zero %s after the 504\n", time.Since(answered).Round(100*time.Millisecond))

		By("waking again on the next request")
		done := make(chan answer, 1)
		go func() { done <- getOnce(a, "wake-failed-again") }()
		Eventually(a.replicas).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Equal(int32(1)))
		Expect((<-done).code).To(Equal(http.StatusGatewayTimeout))
		GinkgoWriter.Printf("wake-failed scenario took %s\n", time.Since(begin).Round(100*time.Millisecond))
	})
})
