//go:build chart

// Package chart renders the Helm chart with each values option and checks what comes out.
// make test-chart runs it with HELM set to the pinned helm binary.
package chart

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/elasti-dev/elasti/internal/manifest"
	"github.com/elasti-dev/elasti/internal/testsupport/repo"
)

func chartDir() string { return repo.Path("charts", "elasti") }

// render runs helm template on the chart with args and returns the objects.
func render(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	return pinnedObjects(t, "HELM", append([]string{"template", "elasti", chartDir(), "--namespace", "elasti-system"}, args...)...)
}

// pinnedObjects runs the pinned binary that make test-chart names in the environment variable
// env with args, and returns the objects it prints.
func pinnedObjects(t *testing.T, env string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		t.Fatalf("%s must name a pinned binary; run make test-chart", env)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", env, args, err, out)
	}
	objs, err := manifest.Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// renderFailure runs helm template with args, which must fail, and returns its output.
func renderFailure(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(os.Getenv("HELM"), append([]string{"template", "elasti", chartDir()}, args...)...).CombinedOutput()
	if err == nil {
		t.Errorf("helm template %v succeeded, want a failure", args)
	}
	return string(out)
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func args(t *testing.T, d *unstructured.Unstructured) []string {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(containers) == 0 {
		t.Fatalf("%s has no containers", d.GetName())
	}
	raw, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	return raw
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	m := map[string]int{}
	for _, o := range objs {
		m[o.GetKind()]++
	}
	return m
}

func TestDefaults(t *testing.T) {
	objs := render(t)
	for _, want := range [][2]string{
		{"Deployment", "elasti-controller"}, {"Deployment", "elasti-resolver"}, {"Service", "elasti-resolver"},
		{"Service", "elasti-controller"}, {"PodDisruptionBudget", "elasti-resolver"},
		{"ClusterRole", "elasti-controller"}, {"ClusterRole", "elasti-resolver"},
	} {
		if find(objs, want[0], want[1]) == nil {
			t.Errorf("no %s %s in the default render", want[0], want[1])
		}
	}
	if n := kinds(objs)["Role"]; n != 2 || find(objs, "Role", "elasti-controller-own") == nil || find(objs, "Role", "elasti-resolver-own") == nil {
		t.Errorf("default render has %d Roles, want ClusterRoles and only each binary's Role in its own namespace", n)
	}
	res := find(objs, "Deployment", "elasti-resolver")
	if r, _, _ := unstructured.NestedFieldNoCopy(res.Object, "spec", "replicas"); fmt.Sprint(r) != "2" {
		t.Errorf("resolver replicas = %v, want 2", r)
	}
	if v, _, _ := unstructured.NestedString(res.Object, "spec", "template", "metadata", "labels", "app"); v != "elasti-resolver" {
		t.Errorf("resolver pods' app label = %q, want elasti-resolver (Kiali draws by it)", v)
	}
	if v, _, _ := unstructured.NestedString(res.Object, "spec", "template", "metadata", "annotations", "sidecar.istio.io/inject"); v != "true" {
		t.Errorf("resolver sidecar injection = %q, want true", v)
	}
	ctrlArgs := args(t, find(objs, "Deployment", "elasti-controller"))
	for _, want := range []string{"--resolver-service=elasti-system/elasti-resolver", "--istio-root-namespace=istio-system", "--activity-users=system:serviceaccount:elasti-system:elasti-resolver", "--leader-elect=true"} {
		if !slices.Contains(ctrlArgs, want) {
			t.Errorf("controller args %v lack %s", ctrlArgs, want)
		}
	}
	role := find(objs, "ClusterRole", "elasti-controller")
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	if len(rules) < 5 {
		t.Errorf("controller ClusterRole has %d rules; the rules from config/rbac are missing", len(rules))
	}
}

func TestNamespacedRBAC(t *testing.T) {
	// The uninstall hook's own Roles are counted in its test.
	objs := withoutHooks(render(t, "--set", "rbac.namespaced=true", "--set", "watchNamespaces={shop,payments}"))
	k := kinds(objs)
	// Two binaries, each with a Role in elasti-system, shop and payments, and each with its
	// own Role (leader election, the route key) in elasti-system; and one Role for both to read
	// the root namespace's AuthorizationPolicies.
	if k["Role"] != 9 || k["RoleBinding"] != 9 {
		t.Errorf("Roles %d, RoleBindings %d; want 9 of each", k["Role"], k["RoleBinding"])
	}
	root := find(objs, "Role", "elasti-authorizationpolicies")
	if root == nil || root.GetNamespace() != "istio-system" {
		t.Fatalf("no Role for the root namespace's AuthorizationPolicies: %v", root)
	}
	if rules, _, _ := unstructured.NestedSlice(root.Object, "rules"); fmt.Sprint(rules) !=
		"[map[apiGroups:[security.istio.io] resources:[authorizationpolicies] verbs:[get list watch]]]" {
		t.Errorf("root namespace Role rules %v, want only reading AuthorizationPolicies", rules)
	}
	if find(objs, "ClusterRole", "elasti-controller") != nil || find(objs, "ClusterRole", "elasti-resolver") != nil {
		t.Errorf("namespaced RBAC still renders the broad ClusterRoles")
	}
	if find(objs, "ClusterRole", "elasti-controller-tokenreview") == nil {
		t.Errorf("namespaced RBAC lacks the TokenReview ClusterRole the activity endpoint needs")
	}
	if a := args(t, find(objs, "Deployment", "elasti-resolver")); !slices.Contains(a, "--watch-namespaces=shop,payments") {
		t.Errorf("resolver args %v lack --watch-namespaces", a)
	}
}

func TestNoSidecarAndPodsUpstream(t *testing.T) {
	objs := render(t, "--set", "resolver.istio.sidecar=false", "--set", "resolver.upstream=pods", "--set", "image.pullPolicy=Never")
	res := find(objs, "Deployment", "elasti-resolver")
	if v, _, _ := unstructured.NestedString(res.Object, "spec", "template", "metadata", "annotations", "sidecar.istio.io/inject"); v != "false" {
		t.Errorf("sidecar injection = %q, want false", v)
	}
	if a := args(t, res); !slices.Contains(a, "--upstream=pods") {
		t.Errorf("resolver args %v lack --upstream=pods", a)
	}
}

// The resolver's sidecar must see every private Service whatever a root-namespace default
// Sidecar restricts, and must keep the protocol a caller speaks: its port names none.
func TestResolverIstioScopeAndProtocol(t *testing.T) {
	if find(render(t), "Sidecar", "elasti-resolver") != nil {
		t.Errorf("a Sidecar was rendered without Istio's API")
	}
	objs := render(t, "--api-versions", "networking.istio.io/v1/Sidecar", "--set-string", "resolver.podLabels.team=platform")
	sc := find(objs, "Sidecar", "elasti-resolver")
	if sc == nil {
		t.Fatal("no resolver Sidecar with Istio's API present")
	}
	sel, _, _ := unstructured.NestedString(sc.Object, "spec", "workloadSelector", "labels", "app")
	egress, _, _ := unstructured.NestedSlice(sc.Object, "spec", "egress")
	if sel != "elasti-resolver" || fmt.Sprint(egress) != "[map[hosts:[*/*]]]" {
		t.Errorf("Sidecar selects %q with egress %v, want the resolver's pods and every namespace", sel, egress)
	}
	if find(render(t, "--api-versions", "networking.istio.io/v1/Sidecar", "--set", "resolver.istio.sidecarScope=false"), "Sidecar", "elasti-resolver") != nil {
		t.Errorf("resolver.istio.sidecarScope=false still rendered the Sidecar")
	}
	ports, _, _ := unstructured.NestedSlice(find(objs, "Service", "elasti-resolver").Object, "spec", "ports")
	p := ports[0].(map[string]any)
	if _, named := p["appProtocol"]; named || strings.HasPrefix(fmt.Sprint(p["name"]), "http") || fmt.Sprint(p["port"]) != "8012" {
		t.Errorf("resolver port %v names a protocol; the resolver's sidecar would speak HTTP/1.1 to it", p)
	}
	if v, _, _ := unstructured.NestedString(find(objs, "Deployment", "elasti-resolver").Object, "spec", "template", "metadata", "labels", "team"); v != "platform" {
		t.Errorf("resolver.podLabels not on the pods: team = %q", v)
	}
}

// The resolver's principal follows the release and trustDomain, and the resolver believes
// x-forwarded-client-cert only from its sidecar, and only with one.
func TestAuthorizationPolicyIdentity(t *testing.T) {
	objs := render(t)
	if a := args(t, find(objs, "Deployment", "elasti-controller")); !slices.Contains(a, "--resolver-principal=cluster.local/ns/elasti-system/sa/elasti-resolver") {
		t.Errorf("controller args %v lack the resolver's principal", a)
	}
	if a := args(t, find(objs, "Deployment", "elasti-resolver")); !slices.Contains(a, "--xfcc-trusted-peers=127.0.0.6/32,::6/128") {
		t.Errorf("resolver args %v do not trust the sidecar's address", a)
	}
	objs = render(t, "--set", "trustDomain=corp.example", "--set", "resolver.istio.sidecar=false")
	if a := args(t, find(objs, "Deployment", "elasti-controller")); !slices.Contains(a, "--resolver-principal=corp.example/ns/elasti-system/sa/elasti-resolver") {
		t.Errorf("controller args %v ignore trustDomain", a)
	}
	for _, a := range args(t, find(objs, "Deployment", "elasti-resolver")) {
		if strings.HasPrefix(a, "--xfcc-trusted-peers") {
			t.Errorf("a resolver without a sidecar believes x-forwarded-client-cert: %s", a)
		}
	}
	if out := renderFailure(t, "--set", "resolver.istio.xfccTrustedPeers={not an address}"); !strings.Contains(out, "xfccTrustedPeers") {
		t.Errorf("a bad trusted peer was not refused by name: %s", out)
	}
}

func TestDestinationRuleNeedsIstio(t *testing.T) {
	if find(render(t), "DestinationRule", "elasti-resolver") != nil {
		t.Errorf("a DestinationRule was rendered without Istio's API")
	}
	objs := render(t, "--api-versions", "networking.istio.io/v1/DestinationRule")
	dr := find(objs, "DestinationRule", "elasti-resolver")
	if dr == nil {
		t.Fatal("no resolver DestinationRule with Istio's API present")
	}
	if v, _, _ := unstructured.NestedFieldNoCopy(dr.Object, "spec", "trafficPolicy", "outlierDetection", "consecutive5xxErrors"); fmt.Sprint(v) != "0" {
		t.Errorf("outlier ejection on 5xx = %v, want 0: a holding resolver must not be ejected", v)
	}
	if find(render(t, "--api-versions", "networking.istio.io/v1/DestinationRule", "--set", "resolver.istio.destinationRule=false"), "DestinationRule", "elasti-resolver") != nil {
		t.Errorf("destinationRule=false still renders it")
	}
}

func TestSchemaRejectsUnknownValues(t *testing.T) {
	if out := renderFailure(t, "--set", "resolver.upstreem=pods"); !strings.Contains(out, "upstreem") {
		t.Errorf("a misspelt value was refused without naming it: %s", out)
	}
}

// The resolver bounds its connections to one upstream by default, so that a wake-up burst does
// not open one connection per held request on the first pod; 0 lifts the bound, and a negative
// number is refused by the schema.
func TestMaxConnsPerUpstream(t *testing.T) {
	if a := args(t, find(render(t), "Deployment", "elasti-resolver")); !slices.Contains(a, "--max-conns-per-upstream=100") {
		t.Errorf("resolver args %v lack the default --max-conns-per-upstream=100", a)
	}
	if a := args(t, find(render(t, "--set", "resolver.maxConnsPerUpstream=0"), "Deployment", "elasti-resolver")); !slices.Contains(a, "--max-conns-per-upstream=0") {
		t.Errorf("resolver args %v lack --max-conns-per-upstream=0", a)
	}
	if out := renderFailure(t, "--set", "resolver.maxConnsPerUpstream=-1"); !strings.Contains(out, "maxConnsPerUpstream") {
		t.Errorf("a negative maxConnsPerUpstream was refused without naming it: %s", out)
	}
}

func TestColdStartHeaderOffByDefault(t *testing.T) {
	if a := args(t, find(render(t), "Deployment", "elasti-resolver")); slices.Contains(a, "--cold-start-header") {
		t.Errorf("resolver args %v have --cold-start-header by default", a)
	}
	if a := args(t, find(render(t, "--set", "resolver.coldStartHeader=true"), "Deployment", "elasti-resolver")); !slices.Contains(a, "--cold-start-header") {
		t.Errorf("resolver args %v lack --cold-start-header with resolver.coldStartHeader=true", a)
	}
	if out := renderFailure(t, "--set", "resolver.coldStartHeader=yes"); !strings.Contains(out, "coldStartHeader") {
		t.Errorf("a non-boolean coldStartHeader was refused without naming it: %s", out)
	}
}
