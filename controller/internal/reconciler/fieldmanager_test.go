//go:build envtest

package reconciler_test

import (
	"slices"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/scaler"
	"github.com/elasti-dev/elasti/internal/names"
)

// managedBy returns the managedFields entries of o written by manager, on subresource ("" for
// the object itself).
func managedBy(o client.Object, manager, subresource string) []metav1.ManagedFieldsEntry {
	var out []metav1.ManagedFieldsEntry
	for _, e := range o.GetManagedFields() {
		if e.Manager == manager && e.Subresource == subresource {
			out = append(out, e)
		}
	}
	return out
}

// ownsField reports whether one of entries owns the field, such as "f:http".
func ownsField(entries []metav1.ManagedFieldsEntry, field string) bool {
	return slices.ContainsFunc(entries, func(e metav1.ManagedFieldsEntry) bool {
		return e.FieldsV1 != nil && strings.Contains(e.FieldsV1.GetRawString(), `"`+field+`"`)
	})
}

var _ = Describe("elasti's field manager", func() {
	BeforeEach(resetFakes)
	AfterEach(resetFakes)

	It("is named on every object and subresource elasti writes", func() {
		f := newFixture(1)
		toZero(f)

		vs := f.virtualService()
		Expect(ownsField(managedBy(vs, v1alpha1.FieldManager, ""), "f:http")).To(BeTrue(),
			"no managedFields entry of %s owns spec.http: %v", v1alpha1.FieldManager, vs.ManagedFields)
		Expect(managedBy(vs, v1alpha1.FieldManager, "")[0].Operation).To(Equal(metav1.ManagedFieldsOperationUpdate))

		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), es)).To(Succeed())
		Expect(ownsField(managedBy(es, v1alpha1.FieldManager, "status"), "f:mode")).To(BeTrue(), "status: %v", es.ManagedFields)
		Expect(ownsField(managedBy(es, v1alpha1.FieldManager, ""), "f:finalizers")).To(BeTrue(), "finalizer: %v", es.ManagedFields)

		// What elasti creates was written by elasti alone.
		for _, o := range []client.Object{
			&corev1.Service{ObjectMeta: objMeta(names.PrivateService("target"), f.ns)},
			&discoveryv1.EndpointSlice{ObjectMeta: objMeta(names.ResolverSlice("target", "ipv4"), f.ns)},
			&networkingv1.DestinationRule{ObjectMeta: objMeta(names.PrivateDestinationRule("target"), f.ns)},
			&networkingv1.VirtualService{ObjectMeta: objMeta(names.PrivateVirtualService("target"), f.ns)},
		} {
			Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(o), o)).To(Succeed())
			for _, e := range o.GetManagedFields() {
				Expect(e.Manager).To(Equal(v1alpha1.FieldManager), "%T %s: %v", o, o.GetName(), o.GetManagedFields())
			}
		}
	})

	It("is named on the target's /scale", func() {
		// The API server drops a /scale writer's entry once replicas are zero (the Scale's
		// replicas is omitempty), and records none for later /scale writes after that, so the
		// scaler's write is seen on a target that was never at zero.
		f := newFixture(3600)
		s := &scaler.Scaler{Client: k8s, Mapper: k8s.RESTMapper()}
		Expect(s.Set(testCtx, f.ns, f.es.Spec.ScaleTargetRef, scaler.Scale{}, 3)).To(Succeed())
		d := &appsv1.Deployment{}
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: "target"}, d)).To(Succeed())
		Expect(ownsField(managedBy(d, v1alpha1.FieldManager, "scale"), "f:replicas")).To(BeTrue(), "/scale: %v", d.ManagedFields)
	})
})
