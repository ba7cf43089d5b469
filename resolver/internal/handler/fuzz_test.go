package handler

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func FuzzRoute(f *testing.F) {
	for _, s := range [][3]string{
		{"app.shop", "shop/app", "80"}, {"db", "", ""}, {"x", "a/b/c", "-1"}, {"app:99999", "", ""}, {"[::1]", "shop/app", "0"},
	} {
		f.Add(s[0], s[1], s[2], "X-Elasti-Custom")
	}
	reg := newRegistry()
	f.Fuzz(func(t *testing.T, host, target, port, extra string) {
		inner := &seen{}
		h := &Route{Next: inner, Targets: reg, Domain: "cluster.local"}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = host
		r.Header["X-Elasti-Target"] = []string{target}
		r.Header["X-Elasti-Port"] = []string{port}
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
		if _, ok := reg.ByKey(inner.req.Target.Namespace, inner.req.Target.Name); !ok {
			t.Fatalf("forwarded to unknown target %s", inner.req.Target.Key())
		}
		for k := range inner.header {
			if strings.HasPrefix(strings.ToLower(k), "x-elasti-") {
				t.Fatalf("header %q forwarded", k)
			}
		}
	})
}
