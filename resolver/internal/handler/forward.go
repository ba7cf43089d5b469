package handler

import (
	"net/http"
	"strconv"

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
	u := &proxy.Upstream{}
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
