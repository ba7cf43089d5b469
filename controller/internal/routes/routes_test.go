package routes

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/routesig"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var target = Params{
	Key:          "shop/target-es",
	Service:      "target",
	Namespace:    "shop",
	Domain:       "cluster.local",
	ProxyHost:    "target-elasti-proxy.shop.svc.cluster.local",
	ResolverHost: "elasti-resolver.elasti-system.svc.cluster.local",
	Signer:       testSigner,
}

// testSigner signs with a fixed key, so the golden files are stable.
var testSigner = func() *routesig.Signer {
	s, err := routesig.New([]byte("golden-route-key-0123456789abcdef"))
	if err != nil {
		panic(err)
	}
	return s
}()

func load(t *testing.T, path string) *networkingv1.VirtualService {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vs := &networkingv1.VirtualService{}
	if err := yaml.Unmarshal(raw, vs); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return vs
}

func dump(t *testing.T, vs *networkingv1.VirtualService) []byte {
	t.Helper()
	raw, err := yaml.Marshal(vs)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func diffVS(a, b *networkingv1.VirtualService) string {
	return cmp.Diff(a, b, protocmp.Transform())
}

// TestGolden checks each rewrite against testdata/<case>/proxy.yaml, and that restore(rewrite(x))
// is x, and that both directions are idempotent.
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			input := load(t, filepath.Join(dir, "input.yaml"))
			proxied := input.DeepCopy()
			changed, err := Rewrite(proxied, target)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if !changed {
				t.Fatalf("Rewrite changed nothing")
			}
			golden := filepath.Join(dir, "proxy.yaml")
			if *update {
				if err := os.WriteFile(golden, dump(t, proxied), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if d := diffVS(load(t, golden), proxied); d != "" {
				t.Errorf("Rewrite() differs from %s (-want +got):\n%s", golden, d)
			}
			if !RoutesTo(proxied, target) || !RoutesTo(input, target) {
				t.Errorf("RoutesTo() = false for a VirtualService that routes to the target")
			}

			again := proxied.DeepCopy()
			if changed, err := Rewrite(again, target); err != nil || changed {
				t.Errorf("second Rewrite() = %v, %v; want no change", changed, err)
			}

			restored := proxied.DeepCopy()
			if changed, err := Restore(restored, target); err != nil || !changed {
				t.Fatalf("Restore() = %v, %v; want a change", changed, err)
			}
			if d := diffVS(input, restored); d != "" {
				t.Errorf("Restore(Rewrite(x)) != x (-want +got):\n%s", d)
			}
			if changed, err := Restore(restored, target); err != nil || changed {
				t.Errorf("second Restore() = %v, %v; want no change", changed, err)
			}
		})
	}
}

func TestRestoreKeepsUserEditsMadeInProxyMode(t *testing.T) {
	input := load(t, "testdata/subsets-weights/input.yaml")
	vs := input.DeepCopy()
	if _, err := Rewrite(vs, target); err != nil {
		t.Fatal(err)
	}
	// The user shifts the canary weights, adds a route to another service, and sets a timeout.
	vs.Spec.Http[0].Route[0].Weight = 70
	vs.Spec.Http[0].Route[1].Weight = 30
	vs.Spec.Http[0].Timeout = nil
	extra := load(t, "testdata/mixed-destinations/input.yaml").Spec.Http[2]
	vs.Spec.Http = append(vs.Spec.Http, extra)

	if _, err := Restore(vs, target); err != nil {
		t.Fatal(err)
	}
	want := input.DeepCopy()
	want.Spec.Http[0].Route[0].Weight = 70
	want.Spec.Http[0].Route[1].Weight = 30
	want.Spec.Http[0].Timeout = nil
	want.Spec.Http = append(want.Spec.Http, extra)
	if d := diffVS(want, vs); d != "" {
		t.Errorf("Restore() lost a user edit (-want +got):\n%s", d)
	}
}

// A route that the previous release rewrote names the ElastiService under the header's old
// name: Rewrite renames it, and Restore still finds it.
func TestPreviousReleaseHeaderIsRenamed(t *testing.T) {
	input := load(t, "testdata/subsets-weights/input.yaml")
	want := load(t, "testdata/subsets-weights/proxy.yaml")
	old := want.DeepCopy()
	n := 0
	_ = eachDestination(&old.Spec, func(d *apinetworking.HTTPRouteDestination) error {
		if set := d.GetHeaders().GetRequest().GetSet(); set[v1alpha1.HeaderElastiService] != "" {
			set[v1alpha1.HeaderElastiServiceOld] = set[v1alpha1.HeaderElastiService]
			delete(set, v1alpha1.HeaderElastiService)
			n++
		}
		return nil
	})
	if n == 0 {
		t.Fatal("the golden file has no rewritten destination")
	}
	restored := old.DeepCopy()
	if changed, err := Rewrite(old, target); err != nil || !changed {
		t.Fatalf("Rewrite() = %v, %v; want the header renamed", changed, err)
	}
	if d := diffVS(want, old); d != "" {
		t.Errorf("Rewrite() of a previous release's route (-want +got):\n%s", d)
	}
	if _, err := Restore(restored, target); err != nil {
		t.Fatal(err)
	}
	if d := diffVS(input, restored); d != "" {
		t.Errorf("Restore() of a previous release's route (-want +got):\n%s", d)
	}
}

func TestRestoreWithoutRecordRebuildsFromHeaders(t *testing.T) {
	vs := load(t, "testdata/subsets-weights/input.yaml")
	if _, err := Rewrite(vs, target); err != nil {
		t.Fatal(err)
	}
	delete(vs.Annotations, v1alpha1.AnnotationOriginalRoutes)
	if _, err := Restore(vs, target); err != nil {
		t.Fatal(err)
	}
	got := vs.Spec.Http[0].Route[1]
	if got.GetDestination().GetHost() != target.FQDN() || got.GetDestination().GetSubset() != "v2" ||
		got.GetDestination().GetPort().GetNumber() != 8080 || got.GetWeight() != 10 || got.GetHeaders() != nil {
		t.Errorf("rebuilt destination = %v, want %s subset v2 port 8080 weight 10 without headers", got, target.FQDN())
	}
}

func TestRestoreWithoutRecordDropsTheRemovedHeaders(t *testing.T) {
	vs := load(t, "testdata/short-host/input.yaml")
	want := vs.DeepCopy()
	if _, err := Rewrite(vs, target); err != nil {
		t.Fatal(err)
	}
	delete(vs.Annotations, v1alpha1.AnnotationOriginalRoutes)
	if _, err := Restore(vs, target); err != nil {
		t.Fatal(err)
	}
	for i, r := range vs.Spec.Http {
		for j, d := range r.Route {
			if h := d.GetHeaders(); h != nil && h.GetRequest() != nil && !proto.Equal(h, want.Spec.Http[i].Route[j].GetHeaders()) {
				t.Errorf("route %d destination %d: headers %v left after a rebuild, want %v", i, j, h, want.Spec.Http[i].Route[j].GetHeaders())
			}
		}
	}
}

// Every rewritten destination carries a signature of its own target, port and subset, which
// the resolver checks; a new route key re-signs them, and a restore is still exact.
func TestRewriteSignsHeaders(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/*")
	other, err := routesig.New([]byte("another-route-key-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			input := load(t, filepath.Join(dir, "input.yaml"))
			vs := input.DeepCopy()
			if _, err := Rewrite(vs, target); err != nil {
				t.Fatal(err)
			}
			check := func(s *routesig.Signer) int {
				n := 0
				_ = eachDestination(&vs.Spec, func(d *apinetworking.HTTPRouteDestination) error {
					if !rewrittenFor(d, target) {
						return nil
					}
					n++
					req := d.GetHeaders().GetRequest()
					set := req.GetSet()
					if !s.Verify(target.Key, set[v1alpha1.HeaderPort], set[v1alpha1.HeaderSubset], set[v1alpha1.HeaderSignature]) {
						t.Errorf("destination %v: signature does not verify", d)
					}
					for _, h := range []string{v1alpha1.HeaderPort, v1alpha1.HeaderSubset} {
						if _, ok := set[h]; !ok && !slices.Contains(req.GetRemove(), h) {
							t.Errorf("destination %v neither sets nor removes %s, so a client's copy would reach the resolver", d, h)
						}
					}
					return nil
				})
				return n
			}
			if check(testSigner) == 0 {
				t.Fatal("no destination was rewritten")
			}
			rekeyed := target
			rekeyed.Signer = other
			if changed, err := Rewrite(vs, rekeyed); err != nil || !changed {
				t.Fatalf("Rewrite with a new key: changed=%v, %v; want the destinations re-signed", changed, err)
			}
			check(other)
			if changed, _ := Rewrite(vs, rekeyed); changed {
				t.Error("Rewrite with the same key again changed the VirtualService")
			}
			if _, err := Restore(vs, rekeyed); err != nil {
				t.Fatal(err)
			}
			if d := diffVS(input, vs); d != "" {
				t.Errorf("Restore after a re-sign differs from the input (-want +got):\n%s", d)
			}
		})
	}
}

func TestRestoreLeavesOtherTargetsAlone(t *testing.T) {
	other := target
	other.Key, other.Service = "shop/legacy-es", "legacy"
	vs := load(t, "testdata/mixed-destinations/input.yaml")
	for _, tg := range []Params{target, other} {
		if _, err := Rewrite(vs, tg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Restore(vs, target); err != nil {
		t.Fatal(err)
	}
	if !rewrittenFor(vs.Spec.Http[0].Route[1], other) || !rewrittenFor(vs.Spec.Http[2].Route[0], other) {
		t.Errorf("Restore() for one target restored another's destinations")
	}
	if got := vs.Spec.Http[0].Route[0].GetDestination().GetHost(); got != "target" {
		t.Errorf("target destination host = %q, want it restored to %q", got, "target")
	}
	if _, ok := vs.Annotations[v1alpha1.AnnotationOriginalRoutes]; !ok {
		t.Errorf("the other target's records were dropped")
	}
}

// Istio expands only a name without a dot; everything else is the literal name of a cluster.
func TestNormalize(t *testing.T) {
	tests := map[string]struct{ host, ns, want string }{
		"short name is relative to the VirtualService": {"target", "shop", "target.shop.svc.cluster.local"},
		"fqdn":                                  {"target.shop.svc.cluster.local", "other", "target.shop.svc.cluster.local"},
		"namespace-qualified is literal":        {"target.shop", "other", "target.shop"},
		"svc suffix is literal":                 {"target.shop.svc", "other", "target.shop.svc"},
		"capitals and trailing dot are literal": {"Target.shop.svc.cluster.local.", "other", "Target.shop.svc.cluster.local."},
		"external host stays":                   {"api.example.com", "shop", "api.example.com"},
		"wildcard stays":                        {"*", "shop", "*"},
		"ipv6 address stays":                    {"fd00::1", "shop", "fd00::1"},
		"empty stays empty":                     {"", "shop", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Normalize(tc.host, tc.ns, "cluster.local"); got != tc.want {
				t.Errorf("Normalize(%q, %q) = %q, want %q", tc.host, tc.ns, got, tc.want)
			}
		})
	}
}

func TestVisible(t *testing.T) {
	vs := func(ns string, exportTo ...string) *networkingv1.VirtualService {
		v := &networkingv1.VirtualService{}
		v.Namespace = ns
		v.Spec.ExportTo = exportTo
		return v
	}
	tests := map[string]struct {
		vs       *networkingv1.VirtualService
		exportTo []string
		want     bool
	}{
		"defaults":                        {vs("gw"), nil, true},
		"exported nowhere":                {vs("shop", "~"), nil, false},
		"service private, same namespace": {vs("shop"), []string{"."}, true},
		// Callers in shop see both the Service and a VirtualService exported everywhere.
		"service private, VS elsewhere exported everywhere": {vs("gw"), []string{"."}, true},
		"service private, VS elsewhere exported to shop":    {vs("gw", "shop"), []string{"."}, true},
		"service private, VS elsewhere private":             {vs("gw", "."), []string{"."}, false},
		"service and VS exported to disjoint namespaces":    {vs("gw", "a", "b"), []string{"c", "."}, false},
		"service exported nowhere":                          {vs("gw"), []string{"~"}, false},
		"service exported to the VS namespace":              {vs("gw"), []string{"gw"}, true},
		"service exported everywhere":                       {vs("gw"), []string{"*"}, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Visible(tc.vs, "shop", tc.exportTo); got != tc.want {
				t.Errorf("Visible() = %v, want %v", got, tc.want)
			}
		})
	}
}

// A destination rewritten by a version that sent callers to the resolver's own Service moves
// to the proxy Service on the port it had, and still restores exactly.
func TestRewriteMovesDestinationsFromTheResolverService(t *testing.T) {
	vs := load(t, "testdata/subsets-weights/input.yaml")
	want := vs.DeepCopy()
	if _, err := Rewrite(vs, target); err != nil {
		t.Fatal(err)
	}
	for _, d := range vs.Spec.Http[0].Route {
		d.Destination = &apinetworking.Destination{Host: target.ResolverHost, Port: &apinetworking.PortSelector{Number: 8012}}
	}
	changed, err := Rewrite(vs, target)
	if err != nil || !changed {
		t.Fatalf("Rewrite = %v, %v; want a change", changed, err)
	}
	for _, d := range vs.Spec.Http[0].Route {
		if d.GetDestination().GetHost() != target.ProxyHost || d.GetDestination().GetPort().GetNumber() != 8080 {
			t.Errorf("destination = %v, want %s port 8080", d.GetDestination(), target.ProxyHost)
		}
	}
	if _, err := Restore(vs, target); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&vs.Spec, &want.Spec) {
		t.Errorf("restored %v, want %v", &vs.Spec, &want.Spec)
	}
}
