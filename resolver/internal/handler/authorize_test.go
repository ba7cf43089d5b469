package handler

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/proto"
	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elasti-dev/elasti/resolver/internal/registry"
)

type policyMap map[string]*securityv1.AuthorizationPolicy

func (m policyMap) Policy(key string) (*securityv1.AuthorizationPolicy, bool) {
	p, ok := m[key]
	return p, ok
}

func authzPolicy(ns, name string, spec *apisecurity.AuthorizationPolicy) *securityv1.AuthorizationPolicy {
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	proto.Merge(&ap.Spec, spec)
	return ap
}

const (
	frontend = "cluster.local/ns/frontend/sa/frontend"
	intruder = "cluster.local/ns/intruder/sa/default"
)

// xfcc is the header a sidecar sets for a caller with principal p.
func xfcc(p string) string {
	return `By=spiffe://cluster.local/ns/elasti-system/sa/elasti-resolver;Hash=abc;Subject="";URI=spiffe://` + p
}

func shopPolicies() policyMap {
	return policyMap{
		"shop/frontend-only": authzPolicy("shop", "frontend-only", &apisecurity.AuthorizationPolicy{
			Rules: []*apisecurity.Rule{{
				From: []*apisecurity.Rule_From{{Source: &apisecurity.Source{Principals: []string{frontend}}}},
				To:   []*apisecurity.Rule_To{{Operation: &apisecurity.Operation{Ports: []string{"8080"}}}},
			}},
		}),
		"shop/no-admin": authzPolicy("shop", "no-admin", &apisecurity.AuthorizationPolicy{
			Action: apisecurity.AuthorizationPolicy_DENY,
			Rules:  []*apisecurity.Rule{{To: []*apisecurity.Rule_To{{Operation: &apisecurity.Operation{Paths: []string{"/admin*"}}}}}},
		}),
	}
}

func TestAuthorize(t *testing.T) {
	sidecar := []netip.Prefix{netip.MustParsePrefix("127.0.0.6/32")}
	target := &registry.Entry{Namespace: "shop", Name: "app", Policies: []string{"shop/frontend-only", "shop/no-admin"}}
	port := registry.Port{Name: "http", Port: 80, TargetPort: 8080}
	tests := map[string]struct {
		policies policyMap
		target   *registry.Entry
		port     registry.Port
		callers  *Callers
		method   string
		path     string
		remote   string
		xfcc     []string
		want     int
	}{
		"a target without policies lets anyone through": {
			target: &registry.Entry{Namespace: "shop", Name: "app"}, want: http.StatusNoContent,
		},
		"the caller the ALLOW policy names gets through": {
			xfcc: []string{xfcc(frontend)}, want: http.StatusNoContent,
		},
		"another caller is refused": {
			xfcc: []string{xfcc(intruder)}, want: http.StatusForbidden,
		},
		"a caller without a certificate is refused": {
			want: http.StatusForbidden,
		},
		"the header from a peer that is not the sidecar is not believed": {
			remote: "10.1.2.3:4567", xfcc: []string{xfcc(frontend)}, want: http.StatusForbidden,
		},
		"no trusted peer believes no header": {
			callers: &Callers{}, xfcc: []string{xfcc(frontend)}, want: http.StatusForbidden,
		},
		"an element the caller wrote before the sidecar's does not count": {
			xfcc: []string{xfcc(frontend), xfcc(intruder)}, want: http.StatusForbidden,
		},
		"an element the caller wrote before the sidecar's in the same line does not count either": {
			xfcc: []string{xfcc(frontend) + "," + xfcc(intruder)}, want: http.StatusForbidden,
		},
		"a malformed header is refused, not taken for a caller without a certificate": {
			policies: policyMap{"shop/no-intruder": authzPolicy("shop", "no-intruder", &apisecurity.AuthorizationPolicy{
				Action: apisecurity.AuthorizationPolicy_DENY,
				Rules:  []*apisecurity.Rule{{From: []*apisecurity.Rule_From{{Source: &apisecurity.Source{Principals: []string{intruder}}}}}},
			})},
			target: &registry.Entry{Namespace: "shop", Name: "app", Policies: []string{"shop/no-intruder"}},
			xfcc:   []string{`URI=spiffe://` + intruder + `;Subject="unterminated`}, want: http.StatusForbidden,
		},
		"a caller without a certificate passes a DENY policy on another principal": {
			policies: policyMap{"shop/no-intruder": authzPolicy("shop", "no-intruder", &apisecurity.AuthorizationPolicy{
				Action: apisecurity.AuthorizationPolicy_DENY,
				Rules:  []*apisecurity.Rule{{From: []*apisecurity.Rule_From{{Source: &apisecurity.Source{Principals: []string{intruder}}}}}},
			})},
			target: &registry.Entry{Namespace: "shop", Name: "app", Policies: []string{"shop/no-intruder"}},
			want:   http.StatusNoContent,
		},
		"the DENY policy wins over the ALLOW one": {
			xfcc: []string{xfcc(frontend)}, path: "/admin/users", want: http.StatusForbidden,
		},
		"a port the ALLOW policy does not name is refused": {
			xfcc: []string{xfcc(frontend)}, port: registry.Port{Name: "metrics", Port: 9090, TargetPort: 9090}, want: http.StatusForbidden,
		},
		"a policy the store does not hold refuses": {
			policies: policyMap{"shop/no-admin": shopPolicies()["shop/no-admin"]}, xfcc: []string{xfcc(frontend)}, want: http.StatusForbidden,
		},
		"a method the sidecar would not parse as HTTP is refused, as its header could be the caller's": {
			method: "BREW", xfcc: []string{xfcc(frontend)}, want: http.StatusForbidden,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.policies == nil {
				tc.policies = shopPolicies()
			}
			if tc.target == nil {
				tc.target = target
			}
			if tc.port.Port == 0 {
				tc.port = port
			}
			if tc.callers == nil {
				tc.callers = &Callers{TrustedPeers: sidecar}
			}
			if tc.method == "" {
				tc.method = http.MethodGet
			}
			if tc.path == "" {
				tc.path = "/cart"
			}
			if tc.remote == "" {
				tc.remote = "127.0.0.6:40000"
			}
			inner := &seen{}
			h := &Authorize{Next: inner, Policies: tc.policies, Callers: tc.callers}
			r := httptest.NewRequest(tc.method, "http://app.shop"+tc.path, nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xfcc {
				r.Header.Add(HeaderClientCert, v)
			}
			req := &Request{Entry: tc.target, Port: tc.port}
			r = r.WithContext(WithRequest(r.Context(), req))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
			if tc.want == http.StatusForbidden {
				if inner.req != nil {
					t.Error("a refused request reached the next handler")
				}
				if w.Body.String() != DeniedBody {
					t.Errorf("body %q, want %q", w.Body.String(), DeniedBody)
				}
				if req.Outcome != "denied" {
					t.Errorf("outcome %q, want denied", req.Outcome)
				}
			}
		})
	}
}
