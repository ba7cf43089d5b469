//go:build envtest

package reconciler_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// KEDA's pause annotations and elasti's mark on a pause it set, written out rather than taken from
// the scaler: they are stored on users' ScaledObjects, so renaming one in the scaler would strand
// the pauses an older elasti set, and this spec should fail then.
const (
	kedaPausedReplicas = "autoscaling.keda.sh/paused-replicas"
	kedaPaused         = "autoscaling.keda.sh/paused"
	pausedByElasti     = "elasti.dev/paused-autoscaler"
)

var _ = Describe("The KEDA hand-off", func() {
	BeforeEach(resetFakes)
	AfterEach(func() { prom.Active.Store(false) })

	// withScaledObject gives f a ScaledObject of the target with annotations, valid against
	// KEDA's CRD, and hands 1..N to it. f was made with a long cooldown, so that it cannot go to
	// zero before it has the autoscaler; the cooldown becomes short in the same patch.
	withScaledObject := func(f *fixture, annotations map[string]string) {
		GinkgoHelper()
		so := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "keda.sh/v1alpha1",
			"kind":       "ScaledObject",
			"metadata":   map[string]any{"name": "target", "namespace": f.ns},
			"spec": map[string]any{
				"scaleTargetRef":  map[string]any{"name": "target"},
				"minReplicaCount": int64(1),
				"maxReplicaCount": int64(10),
				"triggers": []any{map[string]any{"type": "prometheus", "metadata": map[string]any{
					"serverAddress": prom.URL, "query": "sum(rate(requests_total[1m]))", "threshold": "50",
				}}},
			},
		}}
		so.SetAnnotations(annotations)
		Expect(k8s.Create(testCtx, so, client.FieldValidation(metav1.FieldValidationStrict))).To(Succeed())

		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(testCtx, client.ObjectKeyFromObject(f.es), es)).To(Succeed())
		patch := client.MergeFrom(es.DeepCopy())
		es.Spec.Autoscaler = &v1alpha1.Autoscaler{Type: v1alpha1.AutoscalerKEDA, Name: "target"}
		es.Spec.CooldownPeriod = 2
		Expect(k8s.Patch(testCtx, es, patch)).To(Succeed())
		f.cooldown = es.Spec.CooldownPeriod
	}
	scaledObjectAnnotations := func(f *fixture) map[string]string {
		GinkgoHelper()
		so := &unstructured.Unstructured{}
		so.SetAPIVersion("keda.sh/v1alpha1")
		so.SetKind("ScaledObject")
		Expect(k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: "target"}, so)).To(Succeed())
		return so.GetAnnotations()
	}

	It("pauses KEDA at zero with elasti's mark, and lifts both on the wake", func() {
		f := newFixture(3600)
		withScaledObject(f, map[string]string{"team": "shop"})

		// The pause is written before the scale, in the same pass.
		toZero(f)
		Expect(scaledObjectAnnotations(f)).To(Equal(map[string]string{
			"team": "shop", kedaPausedReplicas: "0", pausedByElasti: "true"}))

		// The resume is written before the scale up, in the same pass.
		wakeToServe(f)
		Expect(scaledObjectAnnotations(f)).To(Equal(map[string]string{"team": "shop"}))
	})

	DescribeTable("leaves a ScaledObject its owner paused as its owner left it, through zero and the wake",
		func(paused map[string]string) {
			f := newFixture(3600)
			withScaledObject(f, paused)

			toZero(f)
			Expect(scaledObjectAnnotations(f)).To(Equal(paused))

			wakeToServe(f)
			Expect(scaledObjectAnnotations(f)).To(Equal(paused))
		},
		Entry("paused", map[string]string{kedaPaused: "true"}),
		Entry("held at a count", map[string]string{kedaPausedReplicas: "3"}),
	)
})
