//go:build chart

package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestMonitoringOffByDefault(t *testing.T) {
	objs := render(t)
	k := kinds(objs)
	for _, kind := range []string{"ServiceMonitor", "HorizontalPodAutoscaler"} {
		if k[kind] != 0 {
			t.Errorf("default render has %d %s, want none", k[kind], kind)
		}
	}
	if find(objs, "ConfigMap", "elasti-dashboard") != nil {
		t.Errorf("default render has the dashboard ConfigMap")
	}
	res := find(objs, "Deployment", "elasti-resolver")
	if _, ok := res.GetAnnotations()["traffic.sidecar.istio.io/excludeInboundPorts"]; ok {
		t.Errorf("the resolver's metrics port is excluded from the sidecar without ServiceMonitors")
	}
}

func TestServiceMonitors(t *testing.T) {
	objs := render(t, "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.interval=15s",
		"--set", "metrics.serviceMonitor.labels.release=prom")
	for _, c := range []struct{ component, port string }{{"controller", "8080"}, {"resolver", "9090"}} {
		name := "elasti-" + c.component
		sm := find(objs, "ServiceMonitor", name)
		if sm == nil {
			t.Fatalf("no ServiceMonitor %s", name)
		}
		if sm.GetNamespace() != "elasti-system" || sm.GetLabels()["release"] != "prom" {
			t.Errorf("ServiceMonitor %s: namespace %q, labels %v; want elasti-system and release=prom", name, sm.GetNamespace(), sm.GetLabels())
		}
		// The selector must pick exactly this component's Service, and the port must be a
		// named port of it that serves metrics.
		sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		var matched []string
		for _, o := range objs {
			if o.GetKind() == "Service" && o.GetNamespace() == "elasti-system" && selects(sel, o.GetLabels()) {
				matched = append(matched, o.GetName())
			}
		}
		if len(matched) != 1 || matched[0] != name {
			t.Errorf("ServiceMonitor %s selects Services %v, want [%s]", name, matched, name)
		}
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		if len(eps) != 1 {
			t.Fatalf("ServiceMonitor %s has %d endpoints, want 1", name, len(eps))
		}
		ep := eps[0].(map[string]any)
		if ep["interval"] != "15s" || ep["path"] != "/metrics" {
			t.Errorf("ServiceMonitor %s endpoint %v, want interval 15s and path /metrics", name, ep)
		}
		svc := find(objs, "Service", name)
		ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
		found := false
		for _, p := range ports {
			p := p.(map[string]any)
			if p["name"] == ep["port"] && fmt.Sprint(p["port"]) == c.port {
				found = true
			}
		}
		if !found {
			t.Errorf("ServiceMonitor %s scrapes port %v, which is not port %s of Service %s: %v", name, ep["port"], c.port, name, ports)
		}
	}
	res := find(objs, "Deployment", "elasti-resolver")
	if v := res.Object["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)["traffic.sidecar.istio.io/excludeInboundPorts"]; v != "9090" {
		t.Errorf("resolver pods' excludeInboundPorts = %v, want 9090 so that Prometheus can scrape under STRICT mTLS", v)
	}
	noSidecar := find(render(t, "--set", "metrics.serviceMonitor.enabled=true", "--set", "resolver.istio.sidecar=false"), "Deployment", "elasti-resolver")
	if v, _, _ := unstructured.NestedString(noSidecar.Object, "spec", "template", "metadata", "annotations", "traffic.sidecar.istio.io/excludeInboundPorts"); v != "" {
		t.Errorf("excludeInboundPorts = %q without a sidecar, want none", v)
	}
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestDashboardConfigMap(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir(), "dashboards", "elasti.json"))
	if err != nil {
		t.Fatal(err)
	}
	cm := find(render(t, "--set", "metrics.dashboard.enabled=true"), "ConfigMap", "elasti-dashboard")
	if cm == nil {
		t.Fatal("no dashboard ConfigMap with metrics.dashboard.enabled")
	}
	if cm.GetNamespace() != "elasti-system" || cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap in %q with labels %v; want elasti-system and grafana_dashboard=1", cm.GetNamespace(), cm.GetLabels())
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	if got, want := strings.TrimSpace(data["elasti.json"]), strings.TrimSpace(string(raw)); got != want {
		t.Errorf("the ConfigMap's elasti.json differs from dashboards/elasti.json:\n%s", cmp.Diff(want, got))
	}
	var dash map[string]any
	if err := json.Unmarshal([]byte(data["elasti.json"]), &dash); err != nil || dash["uid"] != "elasti" {
		t.Errorf("the ConfigMap's dashboard does not parse as the elasti dashboard: %v", err)
	}

	cm = find(render(t, "--set", "metrics.dashboard.enabled=true", "--set", "metrics.dashboard.namespace=monitoring",
		"--set", "metrics.dashboard.labels.grafana_dashboard=null", "--set", "metrics.dashboard.labels.dash=yes",
		"--set", "metrics.dashboard.annotations.grafana_folder=Mesh"), "ConfigMap", "elasti-dashboard")
	if cm.GetNamespace() != "monitoring" || cm.GetLabels()["dash"] != "yes" || cm.GetAnnotations()["grafana_folder"] != "Mesh" {
		t.Errorf("dashboard ConfigMap in %q, labels %v, annotations %v; want monitoring, dash=yes, grafana_folder=Mesh",
			cm.GetNamespace(), cm.GetLabels(), cm.GetAnnotations())
	}
	if _, ok := cm.GetLabels()["grafana_dashboard"]; ok {
		t.Errorf("the default label survived being set to null: %v", cm.GetLabels())
	}
}

func TestResolverAutoscaling(t *testing.T) {
	objs := render(t, "--set", "resolver.autoscaling.enabled=true", "--set", "resolver.autoscaling.minReplicas=3",
		"--set", "resolver.autoscaling.maxReplicas=12", "--set", "resolver.autoscaling.targetMemoryUtilizationPercentage=80",
		"--set", "resolver.autoscaling.behavior.scaleDown.stabilizationWindowSeconds=600")
	res := find(objs, "Deployment", "elasti-resolver")
	if _, found, _ := unstructured.NestedFieldNoCopy(res.Object, "spec", "replicas"); found {
		t.Errorf("the resolver Deployment sets replicas while the HPA owns them")
	}
	hpa := find(objs, "HorizontalPodAutoscaler", "elasti-resolver")
	if hpa == nil {
		t.Fatal("no resolver HorizontalPodAutoscaler with autoscaling on")
	}
	if hpa.GetAPIVersion() != "autoscaling/v2" {
		t.Errorf("HPA apiVersion %s, want autoscaling/v2", hpa.GetAPIVersion())
	}
	spec := hpa.Object["spec"].(map[string]any)
	want := map[string]any{
		"scaleTargetRef": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "elasti-resolver"},
		"minReplicas":    float64(3), "maxReplicas": float64(12),
		"metrics": []any{
			map[string]any{"type": "Resource", "resource": map[string]any{"name": "cpu", "target": map[string]any{"type": "Utilization", "averageUtilization": float64(70)}}},
			map[string]any{"type": "Resource", "resource": map[string]any{"name": "memory", "target": map[string]any{"type": "Utilization", "averageUtilization": float64(80)}}},
		},
		"behavior": map[string]any{"scaleDown": map[string]any{"stabilizationWindowSeconds": float64(600)}},
	}
	if diff := cmp.Diff(want, spec); diff != "" {
		t.Errorf("HPA spec (-want +got):\n%s", diff)
	}
	// Memory is left out unless asked for.
	hpa = find(render(t, "--set", "resolver.autoscaling.enabled=true"), "HorizontalPodAutoscaler", "elasti-resolver")
	if m, _, _ := unstructured.NestedSlice(hpa.Object, "spec", "metrics"); len(m) != 1 {
		t.Errorf("default HPA has %d metrics, want CPU only", len(m))
	}
}

// Kiali draws a workload by its pods' app and version labels, and the resolver's must be stable
// names rather than a hash, so that caller -> elasti-resolver -> target reads as such.
func TestResolverKialiLabels(t *testing.T) {
	res := find(render(t, "--set", "image.tag=v1.2.3"), "Deployment", "elasti-resolver")
	labels, _, _ := unstructured.NestedStringMap(res.Object, "spec", "template", "metadata", "labels")
	if labels["app"] != "elasti-resolver" || labels["version"] != "v1.2.3" {
		t.Errorf("resolver pod labels %v, want app=elasti-resolver and version=v1.2.3", labels)
	}
}

func TestSchemaRejectsBadMonitoringValues(t *testing.T) {
	for _, set := range []string{
		"metrics.serviceMonitor.interval=soon",
		"resolver.autoscaling.minReplicas=0",
		"metrics.dashboard.enabeld=true",
	} {
		if out, err := exec.Command(os.Getenv("HELM"), "template", "elasti", chartDir(), "--set", set).CombinedOutput(); err == nil {
			t.Errorf("--set %s was accepted:\n%.300s", set, out)
		}
	}
}
