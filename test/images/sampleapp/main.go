// Command sampleapp is the workload of elasti's e2e tier and demo. It serves HTTP on :8080 and
// gRPC on h2c :9090: the standard health service, and elasti.test.Echo with a unary Echo and a
// server-streaming Count (see grpc.go). It counts every request by its X-Request-Id (for gRPC,
// the x-request-id metadata) so that tests can check that each was executed exactly once.
//
//	GET|POST /echo     the method, the body length and the pod's name
//	GET /counts        JSON: request id -> times executed
//	GET /stream        chunks with no Content-Length
//	GET /sse           server-sent events
//	GET /ws            WebSocket echo
//	GET /healthz       200 once started
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(r *http.Request) { c.addID(r.Header.Get("X-Request-Id")) }

func (c *counts) addID(id string) {
	if id != "" {
		c.mu.Lock()
		c.m[id]++
		c.mu.Unlock()
	}
}

func main() {
	pod, _ := os.Hostname()
	c := &counts{m: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		c.add(r)
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %d %s\n", r.Method, n, pod)
	})
	mux.HandleFunc("/counts", func(w http.ResponseWriter, _ *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		_ = json.NewEncoder(w).Encode(c.m)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		c.add(r)
		for i := range 5 {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		c.add(r)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
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
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })

	lis, err := net.Listen("tcp", ":9090")
	if err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	gs.RegisterService(&echoDesc, &echoServer{counts: c})
	go func() { log.Fatal(gs.Serve(lis)) }()

	port := 8080
	if p, err := strconv.Atoi(os.Getenv("PORT")); err == nil {
		port = p
	}
	srv := &http.Server{Addr: fmt.Sprintf(":%d", port), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
