//go:build chart

package chart

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// grants reports whether a Role or ClusterRole has a rule for group/resource.
func grants(role *unstructured.Unstructured, group, resource string) bool {
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	for _, r := range rules {
		groups, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "apiGroups")
		resources, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resources")
		if slices.Contains(groups, group) && slices.Contains(resources, resource) {
			return true
		}
	}
	return false
}

// Leader election's Lease and core Events are granted by the controller's Role in the release
// namespace, in either RBAC mode, and by nothing else: not kube-system's leases, not every
// namespace's.
func TestLeaderElectionRole(t *testing.T) {
	for name, tc := range map[string]struct{ args []string }{
		"cluster RBAC":    {[]string{"--namespace", "ops"}},
		"namespaced RBAC": {[]string{"--namespace", "ops", "--set", "rbac.namespaced=true", "--set", "watchNamespaces={shop}"}},
	} {
		t.Run(name, func(t *testing.T) {
			objs := withoutHooks(render(t, tc.args...))
			role := find(objs, "Role", "elasti-controller-own")
			if role == nil {
				t.Fatal("no leader-election Role")
			}
			if role.GetNamespace() != "ops" || !grants(role, "coordination.k8s.io", "leases") || !grants(role, "", "events") {
				t.Errorf("leader-election Role in %q grants leases %v, events %v; want both, in the release namespace ops",
					role.GetNamespace(), grants(role, "coordination.k8s.io", "leases"), grants(role, "", "events"))
			}
			binding := find(objs, "RoleBinding", "elasti-controller-own")
			if binding == nil {
				t.Fatal("no leader-election RoleBinding")
			}
			ref, _, _ := unstructured.NestedStringMap(binding.Object, "roleRef")
			subjects, _, _ := unstructured.NestedSlice(binding.Object, "subjects")
			if binding.GetNamespace() != "ops" || ref["kind"] != "Role" || ref["name"] != role.GetName() || len(subjects) != 1 ||
				subjects[0].(map[string]any)["name"] != "elasti-controller" || subjects[0].(map[string]any)["namespace"] != "ops" {
				t.Errorf("leader-election RoleBinding in %q binds %v to %v, want the Role to ServiceAccount ops/elasti-controller",
					binding.GetNamespace(), ref, subjects)
			}
			for _, o := range objs {
				if (o.GetKind() == "Role" || o.GetKind() == "ClusterRole") && o != role &&
					(grants(o, "coordination.k8s.io", "leases") || grants(o, "", "events")) {
					t.Errorf("%s %s/%s grants leases or core Events too", o.GetKind(), o.GetNamespace(), o.GetName())
				}
			}
		})
	}
}

// Secrets are granted in the release namespace only: the resolver may read the route key's
// Secret by name and no other, the controller may create Secrets there and read that one.
func TestRouteKeySecretRoles(t *testing.T) {
	for name, args := range map[string][]string{
		"cluster RBAC":    {"--namespace", "ops"},
		"namespaced RBAC": {"--namespace", "ops", "--set", "rbac.namespaced=true", "--set", "watchNamespaces={shop,ops}"},
	} {
		t.Run(name, func(t *testing.T) {
			objs := withoutHooks(render(t, args...))
			want := map[string][]string{"elasti-controller-own": {"create", "get"}, "elasti-resolver-own": {"get", "list", "watch"}}
			for _, o := range objs {
				if o.GetKind() != "Role" && o.GetKind() != "ClusterRole" {
					continue
				}
				rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
				var verbs []string
				for _, r := range rules {
					m := r.(map[string]any)
					resources, _, _ := unstructured.NestedStringSlice(m, "resources")
					if !slices.Contains(resources, "secrets") {
						continue
					}
					v, _, _ := unstructured.NestedStringSlice(m, "verbs")
					names, _, _ := unstructured.NestedStringSlice(m, "resourceNames")
					// Only create, which Kubernetes cannot limit by name, may come without one.
					if !slices.Equal(v, []string{"create"}) && !slices.Equal(names, []string{"elasti-route-key"}) {
						t.Errorf("%s %s/%s grants %v on secrets %v, want only elasti-route-key", o.GetKind(), o.GetNamespace(), o.GetName(), v, names)
					}
					verbs = append(verbs, v...)
				}
				if len(verbs) == 0 {
					continue
				}
				slices.Sort(verbs)
				if w, ok := want[o.GetName()]; !ok || o.GetKind() != "Role" || o.GetNamespace() != "ops" || !slices.Equal(verbs, w) {
					t.Errorf("%s %s/%s grants %v on secrets; want only the Roles %v in ops", o.GetKind(), o.GetNamespace(), o.GetName(), verbs, want)
				}
				delete(want, o.GetName())
			}
			if len(want) > 0 {
				t.Errorf("no secrets rules in %v", want)
			}
		})
	}
}

// Namespaced RBAC with no namespaces would give the controller Roles in its own namespace only:
// it could read nothing it serves. The schema refuses it and says what is missing.
func TestNamespacedRBACNeedsNamespaces(t *testing.T) {
	out := renderFailure(t, "--set", "rbac.namespaced=true")
	if !strings.Contains(out, "watchNamespaces") {
		t.Errorf("rbac.namespaced=true without watchNamespaces refused without naming watchNamespaces: %s", out)
	}
	if out := renderFailure(t, "--set", "rbac.namespaced=true", "--set", "watchNamespaces=null"); !strings.Contains(out, "watchNamespaces") {
		t.Errorf("rbac.namespaced=true with watchNamespaces=null refused without naming watchNamespaces: %s", out)
	}
	render(t, "--set", "rbac.namespaced=false")
}

const vapAPI = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"

// The ValidatingAdmissionPolicy that narrows the controller's writes: rendered where the API
// server has the API, bound with Deny, and matching the requests of the ServiceAccount the
// controller's Deployment runs as, in the release namespace. The envtest suite of
// controller/internal/reconciler shows what it admits and denies.
func TestAdmissionPolicy(t *testing.T) {
	objs := render(t, "--namespace", "ops", "--api-versions", vapAPI)
	policy := find(objs, "ValidatingAdmissionPolicy", "elasti-controller")
	binding := find(objs, "ValidatingAdmissionPolicyBinding", "elasti-controller")
	if policy == nil || binding == nil {
		t.Fatalf("with %s: policy %v, binding %v", vapAPI, policy != nil, binding != nil)
	}
	if policy.GetLabels()["app.kubernetes.io/part-of"] != "elasti" || binding.GetLabels()["app.kubernetes.io/part-of"] != "elasti" {
		t.Errorf("policy labels %v, binding labels %v, want the chart's", policy.GetLabels(), binding.GetLabels())
	}

	sa, _, _ := unstructured.NestedString(find(objs, "Deployment", "elasti-controller").Object, "spec", "template", "spec", "serviceAccountName")
	user := "system:serviceaccount:ops:" + sa
	conds, _, _ := unstructured.NestedSlice(policy.Object, "spec", "matchConditions")
	if len(conds) != 1 || conds[0].(map[string]any)["expression"] != "request.userInfo.username == '"+user+"'" {
		t.Errorf("matchConditions %v, want one for %s, the controller's ServiceAccount", conds, user)
	}
	rules, _, _ := unstructured.NestedSlice(policy.Object, "spec", "matchConstraints", "resourceRules")
	var resources []string
	for _, r := range rules {
		rs, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resources")
		resources = append(resources, rs...)
	}
	for _, want := range []string{"services", "endpointslices", "virtualservices", "destinationrules"} {
		if !slices.Contains(resources, want) {
			t.Errorf("the policy matches %v, not %s", resources, want)
		}
	}
	if fp, _, _ := unstructured.NestedString(policy.Object, "spec", "failurePolicy"); fp != "Fail" {
		t.Errorf("failurePolicy %q, want Fail", fp)
	}
	name, _, _ := unstructured.NestedString(binding.Object, "spec", "policyName")
	actions, _, _ := unstructured.NestedStringSlice(binding.Object, "spec", "validationActions")
	if name != policy.GetName() || !slices.Equal(actions, []string{"Deny"}) {
		t.Errorf("binding names policy %q with actions %v, want %s with [Deny]", name, actions, policy.GetName())
	}

	for what, args := range map[string][]string{
		"an API server without the API": nil,
		"rbac.admissionPolicy=false":    {"--api-versions", vapAPI, "--set", "rbac.admissionPolicy=false"},
	} {
		k := kinds(render(t, args...))
		if k["ValidatingAdmissionPolicy"]+k["ValidatingAdmissionPolicyBinding"] != 0 {
			t.Errorf("%s: the policy is still rendered", what)
		}
	}
}
