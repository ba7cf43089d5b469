// Command sampleapp is the workload of elasti's e2e tier and demo. It serves HTTP on :8080 and
// gRPC on h2c :9090: the standard health service, and elasti.test.Echo with a unary Echo and a
// server-streaming Count (see grpc.go). It counts every request by its X-Request-Id (for gRPC,
// the x-request-id metadata) so that tests can check that each was executed exactly once.
//
//	GET|POST /echo     the method, the body length and the pod's name; X-Remote-Addr says who called
//	GET /counts        JSON: request id -> times executed
//	GET /metrics       Prometheus: sampleapp_requests_total by handler
//	GET /stream        chunks with no Content-Length
//	GET /sse           server-sent events
//	GET /ws            WebSocket echo
//	GET /healthz       200 once started
//	GET /status/NNN    answers with status NNN (a readiness path that never passes, say)
//
// Environment:
//
//	LEDGER=/path          also append each executed request id to this file, one a line, so that a
//	                      test can count executions across pods that are gone (a hostPath volume)
//	SHUTDOWN_DELAY=3s     on SIGTERM, keep serving this long with Connection: close on every
//	                      response, while the endpoints drop the pod, then shut down gracefully
//	LISTEN_DELAY=1.5s     wait this long after start before listening on the HTTP port, as an
//	                      app that loads before it serves; it logs when it listens
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

type counts struct {
	mu sync.Mutex
	m  map[string]int
	// ledger, if set, outlives the pod: the in-memory map goes with it at scale-down.
	ledger *os.File
}

func (c *counts) add(r *http.Request) { c.addID(r.Header.Get("X-Request-Id")) }

func (c *counts) addID(id string) {
	if id == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[id]++
	if c.ledger != nil {
		// One write per line on an O_APPEND file: pods sharing the file do not interleave.
		if _, err := c.ledger.WriteString(id + "\n"); err != nil {
			log.Printf("ledger: %v", err)
		}
	}
}

// served counts HTTP requests by handler, so that a real Prometheus has a real metric to scrape.
var served = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "sampleapp_requests_total",
	Help: "HTTP requests served, by handler.",
}, []string{"handler"})

// handle registers h on mux, counted under name, and with Connection: close once draining.
func handle(mux *http.ServeMux, path, name string, draining *atomic.Bool, h http.HandlerFunc) {
	c := served.WithLabelValues(name)
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		c.Inc()
		if draining.Load() {
			// Callers reconnect, and new connections reach whatever the Service points at now.
			w.Header().Set("Connection", "close")
		}
		h(w, r)
	})
}

// durationEnv reads a duration from the environment; unset is zero.
func durationEnv(name string) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	return d
}

func main() {
	pod, _ := os.Hostname()
	c := &counts{m: map[string]int{}}
	if path := os.Getenv("LEDGER"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
		if err != nil {
			log.Fatal(err)
		}
		c.ledger = f
	}
	shutdownDelay, listenDelay := durationEnv("SHUTDOWN_DELAY"), durationEnv("LISTEN_DELAY")
	draining := &atomic.Bool{}
	reg := prometheus.NewRegistry()
	reg.MustRegister(served)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	handle(mux, "/echo", "echo", draining, func(w http.ResponseWriter, r *http.Request) {
		c.add(r)
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			w.Header().Set("X-Remote-Addr", host)
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %d %s\n", r.Method, n, pod)
	})
	handle(mux, "/counts", "counts", draining, func(w http.ResponseWriter, _ *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		_ = json.NewEncoder(w).Encode(c.m)
	})
	handle(mux, "/stream", "stream", draining, func(w http.ResponseWriter, r *http.Request) {
		c.add(r)
		for i := range 5 {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	})
	handle(mux, "/sse", "sse", draining, func(w http.ResponseWriter, r *http.Request) {
		c.add(r)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	})
	handle(mux, "/ws", "ws", draining, func(w http.ResponseWriter, r *http.Request) {
		c.add(r)
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		for {
			typ, msg, err := conn.Read(r.Context())
			if err != nil {
				return
			}
			if err := conn.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})
	handle(mux, "/healthz", "healthz", draining, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	handle(mux, "/status/{code}", "status", draining, func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "status must be 200 to 599", http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
	})

	lis, err := net.Listen("tcp", ":9090")
	if err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	gs.RegisterService(&echoDesc, &echoServer{counts: c})
	go func() {
		if err := gs.Serve(lis); err != nil {
			log.Fatal(err)
		}
	}()

	port := 8080
	if p, err := strconv.Atoi(os.Getenv("PORT")); err == nil {
		port = p
	}
	srv := &http.Server{Addr: fmt.Sprintf(":%d", port), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		time.Sleep(listenDelay)
		l, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("listening on %s at %s", srv.Addr, time.Now().UTC().Format(time.RFC3339Nano))
		if err := srv.Serve(l); err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	// Keep serving while the endpoints drop this pod, asking each caller to reconnect; then
	// finish what is in flight. Without the delay, in-flight requests still finish.
	draining.Store(true)
	time.Sleep(shutdownDelay)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		gs.Stop()
	}
}
