package handler

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func FuzzRoute(f *testing.F) {
	good := testKey.Signer().Sign("shop/app", "8080", "")
	for _, s := range [][5]string{
		{"app.shop", "shop/app", "80", "", ""}, {"db", "", "", "", ""}, {"x", "a/b/c", "-1", "", ""}, {"app:99999", "", "", "", ""},
		{"[::1]", "shop/app", "0", "", ""}, {"evil.example", "bank/db", "5432", "", ""}, {"x", "shop/app", "8080", "", good},
		{"app.shop", "shop/app", "8080", "admin", good},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], "X-Elasti-Custom")
	}
	reg := newRegistry()
	f.Fuzz(func(t *testing.T, host, target, port, subset, sig, extra string) {
		inner := &seen{}
		h := &Route{Next: inner, Registry: reg, Signatures: testKey, Domain: "cluster.local"}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = host
		r.Header["X-Elasti-Service"] = []string{target}
		r.Header["X-Elasti-Port"] = []string{port}
		r.Header["X-Elasti-Subset"] = []string{subset}
		r.Header["X-Elasti-Signature"] = []string{sig}
		r.Header[http.CanonicalHeaderKey(extra)] = []string{"v"}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if inner.req == nil {
			if w.Code < 400 {
				t.Fatalf("not forwarded but answered %d", w.Code)
			}
			return
		}
		// Whatever came in, only a known target is forwarded, and never with elasti's headers.
		if _, ok := reg.ByKey(inner.req.Entry.Namespace, inner.req.Entry.Name); !ok {
			t.Fatalf("forwarded to unknown target %s", inner.req.Entry.Key())
		}
		// Without elasti's signature, only the Host decides, and no subset is believed.
		if !testKey.Verify(target, port, subset, sig) {
			byHost, _, err := reg.ByHost(host)
			if err != nil || byHost != inner.req.Entry || inner.req.Subset != "" {
				t.Fatalf("unsigned request for host %q forwarded to %s subset %q", host, inner.req.Entry.Key(), inner.req.Subset)
			}
		}
		for k := range inner.header {
			if strings.HasPrefix(strings.ToLower(k), "x-elasti-") {
				t.Fatalf("header %q forwarded", k)
			}
		}
	})
}
