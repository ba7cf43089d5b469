//go:build envtest

package reconciler_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/internal/testsupport/workload"
)

var _ = Describe("Direct probing of a woken target's new pods", func() {
	BeforeEach(resetFakes)
	AfterEach(func() { prom.Active.Store(false) })

	// readiness answers the pod's readiness path with the status it holds, counting the checks.
	type readiness struct {
		status atomic.Int32
		hits   atomic.Int32
		port   int32
	}
	startReadiness := func(status int) *readiness {
		r := &readiness{}
		r.status.Store(int32(status))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.hits.Add(1)
			if req.URL.Path != "/ready" {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			w.WriteHeader(int(r.status.Load()))
		}))
		DeferCleanup(srv.Close)
		_, p, err := net.SplitHostPort(srv.Listener.Addr().String())
		Expect(err).NotTo(HaveOccurred())
		n, err := strconv.Atoi(p)
		Expect(err).NotTo(HaveOccurred())
		r.port = int32(n)
		return r
	}

	// newPod writes the pod the kubelet would be starting: running at 127.0.0.1, where the
	// test's server plays its readiness endpoint, not Ready yet. envtest runs no kubelet.
	newPod := func(f *fixture, name string, probe *corev1.Probe) *corev1.Pod {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns, Labels: map[string]string{"app": "target"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: workload.Image, ReadinessProbe: probe,
			}}},
		}
		Expect(k8s.Create(testCtx, pod)).To(Succeed())
		pod.Status.Phase = corev1.PodRunning
		pod.Status.PodIP = "127.0.0.1"
		pod.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
		pod.Status.StartTime = &metav1.Time{Time: time.Now()}
		Expect(k8s.Status().Update(testCtx, pod)).To(Succeed())
		return pod
	}

	// notReady lists pod in the Service's own slice as the EndpointSlice controller would
	// before the kubelet marks it Ready. EndpointSlices refuse loopback addresses, so the slice
	// has a pod-network address; elasti probes the pod's own IP, as the kubelet does.
	notReady := func(f *fixture, pod *corev1.Pod) {
		slice := &discoveryv1.EndpointSlice{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: "target-test"}, slice)).To(Succeed())
		slice.Endpoints = []discoveryv1.Endpoint{{
			Addresses:  []string{"10.244.0.50"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(false)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: f.ns, Name: pod.Name, UID: pod.UID},
		}}
		Expect(k8s.Update(testCtx, slice)).To(Succeed())
	}

	probedSlice := func(f *fixture) (*discoveryv1.EndpointSlice, error) {
		s := &discoveryv1.EndpointSlice{}
		err := k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ProbedSlice("target", "ipv4")}, s)
		return s, err
	}
	probedGone := func(f *fixture) bool {
		_, err := probedSlice(f)
		svcErr := k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ProbedService("target")}, &corev1.Service{})
		return apierrors.IsNotFound(err) && apierrors.IsNotFound(svcErr)
	}
	// withoutDestinationRule removes the fixture's subsets: their replay routes are on the
	// private host, so elasti probes only targets without a DestinationRule.
	withoutDestinationRule := func(f *fixture) {
		Expect(k8s.Delete(testCtx, &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "target"}})).To(Succeed())
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: "target"}, vs)).To(Succeed())
		vs.Spec.Http[0].Route = vs.Spec.Http[0].Route[:1]
		vs.Spec.Http[0].Route[0].Destination.Subset, vs.Spec.Http[0].Route[0].Weight = "", 0
		Expect(k8s.Update(testCtx, vs)).To(Succeed())
	}
	probing := func(f *fixture) metav1.Condition {
		c := meta.FindStatusCondition(f.status().Conditions, v1alpha1.ConditionDirectProbing)
		if c == nil {
			return metav1.Condition{}
		}
		return *c
	}
	httpReady := func(port int32) *corev1.Probe {
		return &corev1.Probe{PeriodSeconds: 10, ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/ready", Port: intstr.FromInt32(port),
		}}}
	}
	wake := func(f *fixture) {
		GinkgoHelper()
		toZero(f)
		signal(f.ns, "target-es")
		Eventually(f.replicas).WithTimeout(wait).Should(Equal(int32(2)))
	}

	It("lists a pod that passed for the resolver before the kubelet does, and drops it when it fails", func() {
		f := newFixture(2)
		withoutDestinationRule(f)
		wake(f)
		ready := startReadiness(http.StatusServiceUnavailable)
		pod := newPod(f, "target-1", httpReady(ready.port))
		notReady(f, pod)

		By("not listing a pod that answers its readiness path 503")
		Eventually(ready.hits.Load).WithTimeout(wait).Should(BeNumerically(">=", 3))
		Consistently(func() bool { return probedGone(f) }).WithTimeout(time.Second).WithPolling(tick).Should(BeTrue())

		By("listing it, ready and with its Pod reference, in the probed Service once it passes; still in Proxy mode")
		ready.status.Store(http.StatusOK)
		Eventually(func(g Gomega) {
			s, err := probedSlice(f)
			g.Expect(err).NotTo(HaveOccurred())
			// Not the private Service's: kube-proxy and istiod keep one of two entries for an
			// address at random, and the kubelet's there says not ready.
			g.Expect(s.Labels).To(HaveKeyWithValue(discoveryv1.LabelServiceName, names.ProbedService("target")))
			g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.LabelProbedFor, names.PrivateService("target")))
			g.Expect(s.Labels).To(HaveKeyWithValue(discoveryv1.LabelManagedBy, v1alpha1.EndpointSliceManager))
			g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.LabelComponent, v1alpha1.ComponentPrivateService))
			g.Expect(s.Endpoints).To(HaveLen(1))
			ep := s.Endpoints[0]
			g.Expect(ep.Addresses).To(Equal([]string{"10.244.0.50"}))
			g.Expect(ep.Conditions.Ready).To(Equal(ptr.To(true)))
			g.Expect(ep.TargetRef.UID).To(Equal(pod.UID))
			g.Expect(s.Ports).To(HaveLen(1))
			g.Expect(*s.Ports[0].Port).To(Equal(int32(8080)))

			svc := &corev1.Service{}
			g.Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ProbedService("target")}, svc)).To(Succeed())
			g.Expect(svc.Spec.Selector).To(BeEmpty(), "the slices are elasti's alone")
			g.Expect(svc.Spec.Ports).To(HaveLen(1))
			g.Expect(svc.Spec.Ports[0].Name).To(Equal("http"))
			g.Expect(svc.Spec.Ports[0].Port).To(Equal(int32(80)), "the public Service's port, which the resolver replays to")
			g.Expect(svc.Annotations).To(HaveKey("networking.istio.io/exportTo"))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
		Expect(f.status().Mode).To(Equal(v1alpha1.ModeProxy), "the public Service's own slices do not list the pod yet")
		Eventually(func() string { return probing(f).Reason }).WithTimeout(wait).Should(Equal(v1alpha1.ReasonProbePassed))

		By("dropping it at its first failed recheck, and not trusting elasti's probe of it again")
		ready.status.Store(http.StatusServiceUnavailable)
		Eventually(func() bool { return probedGone(f) }).WithTimeout(wait).WithPolling(tick).Should(BeTrue())
		Eventually(func() string { return probing(f).Reason }).WithTimeout(wait).Should(Equal(v1alpha1.ReasonProbeFailed))
		hits := ready.hits.Load()
		ready.status.Store(http.StatusOK)
		Consistently(ready.hits.Load).WithTimeout(1500 * time.Millisecond).WithPolling(tick).Should(Equal(hits))

		By("once the kubelet marks pods Ready, serving, with no probed Service")
		prom.Active.Store(true)
		setTargetReady(f.ns, 2)
		Eventually(func() v1alpha1.Mode { return f.status().Mode }).WithTimeout(wait).Should(Equal(v1alpha1.ModeServe))
		Expect(probedGone(f)).To(BeTrue())
	})

	It("removes the probed Service once the target serves", func() {
		f := newFixture(2)
		withoutDestinationRule(f)
		wake(f)
		ready := startReadiness(http.StatusOK)
		notReady(f, newPod(f, "target-1", httpReady(ready.port)))
		Eventually(func() bool { return probedGone(f) }).WithTimeout(wait).WithPolling(tick).Should(BeFalse())
		prom.Active.Store(true)
		setTargetReady(f.ns, 2)
		Eventually(func() v1alpha1.Mode { return f.status().Mode }).WithTimeout(wait).Should(Equal(v1alpha1.ModeServe))
		Eventually(func() bool { return probedGone(f) }).WithTimeout(wait).WithPolling(tick).Should(BeTrue())
	})

	It("waits for the kubelet, and says why, when the Service has a DestinationRule", func() {
		f := newFixture(2)
		wake(f)
		ready := startReadiness(http.StatusOK)
		notReady(f, newPod(f, "target-1", httpReady(ready.port)))
		Eventually(func() metav1.Condition { return probing(f) }).WithTimeout(wait).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", v1alpha1.ReasonProbingDestinationRule)))
		Expect(ready.hits.Load()).To(BeZero(), "a target with a DestinationRule is not probed")
		Expect(probedGone(f)).To(BeTrue())
	})

	It("waits for the kubelet, and says why, for an exec probe or with readiness: Kubelet", func() {
		f := newFixture(2)
		withoutDestinationRule(f)
		wake(f)
		pod := newPod(f, "target-1", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}})
		notReady(f, pod)
		Eventually(func() metav1.Condition { return probing(f) }).WithTimeout(wait).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", v1alpha1.ReasonNotProbeable),
			HaveField("Message", ContainSubstring("exec probe"))))

		g := newFixture(2)
		withoutDestinationRule(g)
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(g.es), es)).To(Succeed())
		patch := client.MergeFrom(es.DeepCopy())
		es.Spec.ColdStart = &v1alpha1.ColdStart{Readiness: v1alpha1.ReadinessKubelet}
		Expect(k8s.Patch(testCtx, es, patch)).To(Succeed())
		wake(g)
		ready := startReadiness(http.StatusOK)
		notReady(g, newPod(g, "target-1", httpReady(ready.port)))
		Eventually(func() string { return probing(g).Reason }).WithTimeout(wait).Should(Equal(v1alpha1.ReasonProbingDisabled))
		Expect(ready.hits.Load()).To(BeZero(), "readiness: Kubelet probes nothing")
		Expect(probedGone(g)).To(BeTrue())
	})
})
