package handler

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
	"github.com/elasti-dev/elasti/resolver/internal/proxy"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/resolvertest"
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
			h := &Route{Next: inner, Targets: reg, Signatures: testKey, Domain: "cluster.local"}
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
			if !inner.req.Target.Gone || inner.req.Target.Key() != "shop/app" || inner.req.Port.Port != tc.wantPort {
				t.Errorf("routed to %s gone=%v port %d; want shop/app gone=true port %d",
					inner.req.Target.Key(), inner.req.Target.Gone, inner.req.Port.Port, tc.wantPort)
			}
		})
	}
}

type tombstones map[string]*registry.Target

func (m tombstones) Tombstone(ns, name string) (*registry.Target, bool) {
	t, ok := m[ns+"/"+name]
	return t, ok
}

func TestForwardGone(t *testing.T) {
	backend := types.NamespacedName{Namespace: "shop", Name: "app-elasti-private"}
	tests := map[string]struct {
		mode      string
		target    registry.Target
		header    http.Header
		wantCode  int
		want      proxy.Upstream
		wantClose bool
		wantVia   bool
	}{
		"gone, service mode": {mode: UpstreamService, target: registry.Target{Gone: true}, wantCode: 204, wantClose: true, wantVia: true,
			want: proxy.Upstream{Addr: "app.shop.svc.cluster.local:8080", Host: "app.shop.svc.cluster.local:8080"}},
		"gone, pods mode": {mode: UpstreamPods, target: registry.Target{Gone: true}, wantCode: 204, wantClose: true, wantVia: true,
			want: proxy.Upstream{Addr: "app.shop.svc.cluster.local:8080"}},
		"gone, looped back": {mode: UpstreamPods, target: registry.Target{Gone: true}, header: http.Header{"Via": {"1.0 fred, " + via}},
			wantCode: 503, wantClose: true},
		"gone, upgrade keeps its connection": {mode: UpstreamPods, target: registry.Target{Gone: true}, header: http.Header{"Upgrade": {"websocket"}},
			wantCode: 204, wantVia: true, want: proxy.Upstream{Addr: "app.shop.svc.cluster.local:8080"}},
		"serving closes": {mode: UpstreamPods, target: registry.Target{Serving: true}, wantCode: 204, wantClose: true,
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
			h := &Forward{Next: next, Mode: tc.mode, Domain: "cluster.local", Endpoints: endpoints("10.0.0.1:8080")}
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

// goneHarness runs the real chain in pods mode for shop/app, with a proxy whose dialer plays
// kube-proxy: the public Service's name reaches the backend, as it does once routes are restored.
type goneHarness struct {
	*resolvertest.Resolver
	key     types.NamespacedName
	metrics *metrics.Metrics
	addr    string
	dials   sync.Map // address the proxy dialled -> true
}

func newGoneHarness(t *testing.T, backend string) *goneHarness {
	t.Helper()
	// Deleting the ElastiService releases its held requests, as the resolver's main does.
	g := &goneHarness{Resolver: resolvertest.New(resolvertest.Options{MaxTotal: 1000, ReleaseDeleted: true}), metrics: metrics.New()}
	_, port, _ := net.SplitHostPort(backend)
	p, _ := strconv.Atoi(port)
	g.key = g.Add(resolvertest.Target("shop", "app"), corev1.ServicePort{Name: "http", Port: int32(p)})
	rp := proxy.New(proxy.Options{})
	public := "app.shop.svc.cluster.local:" + port
	rp.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		g.dials.Store(addr, true)
		if addr != public && addr != backend {
			t.Errorf("proxy dialled %s, want only %s or %s", addr, public, backend)
		}
		return (&net.Dialer{}).DialContext(ctx, network, backend) // loopback only
	}}
	chain := Build(Config{
		Proxy: rp, Targets: g.Registry, Throttler: g.Throttler, Waker: &countWaker{}, Endpoints: g.Ready,
		Upstream: UpstreamPods, Domain: resolvertest.Domain, MaxPending: 100, HoldTimeout: time.Minute, Metrics: g.metrics,
	})
	g.addr = serveHTTP(t, chain)
	return g
}

// deleteES does what the controller's finalizer and the API server do, in their order.
func (g *goneHarness) deleteES() {
	g.Registry.DeleteService("shop", "app-elasti-private")
	g.Registry.DeleteElastiService("shop", "app")
}

// countingBackend answers 200 with the request's id and counts each id.
func countingBackend(t *testing.T) (string, func() map[string]int) {
	var mu sync.Mutex
	counts := map[string]int{}
	addr := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		counts[r.URL.Query().Get("id")]++
		mu.Unlock()
		_, _ = io.WriteString(w, r.URL.Query().Get("id"))
	}))
	return addr, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range counts {
			out[k] = v
		}
		return out
	}
}

// The bug this guards against: a keep-alive connection that kube-proxy pinned to the resolver
// got 404 for every request after its ElastiService was deleted.
func TestKeepAliveAcrossDeletion(t *testing.T) {
	backend, counts := countingBackend(t)
	g := newGoneHarness(t, backend)
	g.setReady(backend)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxConnsPerHost: 1,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, g.addr)
		},
	}}
	const before, after = 3, 3
	var conns []bool // reused, per request
	var closed []bool
	get := func(id string) {
		t.Helper()
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { conns = append(conns, i.Reused) },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://app.shop/?id="+id, nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %s: %v", id, err)
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if res.StatusCode != 200 || string(b) != id {
			t.Errorf("request %s: %d %q, want 200 %q", id, res.StatusCode, b, id)
		}
		closed = append(closed, res.Close)
	}
	for i := range before {
		get("b" + strconv.Itoa(i))
	}
	g.deleteES()
	for i := range after {
		get("a" + strconv.Itoa(i))
	}
	for i, c := range counts() {
		if c != 1 {
			t.Errorf("backend saw request %s %d times, want exactly once", i, c)
		}
	}
	if n := len(counts()); n != before+after {
		t.Errorf("backend saw %d distinct requests, want %d", n, before+after)
	}
	// The first request after the deletion still rides the old connection; it is answered
	// with Connection: close, so every later one comes on a new connection.
	if !conns[before] {
		t.Error("the first request after the deletion did not reuse the kept-alive connection")
	}
	for i := before; i < before+after; i++ {
		if !closed[i] {
			t.Errorf("response %d after the deletion did not close the connection", i-before)
		}
		if i > before && conns[i] {
			t.Errorf("request %d after the deletion reused a connection the resolver closed", i-before)
		}
	}
	for i := range before {
		if closed[i] {
			t.Errorf("response %d before the deletion closed the connection", i)
		}
	}
	if got := testutil.ToFloat64(g.metrics.Responses.WithLabelValues("shop", "app", "2xx", metrics.OutcomeGoneForwarded)); got != after {
		t.Errorf("gone_forwarded responses = %v, want %d", got, after)
	}
	if _, ok := g.dials.Load("app.shop.svc.cluster.local:" + portOf(backend)); !ok {
		t.Error("the proxy never dialled the public Service")
	}
}

// Requests held when their ElastiService is deleted go to the public Service, each once.
func TestHeldForwardedOnDeletion(t *testing.T) {
	backend, counts := countingBackend(t)
	g := newGoneHarness(t, backend)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, g.addr)
		},
	}}
	const n = 20
	codes := make(chan int, n)
	for i := range n {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, "http://app.shop/?id="+strconv.Itoa(i), nil)
			req.Header.Set(v1alpha1.HeaderTarget, "shop/app")
			res, err := client.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			codes <- res.StatusCode
		}()
	}
	if err := g.WaitPending(g.key, n, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	g.deleteES()
	for range n {
		if c := <-codes; c != 200 {
			t.Errorf("held request after deletion answered %d, want 200 from the public Service", c)
		}
	}
	got := counts()
	for i := range n {
		if c := got[strconv.Itoa(i)]; c != 1 {
			t.Errorf("backend saw request %d %d times, want exactly once", i, c)
		}
	}
}

func (g *goneHarness) setReady(backend string) { g.SetReady(g.key, backend, true) }

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// An HTTP/2 caller of a deleted target gets GOAWAY (from Connection: close) and reconnects.
func TestH2CallerReconnectsAfterDeletion(t *testing.T) {
	backend, counts := countingBackend(t)
	g := newGoneHarness(t, backend)
	g.setReady(backend)
	var dials sync.Map
	ndials := func() int {
		n := 0
		dials.Range(func(any, any) bool { n++; return true })
		return n
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, g.addr)
		if err == nil {
			dials.Store(c.LocalAddr().String(), true)
		}
		return c, err
	}}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Timeout: 30 * time.Second, Transport: tr}
	get := func(id string) {
		t.Helper()
		res, err := client.Get("http://app.shop/?id=" + id)
		if err != nil {
			t.Fatalf("request %s: %v", id, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if res.StatusCode != 200 || res.ProtoMajor != 2 {
			t.Fatalf("request %s: %d over HTTP/%d, want 200 over HTTP/2", id, res.StatusCode, res.ProtoMajor)
		}
	}
	get("before")
	g.deleteES()
	// GOAWAY races the next request on the old connection, which is then served or retried
	// by the client: either way a new connection follows within a few requests.
	for i := 0; i < 20 && ndials() < 2; i++ {
		get("after" + strconv.Itoa(i))
		time.Sleep(10 * time.Millisecond)
	}
	if n := ndials(); n < 2 {
		t.Errorf("client dialled %d connections, want a new one after the deletion", n)
	}
	for id, c := range counts() {
		if c != 1 {
			t.Errorf("backend saw request %s %d times, want exactly once", id, c)
		}
	}
}
