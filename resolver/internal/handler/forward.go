package handler

import (
	"net/http"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/resolver/internal/proxy"
)

// Upstream modes.
const (
	// UpstreamService forwards to the private Service's cluster name through the resolver's
	// own sidecar, which is what a mesh needs.
	UpstreamService = "service"
	// UpstreamPods forwards straight to a ready pod, for clusters without a mesh.
	UpstreamPods = "pods"
)

// Endpoints picks a ready pod address of a backend.
type Endpoints interface {
	Pick(key types.NamespacedName, portName string) (string, bool)
}

// Forward chooses where the request goes and leaves it in the context for the proxy.
type Forward struct {
	Next      http.Handler
	Mode      string
	Domain    string
	Endpoints Endpoints
}

var _ http.Handler = (*Forward)(nil)

func (h *Forward) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := RequestFrom(r.Context())
	t := req.Target
	u := &proxy.Upstream{H2C: wantsH2C(r, req.Port.Name)}
	if h.Mode == UpstreamPods {
		addr, ok := h.Endpoints.Pick(t.Backend, req.Port.Name)
		if !ok {
			// The gate opened and the endpoints went away again before this request left.
			w.Header().Set("Retry-After", "1")
			http.Error(w, "elasti: "+t.Key()+" has no ready endpoint", http.StatusServiceUnavailable)
			return
		}
		u.Addr = addr
	} else {
		host := names.ServiceFQDN(t.Backend.Name, t.Backend.Namespace, h.Domain) + ":" + strconv.Itoa(int(req.Port.Port))
		u.Addr, u.Host, u.Subset = host, host, req.Subset
	}
	h.Next.ServeHTTP(w, r.WithContext(proxy.WithUpstream(r.Context(), u)))
}

// wantsH2C says whether to reach the target over h2c: for an HTTP/2 caller that speaks gRPC or
// whose Service port is named for HTTP/2. Other HTTP/2 callers are replayed over HTTP/1.1,
// which every HTTP server speaks.
func wantsH2C(r *http.Request, portName string) bool {
	if r.ProtoMajor != 2 {
		return false
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		return true
	}
	for _, p := range []string{"grpc", "http2", "h2c"} {
		if portName == p || strings.HasPrefix(portName, p+"-") {
			return true
		}
	}
	return false
}
