//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
)

// The kubelet's default readiness period, which most users keep.
const defaultPeriod = 10

var _ = Describe("Cold start bounded by the app, not the kubelet", Label("coldstart"), func() {
	// startSlowly makes the target, at zero, an app that listens listenDelay after it starts,
	// with a readiness probe on path at the kubelet's default period.
	startSlowly := func(a *app, path string, listenDelay time.Duration) {
		GinkgoHelper()
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, d)).To(Succeed())
		patch := client.MergeFrom(d.DeepCopy())
		c := &d.Spec.Template.Spec.Containers[0]
		c.Env = append(c.Env, corev1.EnvVar{Name: "LISTEN_DELAY", Value: listenDelay.String()})
		c.ReadinessProbe = &corev1.Probe{PeriodSeconds: defaultPeriod,
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}}}
		Expect(k8s.Patch(ctx, d, patch)).To(Succeed())
	}
	// withoutDestinationRule drops the app's subset: elasti replays to probed pods only for a
	// Service with no DestinationRule, whose subsets and policy it mirrors for the private host.
	withoutDestinationRule := func(a *app) {
		GinkgoHelper()
		Expect(k8s.Delete(ctx, &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, Name: "shop"}})).To(Succeed())
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, vs)).To(Succeed())
		vs.Spec.Http[0].Route[0].Destination.Subset = ""
		Expect(k8s.Update(ctx, vs)).To(Succeed())
		a.vs = vs.Spec.DeepCopy()
	}
	// podCounts reads the ledger of the pod at ip, past the Service and elasti.
	podCounts := func(ip string) map[string]int {
		GinkgoHelper()
		resp, err := http.Get(fmt.Sprintf("http://%s:8080/counts", ip))
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		counts := map[string]int{}
		Expect(json.NewDecoder(resp.Body).Decode(&counts)).To(Succeed())
		return counts
	}
	newPod := func(a *app) corev1.Pod {
		GinkgoHelper()
		var pods corev1.PodList
		Expect(k8s.List(ctx, &pods, client.InNamespace(a.ns), client.MatchingLabels{"app": "shop"})).To(Succeed())
		Expect(pods.Items).To(HaveLen(1))
		return pods.Items[0]
	}

	It("answers a request at zero, exactly once, well before the kubelet's periodSeconds: 10 marks the pod Ready", func(sctx SpecContext) {
		a := deployApp(5)
		DeferCleanup(removeApp, a)
		withoutDestinationRule(a)
		a.toZero()
		const listenDelay = 3 * time.Second
		startSlowly(a, "/healthz", listenDelay)

		w := watchWake(a)
		// Every status the API server reports: a woken target that has been idle past its
		// cooldown by the time the kubelet marks it Ready is in Serve only until the next pass
		// sends it back to Proxy, too briefly for polling to be sure to see it.
		watchCtx, stopWatch := context.WithCancel(ctx)
		DeferCleanup(stopWatch)
		statuses := watchStatus(watchCtx, a.ns, "shop")
		r := getOnce(a, "cold-1")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusOK), r.body)

		By("the resolver's sidecar gets the pod, healthy, from istiod before the kubelet marks it Ready")
		probed := "outbound|80||" + names.ProbedService("shop") + "." + a.ns + ".svc.cluster.local"
		pod := newPod(a)
		Eventually(func() ([]xdsLoadAssignment, error) {
			return probeXDS[[]xdsLoadAssignment](sctx, append(asPod(resolverPods()[0]), "-kind", "eds", "-names", probed)...)
		}).WithTimeout(5 * time.Second).WithPolling(200 * time.Millisecond).Should(ConsistOf(HaveField("Endpoints",
			ContainElement(And(HaveField("Address", HavePrefix(pod.Status.PodIP+":")), HaveField("Workload", HavePrefix("shop;"+a.ns+";")),
				HaveField("Health", Not(BeElementOf("UNHEALTHY", "DRAINING", "TIMEOUT", "DEGRADED"))))))))
		sawEDS := time.Now()

		var ready time.Time
		Eventually(func() bool {
			if p := newPod(a); podReady(&p) {
				ready = time.Now()
			}
			return !ready.IsZero()
		}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(BeTrue())
		// At its own address: past its cooldown, the target may be on its way back to zero.
		Expect(podCounts(pod.Status.PodIP)).To(HaveKeyWithValue("cold-1", 1))
		scaled, _ := w()
		GinkgoWriter.Printf("scaled up to answer %s; answer to the kubelet's Ready %s\n",
			r.end.Sub(scaled).Round(10*time.Millisecond), ready.Sub(r.end).Round(10*time.Millisecond))
		Expect(r.end.Sub(scaled)).To(BeNumerically(">=", listenDelay), "answered before the app listened")
		// The condition's time is truncated to the second, so it is no later than the truth.
		var readySince time.Time
		for _, c := range newPod(a).Status.Conditions {
			if c.Type == corev1.PodReady {
				readySince = c.LastTransitionTime.Time
			}
		}
		Expect(readySince.Sub(r.end)).To(BeNumerically(">=", 2*time.Second), "answered by the kubelet's readiness, not elasti's probe")
		Expect(sawEDS.Before(readySince)).To(BeTrue(), "istiod had the pod only once the kubelet marked it Ready")

		c := a.condition(v1alpha1.ConditionDirectProbing)
		Expect(c).NotTo(BeNil())
		Expect(c.Reason).To(Equal(v1alpha1.ReasonProbePassed), c.Message)
		Eventually(func() bool {
			return slices.ContainsFunc(statuses(), func(e statusEvent) bool { return e.mode == v1alpha1.ModeServe })
		}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(BeTrue(), "never switched to Serve once the pod was Ready")
	})

	It("never sends a request to a pod that listens but answers its readiness path 503", func() {
		a := deployApp(5)
		DeferCleanup(removeApp, a)
		withoutDestinationRule(a)
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, es)).To(Succeed())
		patch := client.MergeFrom(es.DeepCopy())
		es.Spec.Queue = &v1alpha1.QueueSettings{HoldTimeout: &metav1.Duration{Duration: 5 * time.Second}}
		Expect(k8s.Patch(ctx, es, patch)).To(Succeed())
		a.toZero()
		startSlowly(a, "/status/503", 0)

		r := getOnce(a, "cold-503")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusGatewayTimeout), r.body)
		pod := newPod(a)
		Expect(pod.Status.PodIP).NotTo(BeEmpty())
		// The pod is never Ready, so its ledger is read at its own address.
		Expect(podCounts(pod.Status.PodIP)).To(BeEmpty(), "a request reached a pod that never passed its readiness probe")
		// Probing applied: the pod was probed and never passed.
		ready := meta.FindStatusCondition(a.status().Conditions, v1alpha1.ConditionDirectProbing)
		Expect(ready == nil || ready.Reason == v1alpha1.ReasonProbeFailed).To(BeTrue(), "DirectProbing: %+v", ready)
	})
})
