//go:build envtest

package sources_test

import (
	"bytes"
	"context"
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/internal/routesig"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/sources"
	"github.com/elasti-dev/elasti/resolver/internal/throttler"
)

func newNamespace(ctx context.Context) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "resolver-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func newElastiService(ns, name, service string) *v1alpha1.ElastiService {
	return &v1alpha1.ElastiService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ElastiServiceSpec{
			Service:        service,
			ScaleTargetRef: v1alpha1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: service},
			Triggers: []v1alpha1.Trigger{{Type: v1alpha1.TriggerPrometheus,
				Metadata: v1alpha1.TriggerMetadata{ServerAddress: "http://prometheus.monitoring:9090"}}},
			Queue: &v1alpha1.QueueSettings{MaxPending: ptr.To[int32](5)},
		},
	}
}

// privateService is what the controller creates; labelled says whether it carries elasti's
// component label, which the resolver's cache selects on.
func privateService(ns, service string, labelled bool, ports ...int32) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: names.PrivateService(service)},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": service}},
	}
	if labelled {
		svc.Labels = map[string]string{v1alpha1.LabelComponent: sources.ComponentPrivateService}
	}
	for i, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: []string{"http", "grpc", "admin"}[i], Port: p, TargetPort: intstr.FromInt32(p + 1000),
		})
	}
	return svc
}

// slice is an EndpointSlice as the EndpointSlice controller writes it for a private Service.
func slice(ns, service string, ready bool) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: names.PrivateService(service) + "-abcde", Labels: map[string]string{
			discoveryv1.LabelServiceName: names.PrivateService(service),
			v1alpha1.LabelComponent:      sources.ComponentPrivateService,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](9080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"10.1.2.3"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
		}},
	}
}

// holdOne holds a request for backend and returns once it waits; the channel gets its result.
func holdOne(backend types.NamespacedName) <-chan error {
	held := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := resolver.Throttler.Wait(context.Background(), backend, 10, time.Minute, func() { close(held) })
		done <- err
	}()
	Eventually(held).Should(BeClosed())
	return done
}

var _ = Describe("registry from ElastiServices and private Services", func() {
	It("finds targets by key and host, with the private Service's ports", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		Expect(k8s.Create(ctx, newElastiService(ns, "web-es", "web"))).To(Succeed())
		Eventually(func() bool { _, ok := resolver.Registry.ByKey(ns, "web-es"); return ok }).Should(BeTrue())

		t, port, err := resolver.Registry.ByHost("web." + ns + ".svc.cluster.local:8080")
		Expect(err).NotTo(HaveOccurred())
		Expect(t.Key()).To(Equal(ns + "/web-es"))
		Expect(port).To(Equal(int32(8080)))
		Expect(t.MaxPending).To(Equal(5))

		// An unlabelled Service is not in the cache; the labelled one gives the ports.
		Expect(k8s.Create(ctx, privateService(ns, "other", false, 1))).To(Succeed())
		Expect(k8s.Create(ctx, privateService(ns, "web", true, 80, 9090))).To(Succeed())
		Eventually(func() []registry.Port {
			t, _ := resolver.Registry.ByKey(ns, "web-es")
			return t.Ports
		}).Should(Equal([]registry.Port{{Name: "http", Port: 80, TargetPort: 1080}, {Name: "grpc", Port: 9090, TargetPort: 10090}}))
	})

	It("says a bare Service name in two namespaces is ambiguous", func(ctx SpecContext) {
		a, b := newNamespace(ctx), newNamespace(ctx)
		Expect(k8s.Create(ctx, newElastiService(a, "dup", "twin"))).To(Succeed())
		Eventually(func() error { _, _, err := resolver.Registry.ByHost("twin"); return err }).Should(Succeed())
		Expect(k8s.Create(ctx, newElastiService(b, "dup", "twin"))).To(Succeed())
		Eventually(func() error { _, _, err := resolver.Registry.ByHost("twin"); return err }).Should(MatchError(registry.ErrAmbiguous))
		t, _, err := resolver.Registry.ByHost("twin." + b)
		Expect(err).NotTo(HaveOccurred())
		Expect(t.Namespace).To(Equal(b))
	})
})

var _ = Describe("readiness from EndpointSlices", func() {
	It("opens the gate for held requests when a slice turns ready, and re-arms it", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		backend := types.NamespacedName{Namespace: ns, Name: names.PrivateService("api")}
		s := slice(ns, "api", false)
		Expect(k8s.Create(ctx, s)).To(Succeed())
		// The not-ready slice arrives; nothing is ready.
		Eventually(func() bool { _, ok := resolver.Readiness.Pick(backend, "http"); return ok }).Should(BeFalse())
		Consistently(func() bool { return resolver.Readiness.Ready(backend) }, "200ms").Should(BeFalse())

		done := holdOne(backend)

		s.Endpoints[0].Conditions.Ready = ptr.To(true)
		Expect(k8s.Update(ctx, s)).To(Succeed())
		Eventually(done).Should(Receive(BeNil()))
		addr, ok := resolver.Readiness.Pick(backend, "http")
		Expect(ok).To(BeTrue())
		Expect(addr).To(Equal("10.1.2.3:9080"))

		s.Endpoints[0].Conditions.Ready = ptr.To(false)
		Expect(k8s.Update(ctx, s)).To(Succeed())
		Eventually(func() bool { return resolver.Throttler.Ready(backend) }).Should(BeFalse())

		Expect(k8s.Delete(ctx, s)).To(Succeed())
		Eventually(func() bool { return resolver.Readiness.Ready(backend) }).Should(BeFalse())
	})

	It("releases held requests when their ElastiService is deleted", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		es := newElastiService(ns, "gone-es", "gone")
		Expect(k8s.Create(ctx, es)).To(Succeed())
		Eventually(func() bool { _, ok := resolver.Registry.ByKey(ns, "gone-es"); return ok }).Should(BeTrue())
		backend := types.NamespacedName{Namespace: ns, Name: names.PrivateService("gone")}
		done := holdOne(backend)
		Expect(k8s.Delete(ctx, es)).To(Succeed())
		var err error
		Eventually(done).Should(Receive(&err))
		Expect(errors.Is(err, throttler.ErrGone)).To(BeTrue())
		// What is left is a tombstone, which sends late requests to the public Service.
		g, ok := resolver.Registry.ByKey(ns, "gone-es")
		Expect(ok).To(BeTrue())
		Expect(g.Gone).To(BeTrue())
	})
})

var _ = Describe("route key from its Secret", func() {
	It("loads only the named Secret's key, and clears it when the Secret goes", func(ctx SpecContext) {
		Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: keyNamespace}}))).To(Succeed())
		key := bytes.Repeat([]byte{7}, routesig.KeySize)
		want, err := routesig.New(key)
		Expect(err).NotTo(HaveOccurred())
		sig := want.Sign("shop/app", "", "")

		// A Secret of another name, even with the right data, is not the route key.
		decoy := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: keyNamespace, Name: "decoy"}, Data: map[string][]byte{routesig.SecretKey: key}}
		Expect(k8s.Create(ctx, decoy)).To(Succeed())
		Consistently(func() bool { return resolver.RouteKey.Verify("shop/app", "", "", sig) }).WithTimeout(time.Second).Should(BeFalse())

		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: keyNamespace, Name: routesig.DefaultSecretName},
			Data: map[string][]byte{routesig.SecretKey: key}}
		Expect(k8s.Create(ctx, secret)).To(Succeed())
		Eventually(func() bool { return resolver.RouteKey.Verify("shop/app", "", "", sig) }).WithTimeout(10 * time.Second).Should(BeTrue())

		// A key too short to be safe is refused, and nothing is believed meanwhile.
		secret.Data[routesig.SecretKey] = []byte("short")
		Expect(k8s.Update(ctx, secret)).To(Succeed())
		Eventually(func() *routesig.Signer { return resolver.RouteKey.Signer() }).WithTimeout(10 * time.Second).Should(BeNil())

		secret.Data[routesig.SecretKey] = key
		Expect(k8s.Update(ctx, secret)).To(Succeed())
		Eventually(func() bool { return resolver.RouteKey.Verify("shop/app", "", "", sig) }).WithTimeout(10 * time.Second).Should(BeTrue())
		Expect(k8s.Delete(ctx, secret)).To(Succeed())
		Eventually(func() *routesig.Signer { return resolver.RouteKey.Signer() }).WithTimeout(10 * time.Second).Should(BeNil())
	})
})

var _ = Describe("AuthorizationPolicies", func() {
	It("keeps the store the chain checks callers against current", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "frontend-only"}}
		Expect(k8s.Create(ctx, ap)).To(Succeed())
		Eventually(func() bool { _, ok := resolver.Policies.Policy(ns + "/frontend-only"); return ok }).Should(BeTrue())
		Expect(k8s.Delete(ctx, ap)).To(Succeed())
		Eventually(func() bool { _, ok := resolver.Policies.Policy(ns + "/frontend-only"); return ok }).Should(BeFalse())
	})
})
