package podprobe

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// seen is what a server saw of the last request.
type seen struct {
	mu  sync.Mutex
	req *http.Request
}

func (s *seen) handler(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.req = r.Clone(context.Background())
		s.mu.Unlock()
		w.WriteHeader(status)
	}
}

func (s *seen) last(t *testing.T) *http.Request {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.req == nil {
		t.Fatal("the server saw no request")
	}
	return s.req
}

func TestHTTPRequest(t *testing.T) {
	var s seen
	srv := httptest.NewServer(s.handler(http.StatusOK))
	defer srv.Close()

	probe := httpProbe(intstr.FromInt32(portOf(t, srv.Listener.Addr().String())), "/healthz?deep=1")
	probe.HTTPGet.HTTPHeaders = []corev1.HTTPHeader{
		{Name: "Host", Value: "app.shop.example"},
		{Name: "x-probe", Value: "elasti"},
		{Name: "X-Multi", Value: "a"}, {Name: "X-Multi", Value: "b"},
	}
	p := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: probe}))
	if err := p.Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}

	r := s.last(t)
	for name, got := range map[string]string{
		"method":          r.Method,
		"path":            r.URL.Path,
		"query":           r.URL.RawQuery,
		"Host":            r.Host,
		"User-Agent":      r.Header.Get("User-Agent"),
		"Accept":          r.Header.Get("Accept"),
		"X-Probe":         r.Header.Get("X-Probe"),
		"X-Multi":         strings.Join(r.Header.Values("X-Multi"), ","),
		"Accept-Encoding": r.Header.Get("Accept-Encoding"),
	} {
		want := map[string]string{
			"method": http.MethodGet, "path": "/healthz", "query": "deep=1", "Host": "app.shop.example",
			"User-Agent": "kube-probe/1.37", "Accept": "*/*", "X-Probe": "elasti", "X-Multi": "a,b",
			"Accept-Encoding": "", // the kubelet turns compression off
		}[name]
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestHTTPHeaderOverrides(t *testing.T) {
	var s seen
	srv := httptest.NewServer(s.handler(http.StatusOK))
	defer srv.Close()

	probe := httpProbe(intstr.FromInt32(portOf(t, srv.Listener.Addr().String())), "")
	probe.HTTPGet.HTTPHeaders = []corev1.HTTPHeader{{Name: "User-Agent", Value: "mine/1"}, {Name: "Accept", Value: ""}}
	if err := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: probe})).Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	r := s.last(t)
	if got := r.Header.Get("User-Agent"); got != "mine/1" {
		t.Errorf("User-Agent = %q, want the probe's own", got)
	}
	if _, ok := r.Header["Accept"]; ok {
		t.Errorf("Accept = %q, want none: an empty Accept removes the default", r.Header.Values("Accept"))
	}
	if r.URL.Path != "/" || r.Host != srv.Listener.Addr().String() {
		t.Errorf("path %q host %q, want / and the pod address", r.URL.Path, r.Host)
	}
}

func TestHTTPNamedPort(t *testing.T) {
	srv := newStatusServer(t, http.StatusOK)
	pod := newPod(corev1.Container{
		Name:           "app",
		Ports:          []corev1.ContainerPort{{Name: "metrics", ContainerPort: 1}, {Name: "http", ContainerPort: srv.port(t).IntVal}},
		ReadinessProbe: httpProbe(intstr.FromString("http"), "/ready"),
	})
	if err := mustTranslate(t, pod).Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("server hits = %d, want 1", got)
	}
}

func TestHTTPStatus(t *testing.T) {
	var okHits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { okHits.Add(1) })
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code := map[string]int{"200": 200, "204": 204, "399": 399, "400": 400, "404": 404, "500": 500, "503": 503}[r.PathValue("code")]
		w.WriteHeader(code)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		// Another host name: not followed, so nothing leaves loopback.
		http.Redirect(w, r, "http://elsewhere.invalid/ready", http.StatusFound)
	})
	mux.HandleFunc("/same", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/same-to-503", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status/503", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	port := intstr.FromInt32(portOf(t, srv.Listener.Addr().String()))

	tests := map[string]struct {
		path       string
		wantPass   bool
		wantOKHits int32
		wantErrIn  string
	}{
		"200":                              {path: "/status/200", wantPass: true},
		"204":                              {path: "/status/204", wantPass: true},
		"399":                              {path: "/status/399", wantPass: true},
		"400":                              {path: "/status/400", wantErrIn: "status code 400"},
		"404":                              {path: "/status/404", wantErrIn: "status code 404"},
		"500":                              {path: "/status/500", wantErrIn: "status code 500"},
		"503":                              {path: "/status/503", wantErrIn: "status code 503"},
		"302 to another host passes":       {path: "/elsewhere", wantPass: true},
		"302 to the same host is followed": {path: "/same", wantPass: true, wantOKHits: 1},
		"301 to a 503 on the same host":    {path: "/same-to-503", wantErrIn: "status code 503"},
		"redirect loop":                    {path: "/loop", wantErrIn: "stopped after 10 redirects"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			okHits.Store(0)
			p := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: httpProbe(port, tt.path)}))
			err := p.Check(t.Context())
			if tt.wantPass != (err == nil) {
				t.Fatalf("Check = %v, want pass %v", err, tt.wantPass)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantErrIn) {
				t.Errorf("Check = %q, want it to say %q", err, tt.wantErrIn)
			}
			if got := okHits.Load(); got != tt.wantOKHits {
				t.Errorf("/ok hits = %d, want %d", got, tt.wantOKHits)
			}
		})
	}
}

func TestHTTPS(t *testing.T) {
	var s seen
	// httptest's certificate is signed by a CA nobody trusts: passing shows verification is off.
	srv := httptest.NewUnstartedServer(s.handler(http.StatusOK))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the plain HTTP attempt's handshake error
	srv.StartTLS()
	defer srv.Close()
	port := intstr.FromInt32(portOf(t, srv.Listener.Addr().String()))

	for scheme, wantPass := range map[corev1.URIScheme]bool{corev1.URISchemeHTTPS: true, "https": true, corev1.URISchemeHTTP: false} {
		probe := httpProbe(port, "/ready")
		probe.HTTPGet.Scheme = scheme
		err := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: probe})).Check(t.Context())
		if wantPass != (err == nil) {
			t.Errorf("scheme %s: Check = %v, want pass %v", scheme, err, wantPass)
		}
	}
	if r := s.last(t); r.TLS == nil {
		t.Error("the request did not come over TLS")
	}
}

func TestH2C(t *testing.T) {
	var protos []int
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.ProtoMajor)
		mu.Unlock()
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	port := intstr.FromInt32(portOf(t, srv.Listener.Addr().String()))

	for _, proto := range []*corev1.HTTPProtocol{nil, ptr.To(corev1.HTTPProtocolHTTP1), ptr.To(corev1.HTTPProtocolHTTP2)} {
		probe := httpProbe(port, "/")
		probe.HTTPGet.Protocol = proto
		if err := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: probe})).Check(t.Context()); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{1, 1, 2}; len(protos) != 3 || protos[0] != want[0] || protos[1] != want[1] || protos[2] != want[2] {
		t.Errorf("HTTP major versions %v, want %v", protos, want)
	}
}

func TestNewConnectionPerCheck(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	p := mustTranslate(t, newPod(corev1.Container{Name: "app",
		ReadinessProbe: httpProbe(intstr.FromInt32(portOf(t, srv.Listener.Addr().String())), "/")}))
	const checks = 3
	for range checks {
		if err := p.Check(t.Context()); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	if got := conns.Load(); got != checks {
		t.Errorf("%d connections for %d checks, want one each", got, checks)
	}
}

func TestHTTPTimeout(t *testing.T) {

	// timeoutSeconds unset: the API's default of one second bounds the check.
	p := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: httpProbe(hangingServer(t), "/")}))
	start := time.Now()
	err := p.Check(t.Context())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Check = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Check took %s against a one-second timeout", d)
	}
}

func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_ = c.Close()
		accepted <- struct{}{}
	}()

	open := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: tcpProbe(intstr.FromInt32(portOf(t, l.Addr().String())))}))
	if err := open.Check(t.Context()); err != nil {
		t.Errorf("open port: Check = %v", err)
	}
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Error("the listener accepted no connection")
	}

	closed := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: tcpProbe(intstr.FromInt32(closedPort(t)))}))
	if err := closed.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed port: Check = %v, want connection refused", err)
	}
}

// grpcServer serves grpc.health.v1 on loopback, with "" and "jobs" SERVING, "mail" NOT_SERVING,
// and records the user agent of the last call.
func grpcServer(t *testing.T, withHealth bool, opts ...grpc.ServerOption) (port int32, userAgent *atomic.Value) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	userAgent = &atomic.Value{}
	opts = append(opts, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("user-agent")) > 0 {
			userAgent.Store(md.Get("user-agent")[0])
		}
		return h(ctx, req)
	}))
	s := grpc.NewServer(opts...)
	if withHealth {
		hs := health.NewServer()
		hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		hs.SetServingStatus("jobs", healthpb.HealthCheckResponse_SERVING)
		hs.SetServingStatus("mail", healthpb.HealthCheckResponse_NOT_SERVING)
		healthpb.RegisterHealthServer(s, hs)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return portOf(t, l.Addr().String()), userAgent
}

func TestGRPC(t *testing.T) {
	port, userAgent := grpcServer(t, true)
	bare, _ := grpcServer(t, false)
	tests := map[string]struct {
		port      int32
		service   *string
		wantErrIn string // empty: pass
	}{
		"no service":                {port: port},
		"empty service":             {port: port, service: ptr.To("")},
		"SERVING service":           {port: port, service: ptr.To("jobs")},
		"NOT_SERVING service":       {port: port, service: ptr.To("mail"), wantErrIn: "NOT_SERVING"},
		"unknown service":           {port: port, service: ptr.To("nope"), wantErrIn: "NotFound"},
		"no health service":         {port: bare, wantErrIn: "Unimplemented"},
		"closed port":               {port: closedPort(t), wantErrIn: "Unavailable"},
		"closed port with service":  {port: closedPort(t), service: ptr.To("jobs"), wantErrIn: "Unavailable"},
		"bare server, service name": {port: bare, service: ptr.To("jobs"), wantErrIn: "Unimplemented"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: grpcProbe(tt.port, tt.service)}))
			err := p.Check(t.Context())
			if tt.wantErrIn == "" {
				if err != nil {
					t.Fatalf("Check = %v, want pass", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErrIn) {
				t.Errorf("Check = %v, want a failure saying %s", err, tt.wantErrIn)
			}
		})
	}
	if ua, _ := userAgent.Load().(string); !strings.HasPrefix(ua, UserAgent+" ") {
		t.Errorf("user agent %q, want it to start with %q", ua, UserAgent)
	}
}

func TestGRPCTLS(t *testing.T) {
	// Borrow httptest's certificate for 127.0.0.1; nobody trusts its CA, so passing shows
	// verification is off, as in the kubelet.
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS()
	cert := hs.TLS.Certificates[0]
	hs.Close()
	port, _ := grpcServer(t, true, grpc.Creds(credentials.NewServerTLSFromCert(&cert)))

	for mode, wantPass := range map[corev1.GRPCProbeMode]bool{corev1.GRPCProbeModeTLS: true, corev1.GRPCProbeModePlaintext: false, "": false} {
		probe := grpcProbe(port, nil)
		if mode != "" {
			probe.GRPC.Mode = ptr.To(mode)
		}
		err := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: probe})).Check(t.Context())
		if wantPass != (err == nil) {
			t.Errorf("mode %q: Check = %v, want pass %v", mode, err, wantPass)
		}
	}
}

func TestStartupAndReadinessBothNeeded(t *testing.T) {
	start := newStatusServer(t, http.StatusServiceUnavailable)
	ready := newStatusServer(t, http.StatusOK)
	p := mustTranslate(t, newPod(corev1.Container{Name: "app",
		StartupProbe: httpProbe(start.port(t), "/started"), ReadinessProbe: httpProbe(ready.port(t), "/ready")}))

	steps := []struct {
		start, ready int32
		wantErrIn    string
	}{
		{start: 503, ready: 200, wantErrIn: `container "app" startup probe`},
		{start: 200, ready: 503, wantErrIn: `container "app" readiness probe`},
		{start: 200, ready: 200},
	}
	for i, s := range steps {
		start.status.Store(s.start)
		ready.status.Store(s.ready)
		err := p.Check(t.Context())
		if s.wantErrIn == "" {
			if err != nil {
				t.Errorf("step %d: Check = %v, want pass", i, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), s.wantErrIn) {
			t.Errorf("step %d: Check = %v, want a failure of %s", i, err, s.wantErrIn)
		}
	}
	// The readiness probe waits for the startup probe, as in the kubelet.
	if got := ready.hits.Load(); got != 2 {
		t.Errorf("readiness hits = %d, want 2 (none while startup failed)", got)
	}
}

func TestMultiContainer(t *testing.T) {
	app := newStatusServer(t, http.StatusOK)
	worker := newStatusServer(t, http.StatusServiceUnavailable)
	p := mustTranslate(t, newPod(
		corev1.Container{Name: "app", ReadinessProbe: httpProbe(app.port(t), "/ready")},
		corev1.Container{Name: "worker", ReadinessProbe: tcpProbe(intstr.FromInt32(closedPort(t)))},
		corev1.Container{Name: "jobs", ReadinessProbe: httpProbe(worker.port(t), "/ready")},
	))
	if err := p.Check(t.Context()); err == nil || !strings.Contains(err.Error(), `container "worker"`) {
		t.Fatalf("Check = %v, want worker's refused TCP to fail it", err)
	}

	p = mustTranslate(t, newPod(
		corev1.Container{Name: "app", ReadinessProbe: httpProbe(app.port(t), "/ready")},
		corev1.Container{Name: "jobs", ReadinessProbe: httpProbe(worker.port(t), "/ready")},
	))
	if err := p.Check(t.Context()); err == nil || !strings.Contains(err.Error(), `container "jobs"`) {
		t.Fatalf("Check = %v, want jobs' 503 to fail it", err)
	}
	worker.status.Store(http.StatusOK)
	if err := p.Check(t.Context()); err != nil {
		t.Fatalf("Check = %v once every container passes", err)
	}
}

func TestCheckReflectsEachCall(t *testing.T) {
	srv := newStatusServer(t, http.StatusOK)
	p := mustTranslate(t, newPod(corev1.Container{Name: "app", ReadinessProbe: httpProbe(srv.port(t), "/ready")}))
	for i, status := range []int32{200, 503, 503, 200, 500, 200} {
		srv.status.Store(status)
		err := p.Check(t.Context())
		if want := status == 200; want != (err == nil) {
			t.Errorf("call %d with status %d: Check = %v", i, status, err)
		}
	}
	if got := srv.hits.Load(); got != 6 {
		t.Errorf("server hits = %d, want one per call", got)
	}
}

func TestZeroProbeNeverPasses(t *testing.T) {
	if err := (Probe{}).Check(t.Context()); err == nil {
		t.Error("the zero Probe passed")
	}
	if err := Run(t.Context(), Probe{}, Backoff{Attempts: 2, Initial: time.Millisecond}); !errors.Is(err, ErrGaveUp) {
		t.Errorf("Run(zero Probe) = %v, want ErrGaveUp", err)
	}
}
