//go:build envtest

package reconciler_test

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	"google.golang.org/protobuf/testing/protocmp"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/scaler"
	"github.com/elasti-dev/elasti/internal/names"
)

const (
	wait = 20 * time.Second
	tick = 50 * time.Millisecond
)

// toZero waits until f's target is at zero in Proxy mode.
func toZero(f *fixture) {
	GinkgoHelper()
	Eventually(f.replicas).WithTimeout(wait).WithPolling(tick).Should(BeZero())
	Expect(f.status().Mode).To(Equal(v1alpha1.ModeProxy))
	// The pods go away, as they would on a cluster.
	setTargetReady(f.ns, 0)
}

var _ = Describe("ElastiService validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	valid := func() *v1alpha1.ElastiService {
		return &v1alpha1.ElastiService{
			ObjectMeta: objMeta("es", ns),
			Spec: v1alpha1.ElastiServiceSpec{
				Service:        "target",
				ScaleTargetRef: v1alpha1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "target"},
				Triggers: []v1alpha1.Trigger{{Type: v1alpha1.TriggerPrometheus,
					Metadata: v1alpha1.TriggerMetadata{ServerAddress: "http://prometheus:9090"}}},
			},
		}
	}

	It("accepts a minimal ElastiService and fills in the defaults", func() {
		es := valid()
		Expect(k8s.Create(testCtx, es)).To(Succeed())
		Expect(es.Spec.MinTargetReplicas).To(Equal(int32(1)))
		Expect(es.Spec.CooldownPeriod).To(Equal(int32(900)))
		Expect(es.Spec.Triggers[0].Metadata.Threshold).To(Equal("0"))
		Expect(es.Spec.WakeTimeout).To(Equal(&metav1.Duration{Duration: v1alpha1.DefaultWakeTimeout}))
	})

	// The typed client drops a zero (omitempty); a manifest that writes 0 sends it.
	It("rejects minTargetReplicas: 0 as a manifest writes it, naming the field", func() {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(valid())
		Expect(err).NotTo(HaveOccurred())
		Expect(unstructured.SetNestedField(u, int64(0), "spec", "minTargetReplicas")).To(Succeed())
		obj := &unstructured.Unstructured{Object: u}
		obj.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("ElastiService"))
		err = k8s.Create(testCtx, obj)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(And(ContainSubstring("spec.minTargetReplicas"), ContainSubstring("greater than or equal to 1")))
	})

	DescribeTable("rejects an invalid ElastiService with a message that names the field",
		func(edit func(*v1alpha1.ElastiService), field, message string) {
			es := valid()
			edit(es)
			err := k8s.Create(testCtx, es)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(And(ContainSubstring(field), ContainSubstring(message)))
		},
		Entry("no service", func(es *v1alpha1.ElastiService) { es.Spec.Service = "" },
			"spec.service", "at least 1 chars long"),
		Entry("service not a DNS label", func(es *v1alpha1.ElastiService) { es.Spec.Service = "Target_1" },
			"spec.service", "should match"),
		Entry("no scale target name", func(es *v1alpha1.ElastiService) { es.Spec.ScaleTargetRef.Name = "" },
			"spec.scaleTargetRef.name", "at least 1 chars long"),
		Entry("bad apiVersion", func(es *v1alpha1.ElastiService) { es.Spec.ScaleTargetRef.APIVersion = "apps" },
			"spec.scaleTargetRef.apiVersion", "should match"),
		Entry("negative minTargetReplicas", func(es *v1alpha1.ElastiService) { es.Spec.MinTargetReplicas = -1 },
			"spec.minTargetReplicas", "greater than or equal to 1"),
		Entry("cooldown over a week", func(es *v1alpha1.ElastiService) { es.Spec.CooldownPeriod = 604801 },
			"spec.cooldownPeriod", "less than or equal to 604800"),
		Entry("no triggers", func(es *v1alpha1.ElastiService) { es.Spec.Triggers = nil },
			"spec.triggers", "Required value"),
		Entry("unknown trigger type", func(es *v1alpha1.ElastiService) { es.Spec.Triggers[0].Type = "cpu" },
			"spec.triggers[0].type", "Unsupported value"),
		Entry("server address not a URL", func(es *v1alpha1.ElastiService) {
			es.Spec.Triggers[0].Metadata.ServerAddress = "prometheus:9090"
		}, "spec.triggers[0].metadata.serverAddress", "must be an http or https URL"),
		Entry("threshold not a number", func(es *v1alpha1.ElastiService) { es.Spec.Triggers[0].Metadata.Threshold = "high" },
			"spec.triggers[0].metadata.threshold", "should match"),
		Entry("unknown autoscaler", func(es *v1alpha1.ElastiService) {
			es.Spec.Autoscaler = &v1alpha1.Autoscaler{Type: "vpa", Name: "x"}
		}, "spec.autoscaler.type", "Unsupported value"),
		Entry("probe response with path and prefix", func(es *v1alpha1.ElastiService) {
			es.Spec.ProbeResponses = []v1alpha1.ProbeResponse{{Path: "/healthz", PathPrefix: "/health"}}
		}, "spec.probeResponses[0]", "exactly one of path and pathPrefix must be set"),
		Entry("probe response with a bad status", func(es *v1alpha1.ElastiService) {
			es.Spec.ProbeResponses = []v1alpha1.ProbeResponse{{Path: "/healthz", StatusCode: 99}}
		}, "spec.probeResponses[0].statusCode", "greater than or equal to 100"),
		Entry("hold timeout too short", func(es *v1alpha1.ElastiService) {
			es.Spec.Queue = &v1alpha1.QueueSettings{HoldTimeout: &metav1.Duration{Duration: time.Millisecond}}
		}, "spec.queue.holdTimeout", "must be between 1s and 1h"),
		Entry("wake timeout too short", func(es *v1alpha1.ElastiService) {
			es.Spec.WakeTimeout = &metav1.Duration{Duration: 5 * time.Second}
		}, "spec.wakeTimeout", "must be between 10s and 1h"),
		Entry("wake timeout too long", func(es *v1alpha1.ElastiService) {
			es.Spec.WakeTimeout = &metav1.Duration{Duration: 2 * time.Hour}
		}, "spec.wakeTimeout", "must be between 10s and 1h"),
		Entry("max pending zero", func(es *v1alpha1.ElastiService) {
			es.Spec.Queue = &v1alpha1.QueueSettings{MaxPending: new(int32)}
		}, "spec.queue.maxPending", "greater than or equal to 1"),
	)

	It("rejects a change of service", func() {
		es := valid()
		Expect(k8s.Create(testCtx, es)).To(Succeed())
		orig := es.DeepCopy()
		es.Spec.Service = "other"
		err := k8s.Patch(testCtx, es, client.MergeFrom(orig))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(And(ContainSubstring("spec.service"), ContainSubstring("service is immutable")))
	})
})

var _ = Describe("Scaling to zero and back", func() {
	BeforeEach(resetFakes)
	AfterEach(func() { prom.Active.Store(false) })

	It("switches routes to the resolver first, then scales to zero after the cooldown and drain", func() {
		created := time.Now()
		f := newFixture(2)

		// Watch the invariant the whole way down: zero replicas only with the routes on the resolver.
		var violated atomic.Bool
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if f.replicas() == 0 {
					if !pointsAtResolver(f.virtualService()) {
						violated.Store(true)
					}
					return
				}
			}
		}()
		Eventually(f.replicas).WithTimeout(wait).WithPolling(tick).Should(BeZero())
		<-done
		Expect(violated.Load()).To(BeFalse(), "replicas reached zero before the routes pointed at the resolver")

		// The status patch follows the scale in the same pass: zero replicas can be seen first.
		var st v1alpha1.ElastiServiceStatus
		Eventually(func() *metav1.Time { st = f.status(); return st.LastScaledToZeroTime }).WithTimeout(wait).ShouldNot(BeNil())
		Expect(st.Mode).To(Equal(v1alpha1.ModeProxy))
		Expect(st.LastScaledToZeroTime.Sub(created)).To(BeNumerically(">=", 2*time.Second), "scaled down before the cooldown")
		Expect(st.LastScaledToZeroTime.Sub(st.ModeSince.Time)).To(BeNumerically(">=", drainDelay), "scaled down before the drain delay")
		Expect(st.Routes).To(ContainElements(
			v1alpha1.RouteRef{Kind: "VirtualService", Namespace: f.ns, Name: "target"},
			v1alpha1.RouteRef{Kind: "EndpointSlice", Namespace: f.ns, Name: names.ResolverSlice("target", "ipv4")},
		))

		By("pointing every destination at the target's proxy Service, on its port, with the original subset in a header")
		vs := f.virtualService()
		for i, d := range vs.Spec.Http[0].Route {
			Expect(d.GetDestination().GetHost()).To(Equal(names.ProxyService("target") + "." + f.ns + ".svc.cluster.local"))
			Expect(d.GetDestination().GetPort()).To(BeComparableTo(f.vsSpec.Http[0].Route[i].GetDestination().GetPort(), protocmp.Transform()))
			Expect(d.GetDestination().GetSubset()).To(BeEmpty())
			Expect(d.GetHeaders().GetRequest().GetSet()).To(HaveKeyWithValue(v1alpha1.HeaderElastiService, f.ns+"/target-es"))
			Expect(d.GetHeaders().GetRequest().GetSet()).To(HaveKeyWithValue(v1alpha1.HeaderSubset, f.vsSpec.Http[0].Route[i].GetDestination().GetSubset()))
			Expect(d.GetWeight()).To(Equal(f.vsSpec.Http[0].Route[i].GetWeight()))
		}

		By("pointing non-mesh callers at the resolver with an EndpointSlice of the public Service")
		slice := &discoveryv1.EndpointSlice{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ResolverSlice("target", "ipv4")}, slice)).To(Succeed())
		Expect(slice.Labels).To(HaveKeyWithValue(discoveryv1.LabelServiceName, "target"))
		Expect(slice.Endpoints).To(HaveLen(1))
		Expect(slice.Endpoints[0].Addresses).To(Equal([]string{"10.244.0.10"}))
		Expect(*slice.Ports[0].Port).To(Equal(int32(8012)))
		Expect(*slice.Ports[0].Name).To(Equal("http"))
		// istiod finds the resolver pod (its identity and istio.tlsMode) by this reference only.
		Expect(slice.Endpoints[0].TargetRef).To(PointTo(MatchFields(IgnoreExtras, Fields{
			"Kind": Equal("Pod"), "Namespace": Equal(resolverNS), "Name": Equal(resolverSvc + "-0")})))

		By("listing the resolver pods, with their references, as the proxy Service's endpoints")
		proxy := &corev1.Service{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ProxyService("target")}, proxy)).To(Succeed())
		Expect(proxy.Spec.Selector).To(BeEmpty())
		Expect(proxy.Spec.Ports).To(HaveLen(1))
		Expect(proxy.Spec.Ports[0].Port).To(Equal(int32(80)))
		proxySlice := &discoveryv1.EndpointSlice{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ProxySlice("target", "ipv4")}, proxySlice)).To(Succeed())
		Expect(proxySlice.Labels).To(HaveKeyWithValue(discoveryv1.LabelServiceName, names.ProxyService("target")))
		Expect(proxySlice.Endpoints).To(ConsistOf(HaveField("TargetRef", Equal(slice.Endpoints[0].TargetRef))))
		proxyDR := &networkingv1.DestinationRule{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ProxyService("target")}, proxyDR)).To(Succeed())
		Expect(proxyDR.Spec.GetHost()).To(Equal(names.ProxyService("target") + "." + f.ns + ".svc.cluster.local"))
		Expect(proxyDR.Spec.GetTrafficPolicy().GetOutlierDetection().GetConsecutive_5XxErrors()).To(HaveField("Value", BeZero()))

		By("mirroring the subsets onto the private host for the resolver's replay")
		dr := &networkingv1.DestinationRule{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.PrivateDestinationRule("target")}, dr)).To(Succeed())
		Expect(dr.Spec.GetHost()).To(Equal(names.PrivateService("target") + "." + f.ns + ".svc.cluster.local"))
		Expect(dr.Spec.GetSubsets()).To(HaveLen(2))
		private := &corev1.Service{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.PrivateService("target")}, private)).To(Succeed())
		Expect(private.Spec.Selector).To(Equal(map[string]string{"app": "target"}))
	})

	It("wakes on activity, keeps Proxy until endpoints are ready, then restores the routes exactly", func() {
		f := newFixture(1)
		toZero(f)

		signal(f.ns, "target-es")
		Eventually(f.replicas).WithTimeout(5 * time.Second).WithPolling(10 * time.Millisecond).Should(Equal(int32(2)))
		Consistently(func() v1alpha1.Mode { return f.status().Mode }).WithTimeout(time.Second).Should(Equal(v1alpha1.ModeProxy))
		Expect(pointsAtResolver(f.virtualService())).To(BeTrue())
		Expect(f.status().LastScaledUpTime).NotTo(BeNil())

		// The woken target serves traffic, which its trigger reports.
		prom.Active.Store(true)
		setTargetReady(f.ns, 2)
		Eventually(func() v1alpha1.Mode { return f.status().Mode }).WithTimeout(wait).Should(Equal(v1alpha1.ModeServe))
		vs := f.virtualService()
		Expect(cmp.Diff(f.vsSpec, &vs.Spec, protocmp.Transform())).To(BeEmpty())
		Expect(vs.Annotations).NotTo(HaveKey(v1alpha1.AnnotationOriginalRoutes))
		Eventually(func() bool {
			err := k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ResolverSlice("target", "ipv4")}, &discoveryv1.EndpointSlice{})
			return apierrors.IsNotFound(err)
		}).WithTimeout(wait).Should(BeTrue())
		Expect(f.status().Routes).To(BeEmpty())
	})

	It("keeps a user's edit of the VirtualService made in Proxy mode", func() {
		f := newFixture(1)
		toZero(f)

		vs := f.virtualService()
		vs.Spec.Http[0].Route[0].Weight, vs.Spec.Http[0].Route[1].Weight = 70, 30
		vs.Spec.Http = append(vs.Spec.Http, &apinetworking.HTTPRoute{
			Name:  "legacy",
			Route: []*apinetworking.HTTPRouteDestination{{Destination: &apinetworking.Destination{Host: "legacy"}}},
		})
		Expect(k8s.Update(testCtx, vs)).To(Succeed())

		signal(f.ns, "target-es")
		Eventually(f.replicas).WithTimeout(wait).Should(Equal(int32(2)))
		prom.Active.Store(true)
		setTargetReady(f.ns, 2)
		Eventually(func() v1alpha1.Mode { return f.status().Mode }).WithTimeout(wait).Should(Equal(v1alpha1.ModeServe))

		want := f.vsSpec.DeepCopy()
		want.Http[0].Route[0].Weight, want.Http[0].Route[1].Weight = 70, 30
		want.Http = append(want.Http, vs.Spec.Http[1])
		got := f.virtualService()
		Expect(cmp.Diff(want, &got.Spec, protocmp.Transform())).To(BeEmpty())
	})

	It("restores routes and replicas and removes its objects when the ElastiService is deleted", func() {
		f := newFixture(1)
		toZero(f)

		Expect(k8s.Delete(testCtx, f.es)).To(Succeed())
		By("waking the target first and keeping callers on the resolver until it is ready")
		Eventually(f.replicas).WithTimeout(wait).Should(Equal(int32(2)))
		Consistently(func() bool { return pointsAtResolver(f.virtualService()) }).WithTimeout(time.Second).Should(BeTrue())
		setTargetReady(f.ns, 2)
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), &v1alpha1.ElastiService{}))
		}).WithTimeout(wait).Should(BeTrue())
		Expect(f.replicas()).To(Equal(int32(2)))
		vs := f.virtualService()
		Expect(cmp.Diff(f.vsSpec, &vs.Spec, protocmp.Transform())).To(BeEmpty())
		Expect(vs.Annotations).NotTo(HaveKey(v1alpha1.AnnotationOriginalRoutes))
		for _, obj := range []client.Object{
			&discoveryv1.EndpointSlice{ObjectMeta: objMeta(names.ResolverSlice("target", "ipv4"), f.ns)},
			&corev1.Service{ObjectMeta: objMeta(names.PrivateService("target"), f.ns)},
			&corev1.Service{ObjectMeta: objMeta(names.ProxyService("target"), f.ns)},
			&discoveryv1.EndpointSlice{ObjectMeta: objMeta(names.ProxySlice("target", "ipv4"), f.ns)},
			&networkingv1.DestinationRule{ObjectMeta: objMeta(names.ProxyService("target"), f.ns)},
			&networkingv1.DestinationRule{ObjectMeta: objMeta(names.PrivateDestinationRule("target"), f.ns)},
			&networkingv1.VirtualService{ObjectMeta: objMeta(names.PrivateVirtualService("target"), f.ns)},
		} {
			err := k8s.Get(testCtx, client.ObjectKeyFromObject(obj), obj)
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T %s still exists", obj, obj.GetName())
		}
	})

	It("keeps the ElastiService and its private Service for the drain delay after the routes went back to the target", func() {
		f := newFixture(1)
		toZero(f)

		Expect(k8s.Delete(testCtx, f.es)).To(Succeed())
		Eventually(f.replicas).WithTimeout(wait).Should(Equal(int32(2)))
		setTargetReady(f.ns, 2)
		// Callers' proxies follow the restored routes a moment later; until then the resolver
		// still gets their requests and can serve them only through the private Service.
		slice := &discoveryv1.EndpointSlice{ObjectMeta: objMeta(names.ResolverSlice("target", "ipv4"), f.ns)}
		Eventually(func() bool {
			return !pointsAtResolver(f.virtualService()) && apierrors.IsNotFound(k8s.Get(testCtx, client.ObjectKeyFromObject(slice), slice))
		}).WithTimeout(wait).WithPolling(10 * time.Millisecond).Should(BeTrue())
		restored := time.Now()
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), es)).To(Succeed(), "the ElastiService went with the routes")
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.PrivateService("target")}, &corev1.Service{})).To(Succeed())
		// Meanwhile the status says what is true: Serve, no route on the resolver.
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), es)).To(Succeed())
			g.Expect(es.Status.Mode).To(Equal(v1alpha1.ModeServe))
			g.Expect(es.Status.Routes).To(BeEmpty())
		}).WithTimeout(drainDelay).WithPolling(10 * time.Millisecond).Should(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), &v1alpha1.ElastiService{}))
		}).WithTimeout(wait).WithPolling(10 * time.Millisecond).Should(BeTrue())
		Expect(time.Since(restored)).To(BeNumerically(">=", drainDelay*8/10), "removed before the drain delay")
		Expect(apierrors.IsNotFound(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.PrivateService("target")}, &corev1.Service{}))).To(BeTrue())
	})

	It("finishes a deletion whose private Service is already gone without waiting for it", func() {
		f := newFixture(1)
		toZero(f)
		wakeToServe(f)
		// As after a pass that deleted it and then failed to remove the finalizer.
		Expect(k8s.Delete(testCtx, &corev1.Service{ObjectMeta: objMeta(names.PrivateService("target"), f.ns)})).To(Succeed())
		setEndpoints(f.ns, names.PrivateService("target"), 0)
		start := time.Now()
		Expect(k8s.Delete(testCtx, f.es)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), &v1alpha1.ElastiService{}))
		}).WithTimeout(wait).Should(BeTrue())
		Expect(time.Since(start)).To(BeNumerically("<", 4*time.Second))
	})

	It("fails open to Serve and wakes the target when no resolver is ready", func() {
		f := newFixture(1)
		toZero(f)
		DeferCleanup(setResolverReady, true)

		setResolverReady(false)
		Eventually(f.replicas).WithTimeout(wait).Should(Equal(int32(2)))
		Eventually(func() v1alpha1.Mode { return f.status().Mode }).WithTimeout(wait).Should(Equal(v1alpha1.ModeServe))
		vs := f.virtualService()
		Expect(cmp.Diff(f.vsSpec, &vs.Spec, protocmp.Transform())).To(BeEmpty())
		cond := meta.FindStatusCondition(f.status().Conditions, v1alpha1.ConditionResolverReady)
		Expect(cond).NotTo(BeNil())
		Expect(cond.Status).To(Equal(metav1.ConditionFalse))

		By("staying in Serve at full size while idle, for as long as no resolver is ready")
		Consistently(f.replicas).WithTimeout(3 * time.Second).Should(Equal(int32(2)))
	})
})

var _ = Describe("Prometheus triggers", func() {
	BeforeEach(func() { setResolverReady(true) })
	AfterEach(func() {
		prom.Active.Store(false)
		prom.Down.Store(false)
	})

	It("never scales down while the query is above the threshold, and does once it drops", func() {
		prom.Active.Store(true)
		f := newFixture(1)
		Consistently(f.replicas).WithTimeout(4 * time.Second).WithPolling(100 * time.Millisecond).Should(Equal(int32(1)))
		Expect(f.status().Mode).To(Equal(v1alpha1.ModeServe))
		cond := meta.FindStatusCondition(f.status().Conditions, v1alpha1.ConditionTriggersHealthy)
		Expect(cond).NotTo(BeNil())
		Expect(cond.Reason).To(Equal("Active"))
		Expect(cond.Message).To(ContainSubstring("above its threshold"))

		prom.Active.Store(false)
		Eventually(f.replicas).WithTimeout(wait).Should(BeZero())
	})

	It("never scales down while Prometheus cannot be read, and says so", func() {
		prom.Down.Store(true)
		f := newFixture(1)
		Eventually(func() string {
			c := meta.FindStatusCondition(f.status().Conditions, v1alpha1.ConditionTriggersHealthy)
			if c == nil || c.Status != metav1.ConditionFalse {
				return ""
			}
			return c.Message
		}).WithTimeout(wait).Should(ContainSubstring("will not scale to zero"))
		Consistently(f.replicas).WithTimeout(3 * time.Second).Should(Equal(int32(1)))
		Expect(strings.ToLower(string(f.status().Mode))).To(Equal("serve"))
	})
})

var _ = Describe("Scale targets", func() {
	It("accepts KubeElasti's plural resource name as the kind and scales through /scale", func() {
		s := &scaler.Scaler{Client: k8s, Mapper: k8s.RESTMapper()}
		gvk, err := s.GVK(v1alpha1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "deployments", Name: "x"})
		Expect(err).NotTo(HaveOccurred())
		Expect(gvk.Kind).To(Equal("Deployment"))

		f := newFixture(3600)
		ref := v1alpha1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "deployments", Name: "target"}
		Expect(s.Set(testCtx, f.ns, ref, scaler.Scale{}, 3)).To(Succeed())
		sc, err := s.Get(testCtx, f.ns, ref)
		Expect(err).NotTo(HaveOccurred())
		Expect(sc.Spec).To(Equal(int32(3)))
		Expect(f.replicas()).To(Equal(int32(3)))
	})

	It("reads a Deployment from the cache, and writes onto the version it read, refusing a stale one", func() {
		f := newFixture(3600)
		// Deployment.Spec.Replicas comes from the object itself; a /scale read would fail, as
		// the reader is asked for no subresource.
		s := &scaler.Scaler{Client: k8s, Mapper: k8s.RESTMapper(), Cache: k8s}
		read, err := s.Get(testCtx, f.ns, f.es.Spec.ScaleTargetRef)
		Expect(err).NotTo(HaveOccurred())
		Expect(read.Spec).To(Equal(f.replicas()))
		Expect(read.ResourceVersion).NotTo(BeEmpty())

		By("someone else scaling it after the read")
		d := &appsv1.Deployment{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: "target"}, d)).To(Succeed())
		d.Spec.Replicas = ptr.To[int32](5)
		Expect(k8s.Update(testCtx, d)).To(Succeed())
		err = s.Set(testCtx, f.ns, f.es.Spec.ScaleTargetRef, read, 0)
		Expect(apierrors.IsConflict(err)).To(BeTrue(), "a write onto a stale read: %v", err)
		Expect(f.replicas()).To(Equal(int32(5)))

		By("writing onto a fresh read")
		read, err = s.Get(testCtx, f.ns, f.es.Spec.ScaleTargetRef)
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Set(testCtx, f.ns, f.es.Spec.ScaleTargetRef, read, 0)).To(Succeed())
		Expect(f.replicas()).To(BeZero())
	})

	It("says which scale target is unknown", func() {
		s := &scaler.Scaler{Client: k8s, Mapper: k8s.RESTMapper()}
		_, err := s.GVK(v1alpha1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "Widget", Name: "x"})
		Expect(err).To(MatchError(ContainSubstring("apps/v1 Widget is not a known kind or resource")))
	})
})

var _ = Describe("elasti's own objects", func() {
	BeforeEach(func() { setResolverReady(true) })

	It("puts back a private Service edited into an ExternalName", func() {
		// Made when Proxy mode is first wanted, and kept right from then on.
		f := newFixture(1)
		toZero(f)
		key := client.ObjectKey{Namespace: f.ns, Name: names.PrivateService("target")}
		private := &corev1.Service{}
		Eventually(func() error { return k8s.Get(testCtx, key, private) }).WithTimeout(wait).Should(Succeed())

		// What someone allowed to edit Services in the namespace could do to send the
		// resolver's replays elsewhere.
		patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"type":"ExternalName","externalName":"evil.example.com"}}`))
		Expect(k8s.Patch(testCtx, private, patch)).To(Succeed())
		Expect(private.Spec.Type).To(Equal(corev1.ServiceTypeExternalName))

		Eventually(func(g Gomega) {
			got := &corev1.Service{}
			g.Expect(k8s.Get(testCtx, key, got)).To(Succeed())
			g.Expect(got.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
			g.Expect(got.Spec.ExternalName).To(BeEmpty())
			g.Expect(got.Spec.Selector).To(Equal(map[string]string{"app": "target"}))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
	})
})
