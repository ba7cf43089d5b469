package app_test

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/elasti-dev/elasti/resolver/internal/app"
	"github.com/elasti-dev/elasti/resolver/internal/handler"
	"github.com/elasti-dev/elasti/resolver/internal/resolvertest"
)

// A refused caller must not wake the target: the check comes before Hold in the chain, and the
// policy reaches it through the store New wires.
func TestRefusedCallerWakesNothing(t *testing.T) {
	const frontend, intruder = "cluster.local/ns/frontend/sa/frontend", "cluster.local/ns/intruder/sa/default"
	h := newHarnessWith(t, "127.0.0.1:1", func(o *app.Options) {
		o.MaxPending, o.HoldTimeout = 10, 300*time.Millisecond
		o.TrustedPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "frontend-only"}}
	ap.Spec.Rules = []*apisecurity.Rule{{
		From: []*apisecurity.Rule_From{{Source: &apisecurity.Source{Principals: []string{frontend}}}},
		To:   []*apisecurity.Rule_To{{Operation: &apisecurity.Operation{Ports: []string{"8080"}}}},
	}}
	h.Policies.Upsert(ap)
	es := resolvertest.ElastiService("shop", "app")
	es.Status.AuthorizationPolicies = []string{"shop/frontend-only"}
	h.Add(es, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)})
	get := func(principal string) (int, string) {
		t.Helper()
		r, _ := http.NewRequest(http.MethodGet, "http://app.shop/", nil)
		// What the resolver's sidecar appends for a caller with this principal.
		r.Header.Set(handler.HeaderClientCert, "By=spiffe://cluster.local/ns/elasti-system/sa/elasti-resolver;Hash=abc;Subject=\"\";URI=spiffe://"+principal)
		resp, err := h.client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for range 5 {
		if code, body := get(intruder); code != http.StatusForbidden || body != handler.DeniedBody {
			t.Fatalf("intruder got %d %q, want 403 %q", code, body, handler.DeniedBody)
		}
	}
	if n := h.activity.held.Load(); n != 0 {
		t.Fatalf("refused callers woke the target %d times", n)
	}
	// The allowed caller is held (and times out here, with no pod to wake).
	if code, body := get(frontend); code != http.StatusGatewayTimeout {
		t.Fatalf("frontend got %d %q, want 504 after its hold", code, strings.TrimSpace(body))
	}
	if h.activity.held.Load() == 0 {
		t.Fatal("the allowed caller did not wake the target")
	}
}
