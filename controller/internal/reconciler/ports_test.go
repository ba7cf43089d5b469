//go:build envtest

package reconciler_test

import (
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/testing/protocmp"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
)

// addPort adds a port to f's Service, as its owner would.
func (f *fixture) addPort(p corev1.ServicePort) {
	GinkgoHelper()
	svc := &corev1.Service{}
	Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: "target"}, svc)).To(Succeed())
	svc.Spec.Ports = append(svc.Spec.Ports, p)
	Expect(k8s.Update(testCtx, svc)).To(Succeed())
}

// unsupported waits until f's Ready condition is False with reason UnsupportedPort and returns
// its message.
func (f *fixture) unsupported() string {
	GinkgoHelper()
	var msg string
	Eventually(func(g Gomega) {
		c, _ := readyOf(g, f.es)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(v1alpha1.ReasonUnsupportedPort))
		msg = c.Message
	}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
	return msg
}

var _ = Describe("Services with ports that are not HTTP", func() {
	BeforeEach(resetFakes)
	AfterEach(resetFakes)

	// In Serve, at full size, with the user's routes and no resolver slice.
	awake := func(f *fixture, replicas int32) func(Gomega) {
		return func(g Gomega) {
			g.Expect(f.replicas()).To(Equal(replicas))
			g.Expect(f.status().Mode).To(Equal(v1alpha1.ModeServe))
			g.Expect(cmp.Diff(f.vsSpec, &f.virtualService().Spec, protocmp.Transform())).To(BeEmpty())
			err := k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ResolverSlice("target", "ipv4")}, &discoveryv1.EndpointSlice{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a resolver slice exists")
		}
	}

	It("never puts a Service with a TCP port in Proxy mode or its target at zero, and names the port", func() {
		f := newFixture(1)
		f.addPort(corev1.ServicePort{Name: "tcp-db", Port: 5432})

		Expect(f.unsupported()).To(Equal(`port 5432 "tcp-db" is TCP (name prefix); elasti can hold only HTTP requests, so the target is kept awake`))
		// Idle for three cooldowns: any other Service would be at zero by now.
		Consistently(awake(f, 1)).WithTimeout(3 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})

	It("wakes a target at zero when a tcp route starts sending callers to one of its ports, and keeps it up", func() {
		f := newFixture(1)
		toZero(f)

		By("holding a port Istio sniffs like an HTTP one")
		f.addPort(corev1.ServicePort{Name: "cache", Port: 9000})
		Eventually(func(g Gomega) {
			slice := &discoveryv1.EndpointSlice{}
			g.Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ResolverSlice("target", "ipv4")}, slice)).To(Succeed())
			g.Expect(slice.Ports).To(HaveLen(2))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
		Expect(f.replicas()).To(BeZero())

		By("waking it once a VirtualService routes raw TCP to that port")
		tcp := &networkingv1.VirtualService{ObjectMeta: objMeta("cache", f.ns)}
		tcp.Spec.Hosts = []string{"target"}
		tcp.Spec.Tcp = []*apinetworking.TCPRoute{{
			Match: []*apinetworking.L4MatchAttributes{{Port: 9000}},
			Route: []*apinetworking.RouteDestination{{Destination: &apinetworking.Destination{
				Host: "target", Port: &apinetworking.PortSelector{Number: 9000}}}},
		}}
		Expect(k8s.Create(testCtx, tcp)).To(Succeed())
		Expect(f.unsupported()).To(HavePrefix(`port 9000 "cache" is TCP (tcp route of VirtualService ` + f.ns + `/cache)`))
		Eventually(f.replicas).WithTimeout(wait).Should(Equal(int32(2)))
		// HTTP callers stay held on the resolver until the woken target is ready.
		Expect(f.status().Mode).To(Equal(v1alpha1.ModeProxy))
		setTargetReady(f.ns, 2)
		Eventually(awake(f, 2)).WithTimeout(wait).WithPolling(tick).Should(Succeed())
		Consistently(awake(f, 2)).WithTimeout(3 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})
})
