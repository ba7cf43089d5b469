package handler

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/resolver/internal/proxy"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
)

func TestRouteTombstone(t *testing.T) {
	reg := newRegistry()
	reg.UpsertService(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "app-elasti-private"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}})
	reg.DeleteElastiService("shop", "app")
	tests := map[string]struct {
		host     string
		target   string
		wantPort int32
	}{
		"host fqdn":           {host: "app.shop.svc.cluster.local", wantPort: 8080},
		"host with port":      {host: "app.shop:8080", wantPort: 8080},
		"short host":          {host: "app", wantPort: 8080},
		"header target":       {host: "10.0.0.1", target: "shop/app", wantPort: 8080},
		"header target, port": {host: "app.shop:8080", target: "shop/app", wantPort: 8080},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			inner := &seen{}
			h := &Route{Next: inner, Registry: reg, Signatures: testKey, Domain: "cluster.local"}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Host = tc.host
			if tc.target != "" {
				for k, v := range sign(tc.target, "", "") {
					r.Header.Set(k, v)
				}
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if inner.req == nil {
				t.Fatal("a request for a deleted ElastiService within the grace period was not routed")
			}
			if !inner.req.Entry.Gone || inner.req.Entry.Key() != "shop/app" || inner.req.Port.Port != tc.wantPort {
				t.Errorf("routed to %s gone=%v port %d; want shop/app gone=true port %d",
					inner.req.Entry.Key(), inner.req.Entry.Gone, inner.req.Port.Port, tc.wantPort)
			}
		})
	}
}

type tombstones map[string]*registry.Entry

func (m tombstones) Tombstone(ns, name string) (*registry.Entry, bool) {
	t, ok := m[ns+"/"+name]
	return t, ok
}

func TestForwardGone(t *testing.T) {
	backend := types.NamespacedName{Namespace: "shop", Name: "app-elasti-private"}
	tests := map[string]struct {
		mode      string
		target    registry.Entry
		header    http.Header
		wantCode  int
		want      proxy.Upstream
		wantClose bool
		wantVia   bool
	}{
		"gone, service mode": {mode: UpstreamService, target: registry.Entry{Gone: true}, wantCode: 204, wantClose: true, wantVia: true,
			want: proxy.Upstream{Addr: "app.shop.svc.cluster.local:8080", Host: "app.shop.svc.cluster.local:8080"}},
		"gone, pods mode": {mode: UpstreamPods, target: registry.Entry{Gone: true}, wantCode: 204, wantClose: true, wantVia: true,
			want: proxy.Upstream{Addr: "app.shop.svc.cluster.local:8080"}},
		"gone, looped back": {mode: UpstreamPods, target: registry.Entry{Gone: true}, header: http.Header{"Via": {"1.0 fred, " + via}},
			wantCode: 503, wantClose: true},
		"gone, upgrade keeps its connection": {mode: UpstreamPods, target: registry.Entry{Gone: true}, header: http.Header{"Upgrade": {"websocket"}},
			wantCode: 204, wantVia: true, want: proxy.Upstream{Addr: "app.shop.svc.cluster.local:8080"}},
		"serving closes": {mode: UpstreamPods, target: registry.Entry{Serving: true}, wantCode: 204, wantClose: true,
			want: proxy.Upstream{Addr: "10.0.0.1:8080"}},
		"proxying keeps the connection": {mode: UpstreamPods, wantCode: 204, want: proxy.Upstream{Addr: "10.0.0.1:8080"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got proxy.Upstream
			var gotVia []string
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got, gotVia = *proxy.UpstreamFrom(r.Context()), r.Header.Values("Via")
				w.WriteHeader(http.StatusNoContent)
			})
			h := &Forward{Next: next, Mode: tc.mode, Domain: "cluster.local", Endpoints: endpoints{addr: "10.0.0.1:8080"}}
			target := tc.target
			target.Namespace, target.Name, target.Service, target.Backend = "shop", "app", "app", backend
			r, req := withRequest(httptest.NewRequest("GET", "/", nil), &target)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			req.Port, req.Subset = registry.Port{Name: "http", Port: 8080}, "v1"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantCode || got != tc.want {
				t.Errorf("got %d %+v, want %d %+v", w.Code, got, tc.wantCode, tc.want)
			}
			if c := w.Header().Get("Connection") == "close"; c != tc.wantClose {
				t.Errorf("Connection: close = %v, want %v", c, tc.wantClose)
			}
			if v := len(gotVia) > 0 && strings.Contains(gotVia[len(gotVia)-1], via); v != tc.wantVia {
				t.Errorf("Via = %q, want ours = %v", gotVia, tc.wantVia)
			}
		})
	}
}
