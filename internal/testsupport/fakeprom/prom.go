package fakeprom

import (
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// QueryPath is Prometheus' instant query endpoint, the only one the trigger asks.
const QueryPath = "/api/v1/query"

// Server answers every instant query as busy or idle, as Active says. Busy is one sample whose
// value is the current time, which is what elasti's last-active subquery returns for a target
// that is active now; idle is an empty vector.
type Server struct {
	// Active makes every query answer busy.
	Active atomic.Bool
	// Down makes every query answer 503, as an unreachable or broken server would.
	Down atomic.Bool
	// URL is the trigger's serverAddress.
	URL string
	srv *http.Server
}

// Start serves on addr: "127.0.0.1:0" for envtest, the local cluster's node address for the
// tiers whose controller runs in a pod.
func Start(addr string) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + lis.Addr().String()}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.Down.Load() || r.URL.Path != QueryPath {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	result := ""
	if s.Active.Load() {
		now := float64(time.Now().UnixMilli()) / 1000
		result = fmt.Sprintf(`{"metric":{},"value":[%.3f,"%.3f"]}`, now, now)
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, result)
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }
