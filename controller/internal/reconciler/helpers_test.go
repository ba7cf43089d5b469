//go:build envtest

package reconciler_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	activityv1 "github.com/elasti-dev/elasti/api/activity/v1"
	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/activity"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/internal/testsupport/workload"
)

func objMeta(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace}
}

func newNamespace() string {
	ns := fmt.Sprintf("t-%06d", rand.IntN(1_000_000))
	Expect(k8s.Create(testCtx, &corev1.Namespace{ObjectMeta: objMeta(ns, "")})).To(Succeed())
	return ns
}

// setEndpoints writes the EndpointSlice that the EndpointSlice controller would write for a
// Service, with n ready endpoints.
func setEndpoints(namespace, service string, n int) {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: service + "-test", Namespace: namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
	for i := range n {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.244.0.%d", i+10)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: fmt.Sprintf("%s-%d", service, i)},
		})
	}
	existing := &discoveryv1.EndpointSlice{}
	err := k8s.Get(testCtx, client.ObjectKeyFromObject(slice), existing)
	if apierrors.IsNotFound(err) {
		Expect(k8s.Create(testCtx, slice)).To(Succeed())
		return
	}
	Expect(err).NotTo(HaveOccurred())
	existing.Endpoints = slice.Endpoints
	Expect(k8s.Update(testCtx, existing)).To(Succeed())
}

func setResolverReady(ready bool) {
	n := 0
	if ready {
		n = 1
	}
	setEndpoints(resolverNS, resolverSvc, n)
}

// resetFakes puts the suite's fakes back as a spec expects to find them: Prometheus answering,
// with no activity, and one resolver endpoint ready.
func resetFakes() {
	prom.Active.Store(false)
	prom.Down.Store(false)
	setResolverReady(true)
}

// setTargetReady gives the target n ready pods, as the EndpointSlice controller would show them
// in both Services that select them: the public one and elasti's private one.
func setTargetReady(namespace string, n int) {
	setEndpoints(namespace, names.PrivateService("target"), n)
	setEndpoints(namespace, "target", n)
}

// fixture is a Deployment, its Service, a DestinationRule with two subsets, a VirtualService
// that splits between them, and an ElastiService.
type fixture struct {
	ns       string
	es       *v1alpha1.ElastiService
	vsSpec   *apinetworking.VirtualService
	cooldown int32
}

func newFixture(cooldown int32) *fixture {
	f := &fixture{ns: newNamespace(), cooldown: cooldown}
	labels := map[string]string{"app": "target"}
	Expect(k8s.Create(testCtx, workload.SampleApp(f.ns, "target", labels))).To(Succeed())
	Expect(k8s.Create(testCtx, &corev1.Service{
		ObjectMeta: objMeta("target", f.ns),
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
		}},
	})).To(Succeed())

	dr := &networkingv1.DestinationRule{ObjectMeta: objMeta("target", f.ns)}
	dr.Spec.Host = "target"
	dr.Spec.Subsets = []*apinetworking.Subset{
		{Name: "v1", Labels: map[string]string{"version": "v1"}},
		{Name: "v2", Labels: map[string]string{"version": "v2"}},
	}
	Expect(k8s.Create(testCtx, dr)).To(Succeed())

	vs := &networkingv1.VirtualService{ObjectMeta: objMeta("target", f.ns)}
	vs.Spec.Hosts = []string{"target"}
	vs.Spec.Http = []*apinetworking.HTTPRoute{{
		Name: "split",
		Route: []*apinetworking.HTTPRouteDestination{
			{Destination: &apinetworking.Destination{Host: "target", Subset: "v1"}, Weight: 90},
			{Destination: &apinetworking.Destination{Host: "target", Subset: "v2"}, Weight: 10},
		},
	}}
	Expect(k8s.Create(testCtx, vs)).To(Succeed())
	f.vsSpec = vs.Spec.DeepCopy()

	setTargetReady(f.ns, 1)
	f.es = &v1alpha1.ElastiService{
		ObjectMeta: objMeta("target-es", f.ns),
		Spec: v1alpha1.ElastiServiceSpec{
			Service:           "target",
			ScaleTargetRef:    v1alpha1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "target"},
			MinTargetReplicas: 2,
			CooldownPeriod:    cooldown,
			Triggers: []v1alpha1.Trigger{{Type: v1alpha1.TriggerPrometheus, Metadata: v1alpha1.TriggerMetadata{
				ServerAddress: prom.URL, Threshold: "0.5",
			}}},
		},
	}
	Expect(k8s.Create(testCtx, f.es)).To(Succeed())
	return f
}

func (f *fixture) replicas() int32 {
	d := &appsv1.Deployment{}
	Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: "target"}, d)).To(Succeed())
	return *d.Spec.Replicas
}

func (f *fixture) virtualService() *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{}
	Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: "target"}, vs)).To(Succeed())
	return vs
}

func (f *fixture) status() v1alpha1.ElastiServiceStatus {
	es := &v1alpha1.ElastiService{}
	Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), es)).To(Succeed())
	return es.Status
}

// pointsAtResolver reports whether every destination of the VirtualService is the resolver.
func pointsAtResolver(vs *networkingv1.VirtualService) bool {
	for _, r := range vs.Spec.GetHttp() {
		for _, d := range r.GetRoute() {
			if d.GetDestination().GetHost() != names.ProxyService("target")+"."+vs.Namespace+".svc.cluster.local" {
				return false
			}
		}
	}
	return true
}

// wakeToServe wakes f's target from zero as a held request would, lets it serve with traffic
// its trigger reports, and waits for Serve mode.
func wakeToServe(f *fixture) {
	GinkgoHelper()
	signal(f.ns, "target-es")
	Eventually(f.replicas).WithTimeout(wait).Should(Equal(int32(2)))
	prom.Active.Store(true)
	setTargetReady(f.ns, 2)
	Eventually(func() v1alpha1.Mode { return f.status().Mode }).WithTimeout(wait).Should(Equal(v1alpha1.ModeServe))
}

// signal sends an activity signal through the real activity handler, as the resolver would.
func signal(ns, name string) {
	elected := make(chan struct{})
	close(elected)
	srv := httptest.NewServer(&activity.Handler{Store: store, Elected: elected, Events: events})
	defer srv.Close()
	body, _ := json.Marshal(activityv1.Signal{Namespace: ns, Name: name, Held: true})
	resp, err := http.Post(srv.URL+activityv1.Path, "application/json", bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	Expect(resp.Body.Close()).To(Succeed())
	Expect(resp.StatusCode).To(Equal(http.StatusAccepted))
}
