//go:build envtest

package reconciler_test

import (
	"encoding/json"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/testsupport/testenv"
)

// The chart's ValidatingAdmissionPolicy (charts/elasti/admission), installed by the suite, as
// the API server applies it to requests by the controller's ServiceAccount. The rest of the
// suite runs the controller under it; these specs try what the controller must not do.
var _ = Describe("The controller's admission policy", func() {
	var (
		ns         string
		controller client.Client
	)
	BeforeEach(func() {
		ns = newNamespace()
		var err error
		controller, err = client.New(testenv.AsController(adminCfg, resolverNS), client.Options{Scheme: mgrScheme})
		Expect(err).NotTo(HaveOccurred())
	})
	owned := map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}

	// denied expects err to be the policy's refusal, naming it and saying why.
	denied := func(err error, why string) {
		GinkgoHelper()
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(And(ContainSubstring("ValidatingAdmissionPolicy 'elasti-controller'"), ContainSubstring(why)))
	}
	service := func(name string, labels map[string]string) *corev1.Service {
		meta := objMeta(name, ns)
		meta.Labels = labels
		return &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	}

	It("denies creating, labelling and deleting a Service elasti does not own", func() {
		denied(controller.Create(testCtx, service("theirs", nil)), "may write only objects labelled app.kubernetes.io/managed-by=elasti")

		theirs := service("theirs", nil)
		Expect(k8s.Create(testCtx, theirs)).To(Succeed())
		claimed := theirs.DeepCopy()
		claimed.Labels = owned
		denied(controller.Patch(testCtx, claimed, client.MergeFrom(theirs)), "UPDATE of services "+ns+"/theirs")
		denied(controller.Delete(testCtx, theirs), "DELETE of services "+ns+"/theirs")
		Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(theirs), &corev1.Service{})).To(Succeed())

		slice := &discoveryv1.EndpointSlice{ObjectMeta: objMeta("theirs", ns), AddressType: discoveryv1.AddressTypeIPv4}
		denied(controller.Create(testCtx, slice), "CREATE of endpointslices")
	})

	It("allows creating, changing and deleting a labelled Service", func() {
		mine := service("mine", owned)
		Expect(controller.Create(testCtx, mine)).To(Succeed())
		before := mine.DeepCopy()
		mine.Spec.Ports[0].Port = 81
		Expect(controller.Patch(testCtx, mine, client.MergeFrom(before))).To(Succeed())
		Expect(controller.Delete(testCtx, mine)).To(Succeed())
	})

	It("lets the controller change only the routes and elasti's annotation of a user's VirtualService", func() {
		vs := &networkingv1.VirtualService{ObjectMeta: objMeta("shop", ns)}
		vs.Spec.Hosts = []string{"shop"}
		vs.Spec.Http = []*apinetworking.HTTPRoute{{Route: []*apinetworking.HTTPRouteDestination{{Destination: &apinetworking.Destination{Host: "shop"}}}}}
		denied(controller.Create(testCtx, vs.DeepCopy()), "CREATE of virtualservices")
		Expect(k8s.Create(testCtx, vs)).To(Succeed())

		patch := func(p string) error {
			return controller.Patch(testCtx, vs.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(p)))
		}
		By("allowing what the route rewrite writes")
		Expect(patch(`{"metadata":{"annotations":{"` + v1alpha1.AnnotationOriginalRoutes + `":"{}"}},` +
			`"spec":{"http":[{"route":[{"destination":{"host":"elasti-resolver.elasti-system.svc.cluster.local","port":{"number":8012}}}]}]}}`)).To(Succeed())

		By("denying everything else")
		only := "may change only spec.http and the elasti.dev/original-routes annotation of VirtualService " + ns + "/shop"
		for _, p := range []string{
			`{"spec":{"hosts":["shop","evil.example.com"]}}`,
			`{"spec":{"gateways":["istio-system/ingress"]}}`,
			`{"metadata":{"annotations":{"other":"x"}}}`,
			`{"metadata":{"labels":{"` + v1alpha1.LabelManagedBy + `":"` + v1alpha1.ManagedByValue + `"}}}`,
			`{"metadata":{"finalizers":["example.com/hold"]}}`,
		} {
			denied(patch(p), only)
		}
		denied(controller.Delete(testCtx, vs), "DELETE of virtualservices")
	})

	It("lets the controller write only AuthorizationPolicies that ALLOW the resolver's principal on selected pods", func() {
		write := func(name string, spec string) error {
			ap := &unstructured.Unstructured{}
			ap.SetAPIVersion("security.istio.io/v1")
			ap.SetKind("AuthorizationPolicy")
			ap.SetNamespace(ns)
			ap.SetName(name)
			ap.SetLabels(owned)
			var body map[string]any
			Expect(json.Unmarshal([]byte(spec), &body)).To(Succeed())
			ap.Object["spec"] = body
			return controller.Create(testCtx, ap)
		}
		resolver := `"cluster.local/ns/` + resolverNS + `/sa/elasti-resolver"`
		Expect(write("ok", `{"selector":{"matchLabels":{"app":"shop"}},"rules":[{"from":[{"source":{"principals":[`+resolver+`]}}]}]}`)).To(Succeed())
		only := "may write only AuthorizationPolicies that ALLOW the principal of the resolver on a selected workload"
		for name, spec := range map[string]string{
			"other-principal": `{"selector":{"matchLabels":{"app":"shop"}},"rules":[{"from":[{"source":{"principals":["cluster.local/ns/x/sa/y"]}}]}]}`,
			"two-principals":  `{"selector":{"matchLabels":{"app":"shop"}},"rules":[{"from":[{"source":{"principals":[` + resolver + `,"cluster.local/ns/x/sa/y"]}}]}]}`,
			"everyone":        `{"selector":{"matchLabels":{"app":"shop"}},"rules":[{}]}`,
			"no-selector":     `{"rules":[{"from":[{"source":{"principals":[` + resolver + `]}}]}]}`,
			"deny":            `{"action":"DENY","selector":{"matchLabels":{"app":"shop"}},"rules":[{"from":[{"source":{"principals":[` + resolver + `]}}]}]}`,
			"two-rules":       `{"selector":{"matchLabels":{"app":"shop"}},"rules":[{"from":[{"source":{"principals":[` + resolver + `]}}]},{}]}`,
			"namespaces-too":  `{"selector":{"matchLabels":{"app":"shop"}},"rules":[{"from":[{"source":{"principals":[` + resolver + `],"namespaces":["x"]}}]}]}`,
		} {
			denied(write(name, spec), only)
		}
	})
})
