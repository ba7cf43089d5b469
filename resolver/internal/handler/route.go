package handler

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
)

// Registry finds the entry for a request.
type Registry interface {
	ByKey(namespace, name string) (*registry.Entry, bool)
	ByHost(host string) (*registry.Entry, int32, error)
	// Tombstone returns what is left of a recently deleted ElastiService.
	Tombstone(namespace, name string) (*registry.Entry, bool)
}

// Verifier checks the signature that elasti's route rewrite puts beside its headers.
type Verifier interface {
	Verify(target, port, subset, sig string) bool
}

// Route finds the request's entry and strips elasti's headers. X-Elasti-Service and its port
// and subset are believed only with a valid X-Elasti-Signature, which only elasti's own route
// rewrite can make; without one they are ignored and the Host decides, as for a request that
// came through the Service's endpoints. A request for no known ElastiService, or for a port
// its Service does not have, is answered here and never forwarded: the resolver is not an
// open proxy.
type Route struct {
	Next     http.Handler
	Registry Registry
	// Signatures verifies the route headers; nil believes none.
	Signatures Verifier
	Domain     string
	// Unknown runs for each request answered 404, 400 or 421.
	Unknown func()
	// Unsigned runs for each request whose elasti headers were ignored.
	Unsigned func()
}

var _ http.Handler = (*Route)(nil)

func (h *Route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		// A tunnel would carry anything to the target's port, past every HTTP check here.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		http.Error(w, "elasti: CONNECT is not proxied", http.StatusMethodNotAllowed)
		return
	}
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
	if req, code, msg, ok := h.signed(r); ok {
		return req, code, msg
	}
	t, port, err := h.Registry.ByHost(r.Host)
	switch {
	case errors.Is(err, registry.ErrAmbiguous):
		return nil, http.StatusMisdirectedRequest, "elasti: " + err.Error()
	case err != nil:
		return nil, http.StatusNotFound, fmt.Sprintf("elasti: no ElastiService serves host %q", r.Host)
	}
	p, ok := t.PortFor(0, port)
	if !ok {
		return nil, http.StatusNotFound, noPort(t, port)
	}
	return &Request{Entry: t, Port: p}, 0, ""
}

// signed resolves a request by its elasti headers; ok is false when they are absent or not
// signed, and the Host must decide.
func (h *Route) signed(r *http.Request) (req *Request, code int, msg string, ok bool) {
	v := r.Header.Get(v1alpha1.HeaderElastiService)
	if v == "" {
		// A route rewritten by the previous release, until the controller renames its header.
		v = r.Header.Get(v1alpha1.HeaderElastiServiceOld)
	}
	if v == "" {
		return nil, 0, "", false
	}
	port, subset := r.Header.Get(v1alpha1.HeaderPort), r.Header.Get(v1alpha1.HeaderSubset)
	ns, name, valid := registry.ParseKey(v)
	var t *registry.Entry
	if valid {
		t, valid = h.Registry.ByKey(ns, name)
	}
	// The key is looked up first, so only known ElastiServices cost a signature check.
	if !valid || h.Signatures == nil || !h.Signatures.Verify(v, port, subset, r.Header.Get(v1alpha1.HeaderSignature)) {
		if h.Unsigned != nil {
			h.Unsigned()
		}
		return nil, 0, "", false
	}
	var hostPort, routePort int32
	if hn, ok := registry.ParseHost(r.Host, h.Domain); ok {
		hostPort = hn.Port
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return nil, http.StatusBadRequest, "elasti: " + v1alpha1.HeaderPort + " must be a port number", true
		}
		routePort = int32(n)
	}
	p, found := t.PortFor(routePort, hostPort)
	if !found {
		if routePort != 0 {
			hostPort = routePort
		}
		return nil, http.StatusNotFound, noPort(t, hostPort), true
	}
	return &Request{Entry: t, Port: p, Subset: subset}, 0, "", true
}

func noPort(t *registry.Entry, port int32) string {
	return fmt.Sprintf("elasti: Service %s/%s has no port %d", t.Namespace, t.Service, port)
}

// StripHeaders removes every X-Elasti-* header, which are for the resolver, not the target, and
// every X-Envoy-* header: a client's x-envoy-max-retries or x-envoy-upstream-rq-timeout-ms would
// otherwise set the retries and timeouts of the resolver's own sidecar on the replay, as Envoy
// never lets an external client do at an edge. Forward puts X-Elasti-Subset back when the mesh
// needs it.
func StripHeaders(h http.Header) {
	for k := range h {
		if hasPrefixFold(k, "X-Elasti-") || hasPrefixFold(k, "X-Envoy-") {
			delete(h, k)
		}
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
