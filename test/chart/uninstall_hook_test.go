//go:build chart

package chart

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// hooks returns the objects that are Helm hooks of the given event.
func hooks(objs []*unstructured.Unstructured, event string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if slices.Contains(strings.Split(o.GetAnnotations()["helm.sh/hook"], ","), event) {
			out = append(out, o)
		}
	}
	return out
}

// withoutHooks drops every Helm hook, leaving what helm install creates and helm uninstall deletes.
func withoutHooks(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	return slices.DeleteFunc(slices.Clone(objs), func(o *unstructured.Unstructured) bool {
		return o.GetAnnotations()["helm.sh/hook"] != ""
	})
}

func TestUninstallHook(t *testing.T) {
	objs := render(t, "--set", "uninstallHook.timeout=90s", "--set", "image.tag=v9")
	pre := hooks(objs, "pre-delete")
	job := find(pre, "Job", "elasti-controller-uninstall")
	if job == nil {
		t.Fatalf("no pre-delete Job; pre-delete hooks: %d", len(pre))
	}
	for _, want := range [][2]string{
		{"ServiceAccount", "elasti-controller-uninstall"}, {"ClusterRole", "elasti-controller-uninstall"},
		{"ClusterRoleBinding", "elasti-controller-uninstall"},
	} {
		o := find(pre, want[0], want[1])
		if o == nil {
			t.Errorf("no pre-delete %s %s: the Job needs its own identity, since the release's is deleted with it", want[0], want[1])
			continue
		}
		// The Job runs at weight 0, so its identity must exist before, and go with it on success.
		w, _ := strconv.Atoi(o.GetAnnotations()["helm.sh/hook-weight"])
		if jw, _ := strconv.Atoi(job.GetAnnotations()["helm.sh/hook-weight"]); w >= jw {
			t.Errorf("%s hook weight %d, want it below the Job's %d", want[0], w, jw)
		}
		if p := o.GetAnnotations()["helm.sh/hook-delete-policy"]; !strings.Contains(p, "hook-succeeded") || !strings.Contains(p, "before-hook-creation") {
			t.Errorf("%s hook-delete-policy %q, want before-hook-creation and hook-succeeded", want[0], p)
		}
	}
	if p := job.GetAnnotations()["helm.sh/hook-delete-policy"]; strings.Contains(p, "hook-failed") {
		t.Errorf("Job hook-delete-policy %q deletes a failed Job, whose log says which ElastiServices were left", p)
	}
	a := args(t, job)
	for _, want := range []string{"--uninstall", "--uninstall-timeout=90s"} {
		if !slices.Contains(a, want) {
			t.Errorf("Job args %v lack %s", a, want)
		}
	}
	containers, _, _ := unstructured.NestedSlice(job.Object, "spec", "template", "spec", "containers")
	if img, _, _ := unstructured.NestedString(containers[0].(map[string]any), "image"); img != "docker.io/elasti/elasti-controller:v9" {
		t.Errorf("Job image %q, want the controller's", img)
	}
	if sa, _, _ := unstructured.NestedString(job.Object, "spec", "template", "spec", "serviceAccountName"); sa != "elasti-controller-uninstall" {
		t.Errorf("Job service account %q", sa)
	}
	if v, _, _ := unstructured.NestedString(job.Object, "spec", "template", "metadata", "annotations", "sidecar.istio.io/inject"); v != "false" {
		t.Errorf("Job sidecar injection %q, want false: a sidecar keeps the Job running", v)
	}
	if b, _, _ := unstructured.NestedInt64(job.Object, "spec", "backoffLimit"); b != 0 {
		t.Errorf("Job backoffLimit %d, want 0", b)
	}
	role := find(pre, "ClusterRole", "elasti-controller-uninstall")
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	if len(rules) != 1 || !slices.Contains(rules[0].(map[string]any)["verbs"].([]any), any("delete")) {
		t.Errorf("uninstall ClusterRole rules %v, want delete on elastiservices", rules)
	}
}

func TestUninstallHookNamespaced(t *testing.T) {
	objs := render(t, "--set", "rbac.namespaced=true", "--set", "watchNamespaces={shop,payments}")
	pre := hooks(objs, "pre-delete")
	if find(pre, "ClusterRole", "elasti-controller-uninstall") != nil {
		t.Errorf("namespaced RBAC still renders a ClusterRole for the uninstall hook")
	}
	var roleNS []string
	for _, o := range pre {
		if o.GetKind() == "Role" && o.GetName() == "elasti-controller-uninstall" {
			roleNS = append(roleNS, o.GetNamespace())
		}
	}
	slices.Sort(roleNS)
	if want := []string{"elasti-system", "payments", "shop"}; !slices.Equal(roleNS, want) {
		t.Errorf("uninstall Roles in %v, want %v", roleNS, want)
	}
	if a := args(t, find(pre, "Job", "elasti-controller-uninstall")); !slices.Contains(a, "--watch-namespaces=shop,payments") {
		t.Errorf("Job args %v lack --watch-namespaces", a)
	}
}

func TestUninstallHookDisabled(t *testing.T) {
	objs := render(t, "--set", "uninstallHook.enabled=false")
	if pre := hooks(objs, "pre-delete"); len(pre) != 0 {
		t.Errorf("uninstallHook.enabled=false still renders %d pre-delete hooks", len(pre))
	}
	if len(withoutHooks(objs)) != len(withoutHooks(render(t))) {
		t.Errorf("disabling the hook changed what the release installs")
	}
}
