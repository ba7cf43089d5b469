//go:build chart

package chart

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/elasti-dev/elasti/internal/manifest"
	"github.com/elasti-dev/elasti/internal/testsupport/repo"
)

// kustomize builds config/<dir> with the pinned kustomize that make test-chart names in KUSTOMIZE.
func kustomize(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	return pinnedObjects(t, "KUSTOMIZE", "build", repo.Path("config", dir))
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Decode(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return objs
}

func ids(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}

func TestKustomizeDefault(t *testing.T) {
	objs := kustomize(t, "default")
	want := []string{
		"ClusterRole /elasti-controller", "ClusterRole /elasti-resolver",
		"ClusterRoleBinding /elasti-controller", "ClusterRoleBinding /elasti-resolver",
		"CustomResourceDefinition /elastiservices.elasti.dev",
		"Deployment elasti-system/elasti-controller", "Deployment elasti-system/elasti-resolver",
		"DestinationRule elasti-system/elasti-resolver",
		"Namespace /elasti-system",
		"PodDisruptionBudget elasti-system/elasti-controller", "PodDisruptionBudget elasti-system/elasti-resolver",
		"Role elasti-system/elasti-controller", "Role elasti-system/elasti-resolver",
		"RoleBinding elasti-system/elasti-controller", "RoleBinding elasti-system/elasti-resolver",
		"Service elasti-system/elasti-controller", "Service elasti-system/elasti-resolver",
		"ServiceAccount elasti-system/elasti-controller", "ServiceAccount elasti-system/elasti-resolver",
		"Sidecar elasti-system/elasti-resolver",
	}
	if diff := cmp.Diff(want, ids(objs)); diff != "" {
		t.Errorf("kustomize build config/default (-want +got):\n%s", diff)
	}
	for _, o := range objs {
		if o.GetLabels()["app.kubernetes.io/part-of"] != "elasti" {
			t.Errorf("%s %s lacks app.kubernetes.io/part-of=elasti", o.GetKind(), o.GetName())
		}
	}

	// Images: the pinned repository and tag, one per binary.
	for bin, image := range map[string]string{
		"elasti-controller": "docker.io/elasti/elasti-controller:dev",
		"elasti-resolver":   "docker.io/elasti/elasti-resolver:dev",
	} {
		d := find(objs, "Deployment", bin)
		containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
		if len(containers) != 1 || containers[0].(map[string]any)["image"] != image {
			t.Errorf("%s containers %v, want one with image %s", bin, containers, image)
		}
	}

	// RBAC is exactly what controller-gen generated from the markers (a ClusterRole per binary,
	// and a Role each in elasti-system: leader election and the route key for the controller,
	// the route key for the resolver), bound to the service account each Deployment runs as.
	for _, bin := range []string{"controller", "resolver"} {
		name := "elasti-" + bin
		generated := readObjects(t, repo.Path("config", "rbac", bin, "role.yaml"))
		if wantKinds := map[string]int{"controller": 2, "resolver": 2}[bin]; len(generated) != wantKinds {
			t.Fatalf("config/rbac/%s/role.yaml has %d objects, want %d", bin, len(generated), wantKinds)
		}
		for _, role := range generated {
			kind := role.GetKind()
			wantRules, _, _ := unstructured.NestedSlice(role.Object, "rules")
			got := find(objs, kind, name)
			if got == nil || got.GetNamespace() != role.GetNamespace() {
				t.Errorf("config/default lacks %s %s/%s of config/rbac/%s/role.yaml", kind, role.GetNamespace(), name, bin)
				continue
			}
			gotRules, _, _ := unstructured.NestedSlice(got.Object, "rules")
			if len(wantRules) == 0 || !cmp.Equal(wantRules, gotRules) {
				t.Errorf("%s %s differs from config/rbac/%s/role.yaml:\n%s", kind, name, bin, cmp.Diff(wantRules, gotRules))
			}
			binding := find(objs, kind+"Binding", name)
			if binding == nil {
				t.Errorf("no %sBinding %s", kind, name)
				continue
			}
			ref, _, _ := unstructured.NestedStringMap(binding.Object, "roleRef")
			subjects, _, _ := unstructured.NestedSlice(binding.Object, "subjects")
			wantSubjects := []any{map[string]any{"kind": "ServiceAccount", "name": name, "namespace": "elasti-system"}}
			if ref["kind"] != kind || ref["name"] != name || binding.GetNamespace() != role.GetNamespace() || !cmp.Equal(wantSubjects, subjects) {
				t.Errorf("%sBinding %s/%s binds %v to %v, want %s %s to ServiceAccount elasti-system/%s",
					kind, binding.GetNamespace(), name, ref, subjects, kind, name, name)
			}
		}
		if sa, _, _ := unstructured.NestedString(find(objs, "Deployment", name).Object, "spec", "template", "spec", "serviceAccountName"); sa != name {
			t.Errorf("Deployment %s runs as %q, want %s", name, sa, name)
		}
	}

	// The CRD is the generated one.
	crd := readObjects(t, repo.Path("config", "crd", "bases", "elasti.dev_elastiservices.yaml"))
	if diff := cmp.Diff(crd[0].Object["spec"], find(objs, "CustomResourceDefinition", "elastiservices.elasti.dev").Object["spec"]); diff != "" {
		t.Errorf("the CRD differs from config/crd/bases (-want +got):\n%s", diff)
	}
}

// config/ and the chart install the same thing: the workloads, Services, PodDisruptionBudget and
// DestinationRule agree with the chart's defaults in everything but labels.
func TestKustomizeMatchesChart(t *testing.T) {
	k := kustomize(t, "default")
	h := render(t, "--api-versions", "networking.istio.io/v1/DestinationRule", "--api-versions", "networking.istio.io/v1/Sidecar")
	for _, c := range []struct {
		kind, name string
		path       []string
	}{
		{"Deployment", "elasti-controller", []string{"spec", "template", "spec"}},
		{"Deployment", "elasti-controller", []string{"spec", "template", "metadata", "annotations"}},
		{"Deployment", "elasti-controller", []string{"spec", "template", "metadata", "labels"}},
		{"Deployment", "elasti-controller", []string{"spec", "replicas"}},
		{"Deployment", "elasti-controller", []string{"spec", "selector"}},
		{"Deployment", "elasti-resolver", []string{"spec", "template", "spec"}},
		{"Deployment", "elasti-resolver", []string{"spec", "template", "metadata", "annotations"}},
		{"Deployment", "elasti-resolver", []string{"spec", "template", "metadata", "labels"}},
		{"Deployment", "elasti-resolver", []string{"spec", "replicas"}},
		{"Deployment", "elasti-resolver", []string{"spec", "selector"}},
		{"Service", "elasti-controller", []string{"spec"}},
		{"Service", "elasti-resolver", []string{"spec"}},
		{"Service", "elasti-resolver", []string{"metadata", "annotations"}},
		{"PodDisruptionBudget", "elasti-controller", []string{"spec"}},
		{"PodDisruptionBudget", "elasti-resolver", []string{"spec"}},
		{"DestinationRule", "elasti-resolver", []string{"spec"}},
		{"Sidecar", "elasti-resolver", []string{"spec"}},
	} {
		ko, ho := find(k, c.kind, c.name), find(h, c.kind, c.name)
		if ko == nil || ho == nil {
			t.Errorf("%s %s: kustomize %v, chart %v", c.kind, c.name, ko != nil, ho != nil)
			continue
		}
		kv, kok, _ := unstructured.NestedFieldNoCopy(ko.Object, c.path...)
		hv, hok, _ := unstructured.NestedFieldNoCopy(ho.Object, c.path...)
		if !kok || !hok {
			t.Errorf("%s %s has no %v: kustomize %v, chart %v", c.kind, c.name, c.path, kok, hok)
			continue
		}
		if diff := cmp.Diff(hv, kv); diff != "" {
			t.Errorf("%s %s %v: config/ differs from the chart (-chart +config):\n%s", c.kind, c.name, c.path, diff)
		}
	}
	// The label ServiceMonitors select the resolver's Service by; the controller finds its
	// slices by kubernetes.io/service-name, which needs no label of ours.
	const l = "app.kubernetes.io/component"
	if kv, hv := find(k, "Service", "elasti-resolver").GetLabels()[l], find(h, "Service", "elasti-resolver").GetLabels()[l]; kv != hv || kv == "" {
		t.Errorf("resolver Service label %s: config/ %q, chart %q", l, kv, hv)
	}
}

// config/samples is every sample, and each base builds on its own.
func TestKustomizeSamplesAndBases(t *testing.T) {
	var want []*unstructured.Unstructured
	for _, dir := range []string{"istio-gateway", "keda", "argo-rollout"} {
		files, err := filepath.Glob(repo.Path("samples", dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if filepath.Base(f) != "kustomization.yaml" {
				want = append(want, readObjects(t, f)...)
			}
		}
	}
	if diff := cmp.Diff(ids(want), ids(kustomize(t, "samples"))); diff != "" {
		t.Errorf("config/samples (-sample files +kustomize):\n%s", diff)
	}
	for dir, kinds := range map[string][]string{
		"crd": {"CustomResourceDefinition"}, "rbac": {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"},
		"manager": {"Deployment", "PodDisruptionBudget", "Service"}, "resolver": {"Deployment", "DestinationRule", "PodDisruptionBudget", "Service", "Sidecar"},
	} {
		var got []string
		for _, o := range kustomize(t, dir) {
			if !slices.Contains(got, o.GetKind()) {
				got = append(got, o.GetKind())
			}
		}
		sort.Strings(got)
		if !slices.Equal(got, kinds) {
			t.Errorf("config/%s builds kinds %v, want %v", dir, got, kinds)
		}
	}
}
