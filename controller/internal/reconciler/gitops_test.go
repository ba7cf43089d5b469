//go:build envtest

package reconciler_test

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
)

// The field managers of the GitOps tools whose syncs these specs play: Flux's kustomize-controller
// applies server-side with force; Argo CD's application controller, in its default client-side
// mode, writes the whole manifest back.
const (
	fluxManager = "kustomize-controller"
	argoManager = "argocd-controller"
)

// destinations counts the HTTP destinations of vs whose host is host.
func destinations(vs *networkingv1.VirtualService, host string) int {
	n := 0
	for _, r := range vs.Spec.GetHttp() {
		for _, d := range r.GetRoute() {
			if d.GetDestination().GetHost() == host {
				n++
			}
		}
	}
	return n
}

// rewriteAfter runs sync, which must put the target back into f's VirtualService, and returns
// how long it took from the start of the sync until elasti's rewrite was seen (polled every 2
// ms), then that elasti wrote the VirtualService no more for settle.
func rewriteAfter(f *fixture, sync func() *networkingv1.VirtualService, settle time.Duration) time.Duration {
	GinkgoHelper()
	start := time.Now()
	synced := sync()
	Expect(destinations(synced, "target")).To(BeNumerically(">", 0), "the sync did not put the target back")
	proxy := names.ProxyService("target") + "." + f.ns + ".svc.cluster.local"
	var rewritten *networkingv1.VirtualService
	Eventually(func(g Gomega) {
		rewritten = f.virtualService()
		g.Expect(rewritten.ResourceVersion).NotTo(Equal(synced.ResourceVersion))
		g.Expect(destinations(rewritten, "target")).To(BeZero())
		g.Expect(destinations(rewritten, proxy)).To(Equal(destinations(synced, "target")))
	}).WithTimeout(5 * time.Second).WithPolling(2 * time.Millisecond).Should(Succeed())
	took := time.Since(start)

	changes, last := 0, rewritten.ResourceVersion
	for deadline := time.Now().Add(settle); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if rv := f.virtualService().ResourceVersion; rv != last {
			changes, last = changes+1, rv
		}
	}
	GinkgoWriter.Printf("sync to rewrite: %s; resourceVersion changes in the %s after: %d\n", took.Round(time.Millisecond), settle, changes)
	Expect(changes).To(BeZero(), "elasti kept writing the VirtualService after its rewrite")
	return took
}

// applied is spec as a server-side apply configuration of f's VirtualService.
func applied(f *fixture, spec *apinetworking.VirtualService) *unstructured.Unstructured {
	GinkgoHelper()
	vs := &networkingv1.VirtualService{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "VirtualService"},
		ObjectMeta: objMeta("target", f.ns),
	}
	proto.Merge(&vs.Spec, spec)
	raw, err := json.Marshal(vs)
	Expect(err).NotTo(HaveOccurred())
	u := &unstructured.Unstructured{}
	Expect(json.Unmarshal(raw, &u.Object)).To(Succeed())
	delete(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u
}

// syncs runs sync 5 times and prints how long each took to be rewritten, then once more and
// checks that elasti wrote nothing for 3 s after.
func syncs(f *fixture, what string, sync func() *networkingv1.VirtualService) {
	GinkgoHelper()
	var took []time.Duration
	for range 5 {
		took = append(took, rewriteAfter(f, sync, 500*time.Millisecond))
	}
	slices.Sort(took)
	GinkgoWriter.Printf("%s: sync to rewrite over %d syncs: median %s, max %s\n", what, len(took),
		took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	By("leaving it alone while nothing else changes")
	rewriteAfter(f, sync, 3*time.Second)
}

var _ = Describe("A GitOps sync that reverts the rewrite", func() {
	BeforeEach(resetFakes)
	AfterEach(resetFakes)

	It("rewrites a VirtualService that a server-side apply with force put back (Flux), once per sync", func() {
		f := newFixture(1)
		toZero(f)

		// The apply's own answer, not a read after it: elasti may have rewritten it already.
		sync := func() *networkingv1.VirtualService {
			u := applied(f, f.vsSpec)
			Expect(k8s.Apply(testCtx, client.ApplyConfigurationFromUnstructured(u),
				client.FieldOwner(fluxManager), client.ForceOwnership)).To(Succeed())
			raw, err := json.Marshal(u.Object)
			Expect(err).NotTo(HaveOccurred())
			vs := &networkingv1.VirtualService{}
			Expect(json.Unmarshal(raw, vs)).To(Succeed())
			return vs
		}
		syncs(f, "server-side apply (Flux)", sync)
		vs := f.virtualService()
		Expect(ownsField(managedBy(vs, v1alpha1.FieldManager, ""), "f:http")).To(BeTrue(), "%v", vs.ManagedFields)
		Expect(ownsField(managedBy(vs, v1alpha1.FieldManager, ""), "f:"+v1alpha1.AnnotationOriginalRoutes)).To(BeTrue(), "%v", vs.ManagedFields)
		Expect(f.replicas()).To(BeZero())
		Expect(f.status().Mode).To(Equal(v1alpha1.ModeProxy))

		By("restoring exactly the applied routes on the next wake")
		wakeToServe(f)
		vs = f.virtualService()
		Expect(cmp.Diff(f.vsSpec, &vs.Spec, protocmp.Transform())).To(BeEmpty())
		Expect(vs.Annotations).NotTo(HaveKey(v1alpha1.AnnotationOriginalRoutes))
		// The restore is elasti's write too: spec.http stays elasti's, in Serve mode.
		Expect(ownsField(managedBy(vs, v1alpha1.FieldManager, ""), "f:http")).To(BeTrue(), "%v", vs.ManagedFields)
	})

	It("rewrites a VirtualService whose spec.http an update put back (Argo CD), keeping the edits the sync brought", func() {
		f := newFixture(1)
		toZero(f)

		// What Git holds now: the user changed the weights and added a route since elasti's rewrite.
		synced := f.vsSpec.DeepCopy()
		synced.Http[0].Route[0].Weight, synced.Http[0].Route[1].Weight = 70, 30
		synced.Http = append(synced.Http, &apinetworking.HTTPRoute{
			Name:  "legacy",
			Route: []*apinetworking.HTTPRouteDestination{{Destination: &apinetworking.Destination{Host: "legacy"}}},
		})
		sync := func() *networkingv1.VirtualService {
			vs := f.virtualService()
			vs.Spec.Http = synced.DeepCopy().Http
			Expect(k8s.Update(testCtx, vs, client.FieldOwner(argoManager))).To(Succeed())
			return vs
		}
		syncs(f, "update of spec.http (Argo CD)", sync)

		vs := f.virtualService()
		for i, d := range vs.Spec.Http[0].Route {
			Expect(d.GetWeight()).To(Equal(synced.Http[0].Route[i].GetWeight()))
		}
		Expect(vs.Spec.Http[1].Route[0].GetDestination().GetHost()).To(Equal("legacy"))

		By("restoring the synced routes, edits included, on the next wake")
		wakeToServe(f)
		vs = f.virtualService()
		Expect(cmp.Diff(synced, &vs.Spec, protocmp.Transform())).To(BeEmpty())
		Expect(vs.Annotations).NotTo(HaveKey(v1alpha1.AnnotationOriginalRoutes))
	})
})
