package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
	"github.com/elasti-dev/elasti/resolver/internal/resolvertest"
)

// goneHarness runs the resolver in pods mode for shop/app, with a proxy whose dialer plays
// kube-proxy: the public Service's name reaches the backend, as it does once routes are restored.
type goneHarness struct {
	*resolvertest.Resolver
	key   types.NamespacedName
	addr  string
	dials sync.Map // address the proxy dialled -> true
	act   *countActivity
}

func newGoneHarness(t *testing.T, backend string) *goneHarness {
	t.Helper()
	g := &goneHarness{act: &countActivity{}}
	_, port, _ := net.SplitHostPort(backend)
	public := "app.shop.svc.cluster.local:" + port
	o := harnessOptions()
	o.MaxPending, o.ActivityClient = 100, g.act
	o.Proxy.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		g.dials.Store(addr, true)
		// Port 80: the port a Host without one means when the resolver knows no ports.
		if addr != public && addr != backend && addr != "app.shop.svc.cluster.local:80" {
			t.Errorf("proxy dialled %s, want only %s or %s", addr, public, backend)
		}
		return (&net.Dialer{}).DialContext(ctx, network, backend) // loopback only
	}}
	g.Resolver = resolvertest.New(o)
	p, _ := strconv.Atoi(port)
	g.key = g.Add(resolvertest.ElastiService("shop", "app"), corev1.ServicePort{Name: "http", Port: int32(p)})
	g.addr = serveHTTP(t, g.Handler)
	return g
}

// deleteES does what the controller's finalizer and the API server do, in their order; the
// registry's forgetter releases the held requests.
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
	if got := testutil.ToFloat64(g.Metrics.Responses.WithLabelValues("shop", "app", "2xx", metrics.OutcomeGoneForwarded)); got != after {
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
			req.Header.Set(v1alpha1.HeaderElastiService, "shop/app")
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

// An ElastiService that has never been in Proxy mode has no private Service: a request that
// reaches the resolver anyway (a caller that names the resolver) goes at once to the public
// Service, which leads to the pods, and counts as activity; a request that comes back from it
// would loop, and is refused.
func TestNeverProxiedForwardedToPublicService(t *testing.T) {
	backend, counts := countingBackend(t)
	g := newGoneHarness(t, backend)
	// As the controller leaves it before Proxy mode is first wanted: no finalizer, no private
	// Service.
	es := resolvertest.ElastiService("shop", "app")
	es.Finalizers = nil
	g.Registry.DeleteService("shop", "app-elasti-private")
	g.Registry.UpsertElastiService(es)
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(id string, header http.Header) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+g.addr+"/?id="+id, nil)
		// The resolver knows no ports without the private Service: port 80, the usual one.
		req.Host = "app.shop"
		for k, v := range header {
			req.Header[k] = v
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %s: %v", id, err)
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		return res.StatusCode, string(b)
	}
	if code, body := get("n1", nil); code != http.StatusOK || body != "n1" {
		t.Errorf("never proxied: %d %q, want 200 %q at once", code, body, "n1")
	}
	if got := counts()["n1"]; got != 1 {
		t.Errorf("backend saw n1 %d times, want once", got)
	}
	if _, ok := g.dials.Load("app.shop.svc.cluster.local:80"); !ok {
		t.Error("the proxy never dialled the public Service")
	}
	if got := testutil.ToFloat64(g.Metrics.Responses.WithLabelValues("shop", "app", "2xx", metrics.OutcomeNotProxied)); got != 1 {
		t.Errorf("not_proxied responses = %v, want 1", got)
	}
	if got := g.act.active.Load(); got == 0 {
		t.Error("the forwarded request was not counted as activity")
	}
	if code, body := get("n2", http.Header{"Via": {"1.1 elasti-resolver"}}); code != http.StatusServiceUnavailable {
		t.Errorf("a request back from the public Service: %d %q, want 503", code, body)
	}
	if got := counts()["n2"]; got != 0 {
		t.Errorf("backend saw the looping n2 %d times", got)
	}
}
