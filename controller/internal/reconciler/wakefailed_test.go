//go:build envtest

package reconciler_test

import (
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/decide"
	"github.com/elasti-dev/elasti/internal/testsupport/workload"
)

// The CRD's smallest wakeTimeout: the spec waits it out once.
const minWakeTimeout = 10 * time.Second

var _ = Describe("A wake that never becomes ready", func() {
	BeforeEach(resetFakes)
	AfterEach(func() { prom.Active.Store(false) })

	readyCondition := func(f *fixture) metav1.Condition {
		c := meta.FindStatusCondition(f.status().Conditions, v1alpha1.ConditionReady)
		if c == nil {
			return metav1.Condition{}
		}
		return *c
	}

	It("says WakeFailed with the pods' reason, goes back to zero once nothing is held, and wakes again", func() {
		const cooldown = 2
		f := newFixture(cooldown)
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), es)).To(Succeed())
		patch := client.MergeFrom(es.DeepCopy())
		es.Spec.WakeTimeout = &metav1.Duration{Duration: minWakeTimeout}
		Expect(k8s.Patch(testCtx, es, patch)).To(Succeed())
		toZero(f)

		// envtest runs no pods, so a woken target never has a ready endpoint: the broken
		// target. The pod that the kubelet would report is written by hand.
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "target-1", Namespace: f.ns, Labels: map[string]string{"app": "target"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: workload.Image}}},
		}
		Expect(k8s.Create(testCtx, pod)).To(Succeed())
		pod.Status.Phase = corev1.PodRunning
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Image: workload.Image, RestartCount: 3,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}
		Expect(k8s.Status().Update(testCtx, pod)).To(Succeed())

		By("holding a request: the resolver repeats its held signal while it holds one")
		var lastSignal atomic.Int64
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(stopped)
			for {
				lastSignal.Store(time.Now().UnixNano())
				signal(f.ns, "target-es")
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
			}
		}()
		stopSignals := func() {
			select {
			case <-stop:
			default:
				close(stop)
			}
			<-stopped
		}
		DeferCleanup(stopSignals)
		Eventually(f.replicas).WithTimeout(5 * time.Second).WithPolling(10 * time.Millisecond).Should(Equal(int32(2)))
		Eventually(readyCondition).WithArguments(f).WithTimeout(5 * time.Second).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", v1alpha1.ReasonWaking)))

		By("failing once the wake bound passes, with the pod's reason, while the request keeps the target up")
		Eventually(readyCondition).WithArguments(f).WithTimeout(minWakeTimeout + 10*time.Second).WithPolling(tick).Should(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", v1alpha1.ReasonWakeFailed),
			HaveField("Message", And(ContainSubstring("no ready endpoint 10s after the wake"),
				ContainSubstring("pod target-1: container app waiting: CrashLoopBackOff (last exit code 137, OOMKilled)")))))
		st := f.status()
		Expect(st.LastWakeFailureTime).NotTo(BeNil())
		Expect(st.LastWakeFailureTime.Sub(st.LastScaledUpTime.Time)).To(BeNumerically(">=", minWakeTimeout), "failed before the bound")
		Eventually(func(g Gomega) {
			var list eventsv1.EventList
			g.Expect(k8s.List(testCtx, &list, client.InNamespace(f.ns))).To(Succeed())
			g.Expect(list.Items).To(ContainElement(And(
				HaveField("Type", corev1.EventTypeWarning),
				HaveField("Reason", v1alpha1.ReasonWakeFailed),
				HaveField("Regarding.Name", "target-es"),
				HaveField("Note", ContainSubstring("CrashLoopBackOff")))))
		}).WithTimeout(5 * time.Second).Should(Succeed())
		Consistently(f.replicas).WithTimeout(2*time.Second).Should(Equal(int32(2)), "went to zero while a request was held")

		By("going back to zero once no signal says a request is held, with the routes still on the resolver")
		stopSignals()
		last := time.Unix(0, lastSignal.Load())
		Eventually(f.replicas).WithTimeout(wait).WithPolling(tick).Should(BeZero())
		// The status follows the scale in the same pass.
		failedAt := st.LastWakeFailureTime.Time
		Eventually(func() time.Time { return timeOrZero(f.status().LastScaledToZeroTime) }).WithTimeout(5 * time.Second).
			Should(BeTemporally(">=", failedAt))
		st = f.status()
		quiet := max(cooldown*time.Second, decide.HeldSilence)
		// Status times are whole seconds.
		Expect(st.LastScaledToZeroTime.Sub(last)).To(BeNumerically(">=", quiet-time.Second), "scaled down before the held signals had stopped for %s", quiet)
		Expect(st.Mode).To(Equal(v1alpha1.ModeProxy))
		Expect(pointsAtResolver(f.virtualService())).To(BeTrue())
		Expect(readyCondition(f)).To(HaveField("Reason", v1alpha1.ReasonWakeFailed), "the failure was forgotten at zero")

		By("waking again on the next request, and ready again once the target is")
		Expect(k8s.Delete(testCtx, pod)).To(Succeed())
		signal(f.ns, "target-es")
		Eventually(f.replicas).WithTimeout(5 * time.Second).WithPolling(10 * time.Millisecond).Should(Equal(int32(2)))
		Expect(readyCondition(f)).To(HaveField("Status", metav1.ConditionFalse), "a retry is not a success yet")
		prom.Active.Store(true)
		setTargetReady(f.ns, 2)
		Eventually(func(g Gomega) {
			st := f.status()
			g.Expect(st.Mode).To(Equal(v1alpha1.ModeServe))
			c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(wait).Should(Succeed())
	})
})

func timeOrZero(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}
