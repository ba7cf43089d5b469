//go:build chart

package chart

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// podsSelected returns the names of the objects whose pod template labels selector (a
// metav1.LabelSelector under path in o) matches.
func podsSelected(t *testing.T, objs []*unstructured.Unstructured, o *unstructured.Unstructured, path ...string) []string {
	t.Helper()
	raw, ok, _ := unstructured.NestedMap(o.Object, path...)
	if !ok {
		t.Fatalf("%s %s has no %v", o.GetKind(), o.GetName(), path)
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &ls); err != nil {
		t.Fatal(err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Empty() {
		t.Fatalf("%s %s %v selects every pod", o.GetKind(), o.GetName(), path)
	}
	var out []string
	for _, w := range objs {
		podLabels, ok, _ := unstructured.NestedStringMap(w.Object, "spec", "template", "metadata", "labels")
		if ok && sel.Matches(labels.Set(podLabels)) {
			out = append(out, w.GetKind()+" "+w.GetName())
		}
	}
	return out
}

// Two controller replicas by default, on different nodes where there are several, with a
// PodDisruptionBudget that keeps one through a drain and the lease timings of the values.
func TestControllerHADefaults(t *testing.T) {
	objs := render(t)
	d := find(objs, "Deployment", "elasti-controller")
	if r, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas"); fmt.Sprint(r) != "2" {
		t.Errorf("controller replicas = %v, want 2", r)
	}
	a := args(t, d)
	for _, want := range []string{"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=1s"} {
		if !slices.Contains(a, want) {
			t.Errorf("controller args %v lack %s", a, want)
		}
	}
	want := []string{"Deployment elasti-controller"}
	pdb := find(objs, "PodDisruptionBudget", "elasti-controller")
	if pdb == nil {
		t.Fatal("no controller PodDisruptionBudget in the default render")
	}
	if v, _, _ := unstructured.NestedFieldNoCopy(pdb.Object, "spec", "minAvailable"); fmt.Sprint(v) != "1" {
		t.Errorf("controller PodDisruptionBudget minAvailable = %v, want 1", v)
	}
	if got := podsSelected(t, objs, pdb, "spec", "selector"); !slices.Equal(got, want) {
		t.Errorf("controller PodDisruptionBudget selects the pods of %v, want %v", got, want)
	}
	spread, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "topologySpreadConstraints")
	if len(spread) != 1 {
		t.Fatalf("controller topologySpreadConstraints = %v, want one by hostname", spread)
	}
	c := &unstructured.Unstructured{Object: spread[0].(map[string]any)}
	if k, w := c.Object["topologyKey"], c.Object["whenUnsatisfiable"]; k != "kubernetes.io/hostname" || w != "ScheduleAnyway" {
		t.Errorf("controller spread by %v when unsatisfiable %v, want kubernetes.io/hostname and ScheduleAnyway (a preference: one node must still run both)", k, w)
	}
	if got := podsSelected(t, objs, c, "labelSelector"); !slices.Equal(got, want) {
		t.Errorf("controller spread counts the pods of %v, want %v", got, want)
	}
}

func TestControllerLeaseTimingsFromValues(t *testing.T) {
	a := args(t, find(render(t, "--set", "controller.leaderElection.leaseDuration=15s",
		"--set", "controller.leaderElection.renewDeadline=10s", "--set", "controller.leaderElection.retryPeriod=1500ms"),
		"Deployment", "elasti-controller"))
	for _, want := range []string{"--leader-elect-lease-duration=15s", "--leader-elect-renew-deadline=10s", "--leader-elect-retry-period=1500ms"} {
		if !slices.Contains(a, want) {
			t.Errorf("controller args %v lack %s", a, want)
		}
	}
}

// The budgets are rendered only where they let a drain evict a replica.
func TestPodDisruptionBudgets(t *testing.T) {
	tests := map[string]struct {
		name             string
		set              []string
		wantMinAvailable string // empty: no budget
	}{
		"controller: one replica":     {name: "elasti-controller", set: []string{"controller.replicas=1"}},
		"controller: disabled":        {name: "elasti-controller", set: []string{"controller.podDisruptionBudget.enabled=false"}},
		"controller: three replicas":  {name: "elasti-controller", set: []string{"controller.replicas=3", "controller.podDisruptionBudget.minAvailable=2"}, wantMinAvailable: "2"},
		"controller: blocking drains": {name: "elasti-controller", set: []string{"controller.replicas=2", "controller.podDisruptionBudget.minAvailable=2"}},
		"resolver: two replicas":      {name: "elasti-resolver", wantMinAvailable: "1"},
		"resolver: one replica":       {name: "elasti-resolver", set: []string{"resolver.replicas=1"}},
		"resolver: autoscaled from 3": {name: "elasti-resolver", set: []string{"resolver.replicas=1", "resolver.autoscaling.enabled=true", "resolver.autoscaling.minReplicas=3"}, wantMinAvailable: "1"},
		"resolver: autoscaled from 1": {name: "elasti-resolver", set: []string{"resolver.autoscaling.enabled=true", "resolver.autoscaling.minReplicas=1"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			pdb := find(render(t, args...), "PodDisruptionBudget", tc.name)
			switch {
			case tc.wantMinAvailable == "" && pdb != nil:
				t.Errorf("a PodDisruptionBudget %s was rendered", tc.name)
			case tc.wantMinAvailable != "" && pdb == nil:
				t.Errorf("no PodDisruptionBudget %s", tc.name)
			case pdb != nil:
				if v, _, _ := unstructured.NestedFieldNoCopy(pdb.Object, "spec", "minAvailable"); fmt.Sprint(v) != tc.wantMinAvailable {
					t.Errorf("minAvailable = %v, want %s", v, tc.wantMinAvailable)
				}
			}
		})
	}
}

// Lease timings client-go would refuse when the controller starts are refused at install, by
// the schema (form) or by the template (order, which a schema cannot compare).
func TestControllerLeaseTimingsRejected(t *testing.T) {
	tests := map[string]struct {
		set  []string
		want string // in helm's output
	}{
		"renew deadline equal to the lease": {set: []string{"controller.leaderElection.renewDeadline=4s"},
			want: "leaseDuration (4s) must be longer than renewDeadline (4s)"},
		"renew deadline longer than the lease": {set: []string{"controller.leaderElection.leaseDuration=2s"},
			want: "leaseDuration (2s) must be longer than renewDeadline (3s)"},
		"lease in minutes, deadline in ms": {set: []string{"controller.leaderElection.leaseDuration=1m", "controller.leaderElection.renewDeadline=60000ms"},
			want: "leaseDuration (1m) must be longer than renewDeadline (60000ms)"},
		"no time to retry a renewal": {set: []string{"controller.leaderElection.retryPeriod=2500ms"},
			want: "renewDeadline (3s) must be longer than 1.2 times retryPeriod (2500ms)"},
		"zero retry period": {set: []string{"controller.leaderElection.retryPeriod=0s"}, want: "retryPeriod"},
		"not a duration":    {set: []string{"controller.leaderElection.leaseDuration=soon"}, want: "leaseDuration"},
		"a bare number":     {set: []string{"controller.leaderElection.leaseDuration=4"}, want: "leaseDuration"},
		"misspelt timing":   {set: []string{"controller.leaderElection.leaseDuraton=4s"}, want: "leaseDuraton"},
		"budget keeps none": {set: []string{"controller.podDisruptionBudget.minAvailable=0"}, want: "minAvailable"},
		"zero replicas":     {set: []string{"controller.replicas=0"}, want: "replicas"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			if out := renderFailure(t, args...); !strings.Contains(out, tc.want) {
				t.Errorf("helm template %v: want an error containing %q, got:\n%s", tc.set, tc.want, out)
			}
		})
	}
}
