package handler

import (
	"net"
	"net/http"
	"net/netip"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/elasti-dev/elasti/internal/authz"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
)

// Policies looks AuthorizationPolicies up by "namespace/name".
type Policies interface {
	Policy(key string) (*securityv1.AuthorizationPolicy, bool)
}

// Authorize checks each caller against the AuthorizationPolicies of its target's pods, as the
// target's own sidecar would have, before the request is held, wakes anything or is replayed.
// Replays reach the target with the resolver's identity, which elasti's own policy lets
// through: without this check, anyone who could reach the resolver could reach the target.
// The answer to a refused caller is the one Envoy gives, and names no policy.
type Authorize struct {
	Next     http.Handler
	Policies Policies
	// Callers says who sent a request; nil knows no one, and principal rules match no caller.
	Callers *Callers
}

var _ http.Handler = (*Authorize)(nil)

// DeniedBody is what a refused caller reads, as from an Istio sidecar.
const DeniedBody = "RBAC: access denied"

func (h *Authorize) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := RequestFrom(r.Context())
	if req == nil || len(req.Entry.Policies) == 0 {
		h.Next.ServeHTTP(w, r)
		return
	}
	policies := make([]*securityv1.AuthorizationPolicy, 0, len(req.Entry.Policies))
	for _, key := range req.Entry.Policies {
		p, ok := h.Policies.Policy(key)
		if !ok {
			// Listed by the controller but not (or no longer) in this cache: a moment's lag
			// either way. Refusing is the side that widens nothing.
			h.deny(w, req)
			return
		}
		policies = append(policies, p)
	}
	// A method Envoy's HTTP inspector does not know makes the resolver's sidecar pass the
	// connection as TCP, with no x-forwarded-client-cert of its own: the caller's would stand.
	if h.Callers != nil && h.Callers.trusting() && !knownMethod(r.Method) {
		h.deny(w, req)
		return
	}
	principal, ok := h.Callers.Principal(r)
	if !ok {
		h.deny(w, req)
		return
	}
	d := authz.Evaluate(policies, authz.Request{
		Principal: principal,
		Host:      r.Host,
		Method:    r.Method,
		Path:      r.URL.EscapedPath(),
		Port:      req.Port.TargetPort,
		Headers:   r.Header,
	})
	if !d.Allowed {
		h.deny(w, req)
		return
	}
	h.Next.ServeHTTP(w, r)
}

func (h *Authorize) deny(w http.ResponseWriter, req *Request) {
	req.Outcome = metrics.OutcomeDenied
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte(DeniedBody))
}

// Callers reads a caller's identity from the x-forwarded-client-cert header that the resolver's
// own sidecar sets from the caller's verified mTLS certificate. Only connections from that
// sidecar are believed: a caller that reaches the resolver some other way could write the
// header itself.
type Callers struct {
	// TrustedPeers are the addresses the sidecar connects from (127.0.0.6, Istio's inbound
	// passthrough source, by default); empty believes no one.
	TrustedPeers []netip.Prefix
}

// HeaderClientCert is the header in which Envoy forwards the caller's certificate.
const HeaderClientCert = authz.XFCCHeader

// Principal returns the verified principal of r's caller, "" if it has none. ok is false for a
// header the sidecar would not have written (malformed, or in several lines): a caller could
// break it on purpose to slip past a DENY policy on its own principal.
func (c *Callers) Principal(r *http.Request) (principal string, ok bool) {
	if !c.trusting() || !c.trusted(r.RemoteAddr) {
		return "", true
	}
	p, err := authz.CallerFromHeader(r.Header)
	return p, err == nil
}

func (c *Callers) trusting() bool { return c != nil && len(c.TrustedPeers) > 0 }

func (c *Callers) trusted(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range c.TrustedPeers {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// knownMethod reports whether Envoy's HTTP/1 parser knows m, so that the sidecar's protocol
// detection takes the request for HTTP. The list is the methods of RFC 9110, PATCH, and WebDAV's.
func knownMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodTrace,
		"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH":
		return true
	}
	return false
}
