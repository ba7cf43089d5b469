package handler

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
)

// Targets finds the target of a request.
type Targets interface {
	ByKey(namespace, name string) (*registry.Target, bool)
	ByHost(host string) (*registry.Target, int32, error)
	// Tombstone returns what is left of a recently deleted ElastiService.
	Tombstone(namespace, name string) (*registry.Target, bool)
}

// Route finds the request's target from X-Elasti-Target, or else from its Host, and strips
// elasti's headers. A request for no known ElastiService is answered here and never forwarded:
// the resolver is not an open proxy.
type Route struct {
	Next    http.Handler
	Targets Targets
	Domain  string
	// Unknown runs for each request answered 404, 400 or 421.
	Unknown func()
}

var _ http.Handler = (*Route)(nil)

func (h *Route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, code, msg := h.resolve(r)
	if req == nil {
		if h.Unknown != nil {
			h.Unknown()
		}
		http.Error(w, msg, code)
		return
	}
	StripHeaders(r.Header)
	h.Next.ServeHTTP(w, r.WithContext(WithRequest(r.Context(), req)))
}

func (h *Route) resolve(r *http.Request) (*Request, int, string) {
	v := r.Header.Get(v1alpha1.HeaderTarget)
	if v == "" {
		t, port, err := h.Targets.ByHost(r.Host)
		switch {
		case errors.Is(err, registry.ErrAmbiguous):
			return nil, http.StatusMisdirectedRequest, "elasti: " + err.Error()
		case err != nil:
			return nil, http.StatusNotFound, fmt.Sprintf("elasti: no ElastiService serves host %q", r.Host)
		}
		return &Request{Target: t, Port: t.PortFor(0, port), Subset: r.Header.Get(v1alpha1.HeaderSubset)}, 0, ""
	}
	ns, name, ok := registry.ParseTarget(v)
	if !ok {
		return nil, http.StatusBadRequest, "elasti: " + v1alpha1.HeaderTarget + " must be namespace/name"
	}
	t, ok := h.Targets.ByKey(ns, name)
	if !ok {
		return nil, http.StatusNotFound, fmt.Sprintf("elasti: no ElastiService %s/%s", ns, name)
	}
	var hostPort, routePort int32
	if hn, ok := registry.ParseHost(r.Host, h.Domain); ok {
		hostPort = hn.Port
	}
	if p := r.Header.Get(v1alpha1.HeaderPort); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, http.StatusBadRequest, "elasti: " + v1alpha1.HeaderPort + " must be a port number"
		}
		routePort = int32(n)
	}
	return &Request{Target: t, Port: t.PortFor(routePort, hostPort), Subset: r.Header.Get(v1alpha1.HeaderSubset)}, 0, ""
}

// StripHeaders removes every X-Elasti-* header: they are for the resolver, not the target.
// Forward puts X-Elasti-Subset back when the mesh needs it.
func StripHeaders(h http.Header) {
	for k := range h {
		if len(k) >= 9 && strings.EqualFold(k[:9], "X-Elasti-") {
			delete(h, k)
		}
	}
}
