package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// echo answers with what it saw, in headers.
func echo(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Got-Host", r.Host)
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Elasti-Subset", "X-Hop", "X-Keep"} {
			w.Header()["Got-"+h] = r.Header[h]
		}
		_, _ = io.WriteString(w, r.URL.RequestURI())
	}))
	t.Cleanup(s.Close)
	return s
}

func TestRewrite(t *testing.T) {
	backend := echo(t)
	addr := backend.Listener.Addr().String()
	tests := map[string]struct {
		up     Upstream
		header map[string]string
		want   map[string]string
	}{
		"mesh host and subset": {
			up:   Upstream{Addr: addr, Host: "app-elasti-private.shop.svc.cluster.local:80", Subset: "v2"},
			want: map[string]string{"Got-Host": "app-elasti-private.shop.svc.cluster.local:80", "Got-X-Elasti-Subset": "v2", "Got-X-Forwarded-Host": "app.shop", "Got-X-Forwarded-Proto": "http", "Got-X-Forwarded-For": "192.0.2.1"},
		},
		"pods keep the caller's host": {
			up:   Upstream{Addr: addr},
			want: map[string]string{"Got-Host": "app.shop", "Got-X-Elasti-Subset": ""},
		},
		"earlier hops kept": {
			up:     Upstream{Addr: addr},
			header: map[string]string{"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Host": "shop.example.com", "X-Forwarded-Proto": "https"},
			want:   map[string]string{"Got-X-Forwarded-For": "198.51.100.7, 192.0.2.1", "Got-X-Forwarded-Host": "shop.example.com", "Got-X-Forwarded-Proto": "https"},
		},
		"hop-by-hop dropped": {
			up:     Upstream{Addr: addr},
			header: map[string]string{"Connection": "X-Hop", "X-Hop": "1", "X-Keep": "1"},
			want:   map[string]string{"Got-X-Hop": "", "Got-X-Keep": "1"},
		},
	}
	p := New(Options{Log: logr.Discard()})
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://app.shop/a/b?c=d", nil)
			r.RemoteAddr = "192.0.2.1:1234"
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			r = r.WithContext(WithUpstream(r.Context(), &tc.up))
			w := httptest.NewRecorder()
			p.ServeHTTP(w, r)
			if w.Code != 200 || w.Body.String() != "/a/b?c=d" {
				t.Fatalf("got %d %q, want 200 /a/b?c=d", w.Code, w.Body.String())
			}
			for k, want := range tc.want {
				if got := w.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestErrorHandler(t *testing.T) {
	// A port nobody listens on: every dial is refused, the retries run out, the caller gets 502.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var errs atomic.Int32
	p := New(Options{DialRetries: 2, DialBackoff: time.Millisecond, Log: logr.Discard(), OnError: func(*http.Request, error) { errs.Add(1) }})
	r := httptest.NewRequest(http.MethodGet, "http://app.shop/", nil)
	r = r.WithContext(WithUpstream(r.Context(), &Upstream{Addr: addr}))
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != http.StatusBadGateway || errs.Load() != 1 {
		t.Errorf("got %d with %d errors reported, want 502 and 1", w.Code, errs.Load())
	}
}

func TestRefusedDialRetriedUntilListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var hits atomic.Int32
	// The pod is "Ready" but starts listening only after the first dials were refused.
	go func() {
		time.Sleep(50 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			hits.Add(1)
			_, _ = io.WriteString(w, "up")
		})}
		t.Cleanup(func() { _ = srv.Close() })
		_ = srv.Serve(l)
	}()
	p := New(Options{DialRetries: 20, DialBackoff: 5 * time.Millisecond, Log: logr.Discard()})
	r := httptest.NewRequest(http.MethodPost, "http://app.shop/", nil)
	r = r.WithContext(WithUpstream(r.Context(), &Upstream{Addr: addr}))
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != 200 || w.Body.String() != "up" || hits.Load() != 1 {
		t.Errorf("got %d %q with %d backend hits, want 200 up and exactly 1 hit", w.Code, w.Body.String(), hits.Load())
	}
}

// A request queued behind MaxConnsPerHost busy connections waits at most ConnWait, then gets 503
// with Retry-After rather than waiting on the busy ones for as long as its caller does.
func TestConnWaitBounded(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int32
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			<-release // the first request keeps the only connection busy
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	p := New(Options{Log: logr.Discard(), MaxConnsPerHost: 1, ConnWait: 300 * time.Millisecond})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeHTTP(w, r.WithContext(WithUpstream(r.Context(), &Upstream{Addr: backend.Listener.Addr().String()})))
	}))
	t.Cleanup(front.Close)
	t.Cleanup(func() { close(release) }) // first, so the servers can close
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		if res, err := client.Get(front.URL + "/busy"); err == nil {
			_ = res.Body.Close()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	res, err := client.Get(front.URL + "/queued")
	if err != nil {
		t.Fatalf("a request queued behind a busy connection: %v", err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("queued request: %d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("queued request answered after %v, want about the 300 ms wait", took)
	}
}
