package app_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/resolver/internal/app"
	"github.com/elasti-dev/elasti/resolver/internal/handler"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/resolvertest"
)

// harness runs the resolver behind a real loopback listener, in pods mode, in front of one
// backend; the test plays the cluster by writing EndpointSlices into the readiness cache.
type harness struct {
	*resolvertest.Resolver
	addr     string // the resolver's listener
	backend  string // the backend's host:port
	activity *countActivity
	key      types.NamespacedName
	client   *http.Client
	srv      *http.Server
}

type countActivity struct{ held, active atomic.Int32 }

func (w *countActivity) Held(types.NamespacedName, func() bool) { w.held.Add(1) }
func (w *countActivity) Active(types.NamespacedName)            { w.active.Add(1) }
func (w *countActivity) Forget(types.NamespacedName)            {}

// newHarness starts the resolver for a backend listening on backend (host:port).
func newHarness(t *testing.T, backend string) *harness {
	t.Helper()
	return newHarnessWith(t, backend)
}

// harnessOptions are the options of every harness: shop/app's requests held in pods mode.
func harnessOptions() app.Options {
	return app.Options{
		MaxPending: 10000, MaxPendingTotal: 50000,
		HoldTimeout: time.Minute, MaxHeldBody: 64 << 10, DeletedGrace: registry.DefaultGrace,
	}
}

// newHarnessWith starts the resolver with each edit applied to harnessOptions, for
// ElastiService shop/app, whose private Service has port 80.
func newHarnessWith(t *testing.T, backend string, edits ...func(*app.Options)) *harness {
	t.Helper()
	h := &harness{backend: backend, activity: &countActivity{}}
	o := harnessOptions()
	o.ActivityClient = h.activity
	for _, edit := range edits {
		edit(&o)
	}
	h.Resolver = resolvertest.New(o)
	h.key = h.Add(resolvertest.ElastiService("shop", "app"), corev1.ServicePort{Name: "http", Port: 80})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.srv = handler.NewServer("", h.Handler, time.Minute)
	go func() { _ = h.srv.Serve(ln) }()
	t.Cleanup(func() { _ = h.srv.Close() })
	h.addr = ln.Addr().String()
	// Every request names the Service in its Host and is dialled to the resolver, as kube-proxy
	// would send it.
	h.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, h.addr)
		},
		MaxIdleConnsPerHost: 512,
	}, Timeout: time.Minute}
	return h
}

// setReady makes the backend the target's one endpoint, ready or not.
func (h *harness) setReady(ready bool) { h.SetReady(h.key, h.backend, ready) }

// waitPending waits, boundedly, until n requests are held.
func (h *harness) waitPending(t *testing.T, n int) {
	t.Helper()
	if err := h.WaitPending(h.key, n, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// serveHTTP starts an HTTP/1.1 + h2c backend and returns its address.
func serveHTTP(t *testing.T, hd http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := handler.NewServer("", hd, time.Minute)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func TestHeldRequestsReplayedExactlyOnce(t *testing.T) {
	var mu sync.Mutex
	counts := map[string]int{}
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		counts[id]++
		mu.Unlock()
		if r.Header.Get(v1alpha1.HeaderElastiService) != "" || r.Header.Get(v1alpha1.HeaderElastiServiceOld) != "" {
			http.Error(w, "elasti header leaked", 500)
			return
		}
		fmt.Fprintf(w, "%s:%s", id, body)
	}))
	h := newHarness(t, backend)

	const n = 300
	type result struct {
		id, body string
		code     int
		err      error
	}
	results := make(chan result, n)
	for i := range n {
		go func() {
			id := strconv.Itoa(i)
			req, _ := http.NewRequest(http.MethodPost, "http://app.shop/?id="+id, strings.NewReader("body-"+id))
			req.Header.Set(v1alpha1.HeaderElastiService, "shop/app")
			res, err := h.client.Do(req)
			if err != nil {
				results <- result{id: id, err: err}
				return
			}
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			results <- result{id: id, body: string(b), code: res.StatusCode}
		}()
	}
	h.waitPending(t, n)
	mu.Lock()
	if len(counts) != 0 {
		t.Errorf("backend saw %d requests while the target was at zero, want 0", len(counts))
	}
	mu.Unlock()
	h.setReady(true)
	for range n {
		r := <-results
		if r.err != nil || r.code != 200 || r.body != r.id+":body-"+r.id {
			t.Errorf("request %s: %d %q %v; want 200 %q", r.id, r.code, r.body, r.err, r.id+":body-"+r.id)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if got := counts[strconv.Itoa(i)]; got != 1 {
			t.Errorf("backend saw request %d %d times, want exactly once", i, got)
		}
	}
	if h.activity.held.Load() == 0 {
		t.Error("no held signal was sent for requests held at zero")
	}
}

// A keep-alive connection opened while the target was at zero keeps working once it is ready.
func TestKeepAliveAcrossWake(t *testing.T) {
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	h := newHarness(t, backend)
	h.client.Transport.(*http.Transport).MaxConnsPerHost = 1
	get := func() (string, bool) {
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://app.shop.svc.cluster.local/", nil)
		res, err := h.client.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		return fmt.Sprintf("%d %s", res.StatusCode, b), reused
	}
	done := make(chan string, 1)
	go func() { s, _ := get(); done <- s }()
	h.waitPending(t, 1)
	h.setReady(true)
	if got := <-done; got != "200 ok" {
		t.Fatalf("held request = %q, want 200 ok", got)
	}
	for i := range 20 {
		got, reused := get()
		if got != "200 ok" || !reused {
			t.Fatalf("request %d after wake = %q, reused connection %v; want 200 ok on the same connection", i, got, reused)
		}
	}
	if h.activity.active.Load() == 0 {
		t.Error("no activity signal for requests passing through")
	}
}

func TestGRPCUnaryAndStreaming(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	h := newHarness(t, ln.Addr().String())

	conn, err := grpc.NewClient("passthrough:///"+h.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("app.shop:80"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Unary, held at zero and then replayed.
	unary := make(chan error, 1)
	go func() {
		res, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "app"})
		if err == nil && res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = fmt.Errorf("status %v, want SERVING", res.GetStatus())
		}
		unary <- err
	}()
	h.waitPending(t, 1)
	h.setReady(true)
	if err := <-unary; err != nil {
		t.Fatalf("held unary call: %v", err)
	}
	// An error status travels in trailers.
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"}); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("Check(unknown) error = %v, want NotFound from the trailers", err)
	}

	// Server streaming: each update arrives while the stream is open.
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "app"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch message = %v, %v; want SERVING", first, err)
	}
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_NOT_SERVING)
	second, err := stream.Recv()
	if err != nil || second.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("second Watch message = %v, %v; want NOT_SERVING", second, err)
	}
}

func TestWebSocketEcho(t *testing.T) {
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer func() { _ = c.CloseNow() }()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), b...)); err != nil {
				return
			}
		}
	}))
	h := newHarness(t, backend)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dialed := make(chan *websocket.Conn, 1)
	go func() {
		c, res, err := websocket.Dial(ctx, "ws://app.shop/socket", &websocket.DialOptions{HTTPClient: h.client})
		if res != nil && res.Body != nil {
			_ = res.Body.Close()
		}
		if err != nil {
			t.Errorf("dial through the resolver: %v", err)
		}
		dialed <- c
	}()
	h.waitPending(t, 1)
	h.setReady(true)
	c := <-dialed
	if c == nil {
		t.FailNow()
	}
	defer func() { _ = c.CloseNow() }()
	for i := range 5 {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo:"+msg {
			t.Fatalf("read %q, %v; want %q", got, err, "echo:"+msg)
		}
	}
}

// streamHandler writes one event, then waits for the test to say it arrived before writing the
// rest: the test can only pass if the proxy flushes while the response is still open.
func streamHandler(contentType string, arrived <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-arrived:
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Second):
			return
		}
		_, _ = io.WriteString(w, "data: two\n\n")
		w.Header().Set("X-Checksum", "done")
	})
}

func TestStreamingResponses(t *testing.T) {
	tests := map[string]string{
		"server-sent events": "text/event-stream",
		"chunked, no length": "application/octet-stream",
	}
	for name, ct := range tests {
		t.Run(name, func(t *testing.T) {
			arrived := make(chan struct{})
			h := newHarness(t, serveHTTP(t, streamHandler(ct, arrived)))
			h.setReady(true)
			res, err := h.client.Get("http://app.shop/events")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = res.Body.Close() }()
			if res.ContentLength != -1 {
				t.Errorf("ContentLength = %d, want -1 (streamed)", res.ContentLength)
			}
			br := bufio.NewReader(res.Body)
			line, err := br.ReadString('\n')
			if err != nil || line != "data: one\n" {
				t.Fatalf("first line = %q, %v; want it before the stream ends", line, err)
			}
			close(arrived)
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "\ndata: two\n\n" {
				t.Errorf("rest = %q, %v", rest, err)
			}
			if got := res.Trailer.Get("X-Checksum"); got != "done" {
				t.Errorf("trailer X-Checksum = %q, want done", got)
			}
		})
	}
}

// pattern is an endless, cheap, deterministic body.
type pattern struct{ n byte }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = p.n
		p.n++
	}
	return len(b), nil
}

func TestLargeUploadIsStreamed(t *testing.T) {
	const size = 100 << 20
	want := sha256.New()
	_, _ = io.Copy(want, io.LimitReader(&pattern{}, size))
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, err := io.Copy(sum, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, sum.Sum(nil))
	}))
	h := newHarness(t, backend)
	h.setReady(true)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// A length-less body: chunked on the wire, so nothing can size a buffer for it.
	req, _ := http.NewRequest(http.MethodPut, "http://app.shop/upload", io.NopCloser(io.LimitReader(&pattern{}, size)))
	res, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	runtime.ReadMemStats(&after)
	if wantBody := fmt.Sprintf("%d %x", size, want.Sum(nil)); res.StatusCode != 200 || string(b) != wantBody {
		t.Fatalf("upload answer = %d %q, want 200 %q", res.StatusCode, b, wantBody)
	}
	// Client, resolver and backend share this process; buffering the body anywhere would
	// allocate at least its size.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Errorf("allocated %d MiB while streaming a %d MiB upload; the body was buffered", alloc>>20, size>>20)
	}
}

// An HTTP/2 caller that does not speak gRPC reaches an HTTP/1.1-only target.
func TestHTTP2CallerToHTTP1Target(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h1 := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}), ReadHeaderTimeout: time.Minute, Protocols: new(http.Protocols)}
	h1.Protocols.SetHTTP1(true)
	go func() { _ = h1.Serve(ln) }()
	t.Cleanup(func() { _ = h1.Close() })
	h := newHarness(t, ln.Addr().String())
	h.setReady(true)
	tr := &http.Transport{Protocols: new(http.Protocols), DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, h.addr)
	}}
	tr.Protocols.SetUnencryptedHTTP2(true)
	res, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get("http://app.shop/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.Proto != "HTTP/2.0" || res.StatusCode != 200 || string(b) != "HTTP/1.1" {
		t.Errorf("got %s %d %q, want HTTP/2.0 200 from a target that saw HTTP/1.1", res.Proto, res.StatusCode, b)
	}
}

// On shutdown the listener stops, but a request held at that moment is still replayed.
func TestShutdownReplaysHeldRequests(t *testing.T) {
	var hits atomic.Int32
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	h := newHarness(t, backend)
	done := make(chan string, 1)
	go func() {
		res, err := h.client.Get("http://app.shop/")
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		done <- fmt.Sprintf("%d %s", res.StatusCode, b)
	}()
	h.waitPending(t, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- h.srv.Shutdown(context.Background()) }()
	// New connections are refused once Shutdown has closed the listener.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts after Shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) while a request was held", err)
	default:
	}
	h.setReady(true)
	if got := <-done; got != "200 ok" {
		t.Errorf("held request across shutdown = %q, want 200 ok", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("backend hits = %d, want 1", got)
	}
}

// A wake-up burst reaches the first pod over at most MaxConnsPerHost connections: the rest wait
// in the resolver for a free one, and every request is still answered exactly once.
func TestWakeBurstBoundedPerUpstream(t *testing.T) {
	const n, bound = 200, 8
	var mu sync.Mutex
	counts := map[string]int{}
	var inFlight, peak atomic.Int32
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
		}
		mu.Lock()
		counts[r.URL.Query().Get("id")]++
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // long enough that the burst overlaps at the backend
		_, _ = io.WriteString(w, "ok")
	}))
	h := newHarnessWith(t, backend, func(o *app.Options) { o.Proxy.MaxConnsPerHost = bound })
	errs := make(chan error, n)
	for i := range n {
		go func() {
			res, err := h.client.Get("http://app.shop/?id=" + strconv.Itoa(i))
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				if res.StatusCode != http.StatusOK {
					err = fmt.Errorf("request %d: status %d", i, res.StatusCode)
				}
			}
			errs <- err
		}()
	}
	h.waitPending(t, n)
	h.setReady(true)
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for i := range n {
		if got := counts[strconv.Itoa(i)]; got != 1 {
			t.Errorf("backend saw request %d %d times, want exactly once", i, got)
		}
	}
	if p := peak.Load(); p > bound || p < 2 {
		t.Errorf("peak concurrency at the backend = %d, want between 2 and the bound %d", p, bound)
	}
}
