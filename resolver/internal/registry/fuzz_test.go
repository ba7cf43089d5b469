package registry

import (
	"strings"
	"testing"
)

func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"app", "app:80", "app.ns.svc.cluster.local.", "[::1]:80", "a.b.c.d.e", "app:", ":80", "APP.NS"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		h, ok := ParseHost(host, "cluster.local")
		if !ok {
			return
		}
		if h.Service == "" || strings.ContainsAny(h.Service, ".:/") || strings.ContainsAny(h.Namespace, ".:/") {
			t.Fatalf("ParseHost(%q) = %+v: not a Service name", host, h)
		}
		if h.Port < 0 {
			t.Fatalf("ParseHost(%q) port %d", host, h.Port)
		}
		// The name it found must parse back to itself.
		again, ok := ParseHost(h.Service+"."+h.Namespace, "cluster.local")
		if h.Namespace != "" && (!ok || again.Service != h.Service || again.Namespace != h.Namespace) {
			t.Fatalf("ParseHost(%q) = %+v, which does not parse back: %+v, %v", host, h, again, ok)
		}
	})
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"ns/name", "ns/", "/x", "a/b/c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ns, name, ok := ParseKey(v)
		if ok && (ns+"/"+name != v || strings.Contains(name, "/")) {
			t.Fatalf("ParseKey(%q) = %q, %q", v, ns, name)
		}
	})
}
