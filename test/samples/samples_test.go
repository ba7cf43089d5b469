//go:build envtest

package samples_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/elasti-dev/elasti/internal/manifest"
	"github.com/elasti-dev/elasti/internal/testsupport/repo"
	"github.com/elasti-dev/elasti/internal/testsupport/testenv"
)

var (
	env  *envtest.Environment
	k8s  client.Client
	disc discovery.DiscoveryInterface
	ctx  = context.Background()
)

func TestSamples(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Samples dry-run against the CRDs (envtest)")
}

var _ = BeforeSuite(func() {
	keda, err := repo.KEDACRDs()
	Expect(err).NotTo(HaveOccurred())
	rollouts, err := repo.ToolModuleFile("github.com/argoproj/argo-rollouts", "manifests/crds/rollout-crd.yaml")
	Expect(err).NotTo(HaveOccurred())

	env, err = testenv.New(keda, rollouts)
	Expect(err).NotTo(HaveOccurred())
	cfg, err := env.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })

	// Unstructured objects only: the scheme needs no types, and the mapper asks the server.
	k8s, err = client.New(cfg, client.Options{})
	Expect(err).NotTo(HaveOccurred())
	disc, err = discovery.NewDiscoveryClientForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
})

// sampleFiles are the manifests in samples/, every YAML file but kustomize's.
func sampleFiles() []string {
	var files []string
	root := repo.Path("samples")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ext := filepath.Ext(path)
		if !d.IsDir() && (ext == ".yaml" || ext == ".yml") && d.Name() != "kustomization.yaml" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return files
}

func decode(path string) ([]*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return manifest.Decode(raw)
}

func dryRun(o *unstructured.Unstructured) error {
	return k8s.Create(ctx, o.DeepCopy(), client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict))
}

func describe(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
}

func findObj(objs []*unstructured.Unstructured, apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if (apiVersion == "" || o.GetAPIVersion() == apiVersion) && o.GetKind() == kind &&
			o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	return nil
}

// hasScale reports whether the API server serves a /scale subresource for gvk, which elasti
// scales every target through.
func hasScale(gvk schema.GroupVersionKind) (bool, error) {
	list, err := disc.ServerResourcesForGroupVersion(gvk.GroupVersion().String())
	if err != nil {
		return false, err
	}
	for _, r := range list.APIResources {
		if r.Kind == gvk.Kind && !slices.Contains([]byte(r.Name), '/') {
			return slices.ContainsFunc(list.APIResources, func(s metav1.APIResource) bool { return s.Name == r.Name+"/scale" }), nil
		}
	}
	return false, fmt.Errorf("%s is not served", gvk)
}

var _ = Describe("samples", func() {
	files := sampleFiles()
	It("finds the samples", func() {
		var rel []string
		for _, f := range files {
			r, err := filepath.Rel(repo.Path("samples"), f)
			Expect(err).NotTo(HaveOccurred())
			rel = append(rel, r)
		}
		Expect(rel).To(ContainElements("istio-gateway/shop.yaml", "keda/orders.yaml", "argo-rollout/catalog.yaml"))
	})

	for _, file := range files {
		It("server-side dry-runs every object of "+filepath.Base(filepath.Dir(file))+"/"+filepath.Base(file), func() {
			objs, err := decode(file)
			Expect(err).NotTo(HaveOccurred())
			Expect(objs).NotTo(BeEmpty())

			// Namespaces first, while they do not exist; then for real, since the API server
			// checks that a namespaced object's namespace exists even in a dry run.
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					Expect(dryRun(o)).To(Succeed(), describe(o))
				}
			}
			for _, o := range objs {
				if o.GetKind() != "Namespace" {
					continue
				}
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.GetName()}}
				if err := k8s.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
					Expect(err).NotTo(HaveOccurred())
				}
			}

			elasti := 0
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					continue
				}
				mapping, err := k8s.RESTMapper().RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version)
				Expect(err).NotTo(HaveOccurred(), "%s: no such kind on the server", describe(o))
				if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
					Expect(o.GetNamespace()).NotTo(BeEmpty(), "%s sets no namespace; samples are applied as they are", describe(o))
					Expect(findObj(objs, "v1", "Namespace", "", o.GetNamespace())).NotTo(BeNil(),
						"%s is in namespace %s, which the sample does not create", describe(o), o.GetNamespace())
				}
				Expect(dryRun(o)).To(Succeed(), describe(o))

				if o.GetKind() != "ElastiService" {
					continue
				}
				// What an ElastiService names must be in the sample too.
				elasti++
				ns := o.GetNamespace()
				svc, _, _ := unstructured.NestedString(o.Object, "spec", "service")
				Expect(findObj(objs, "v1", "Service", ns, svc)).NotTo(BeNil(), "%s names Service %s, which the sample lacks", describe(o), svc)
				ref, _, _ := unstructured.NestedStringMap(o.Object, "spec", "scaleTargetRef")
				Expect(findObj(objs, ref["apiVersion"], ref["kind"], ns, ref["name"])).NotTo(BeNil(),
					"%s scales %v, which the sample lacks", describe(o), ref)
				gv, err := schema.ParseGroupVersion(ref["apiVersion"])
				Expect(err).NotTo(HaveOccurred())
				scalable, err := hasScale(gv.WithKind(ref["kind"]))
				Expect(err).NotTo(HaveOccurred())
				Expect(scalable).To(BeTrue(), "%s has no /scale subresource for elasti to scale through", ref["kind"])
				if as, ok, _ := unstructured.NestedStringMap(o.Object, "spec", "autoscaler"); ok && as["type"] == "keda" {
					Expect(findObj(objs, "keda.sh/v1alpha1", "ScaledObject", ns, as["name"])).NotTo(BeNil(),
						"%s hands off to ScaledObject %s, which the sample lacks", describe(o), as["name"])
				}
			}
			Expect(elasti).To(BeNumerically(">", 0), "a sample without an ElastiService")
		})
	}

	It("rejects what is wrong, so that the dry runs above mean something", func() {
		objs, err := decode(repo.Path("samples", "keda", "orders.yaml"))
		Expect(err).NotTo(HaveOccurred())
		so := findObj(objs, "keda.sh/v1alpha1", "ScaledObject", "orders", "orders").DeepCopy()
		Expect(unstructured.SetNestedField(so.Object, int64(1), "spec", "minReplicaCounts")).To(Succeed())
		Expect(dryRun(so)).To(MatchError(ContainSubstring("minReplicaCounts")), "an unknown ScaledObject field")
		es := findObj(objs, "elasti.dev/v1alpha1", "ElastiService", "orders", "orders").DeepCopy()
		Expect(unstructured.SetNestedField(es.Object, "cron", "spec", "autoscaler", "type")).To(Succeed())
		Expect(dryRun(es)).To(MatchError(ContainSubstring("autoscaler.type")), "an unknown autoscaler type")
	})
})
