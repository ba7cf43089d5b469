package handler

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
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

// Endpoints picks a ready pod address of a backend, and says whether the only ready pods are
// those the controller's own probe passed, which the kubelet has not marked Ready yet.
type Endpoints interface {
	Pick(key types.NamespacedName, portName string) (string, bool)
	ProbedOnly(key types.NamespacedName) bool
}

// via marks a request the resolver sent to a public Service. Seeing it come back means the
// public Service or its route still points at the resolver: forwarding again would loop.
const via = "1.1 elasti-resolver"

// Forward chooses where the request goes and leaves it in Request.Upstream, which the context
// carries to the proxy. A gone target (a tombstone) goes to its public Service, whose routes
// point at its pods again, and so does one never proxied, whose routes never left them.
type Forward struct {
	Next      http.Handler
	Mode      string
	Domain    string
	Endpoints Endpoints
	// MinBodyRate and BodyGrace bound a body streamed to the target (see minRateBody); a
	// zero rate leaves it unbounded.
	MinBodyRate int64
	BodyGrace   time.Duration
}

var _ http.Handler = (*Forward)(nil)

func (h *Forward) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := RequestFrom(r.Context())
	t := req.Entry
	if t.Gone || t.Serving || t.Unprepared {
		closeConn(w, r)
	}
	if h.MinBodyRate > 0 && !req.BodyRead && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		ctx, slow := proxy.WithSlowBodyFlag(r.Context())
		r = r.WithContext(ctx)
		r.Body = newMinRateBody(w, r.Body, h.MinBodyRate, h.BodyGrace, slow)
	}
	u := &req.Upstream
	u.H2C = wantsH2C(r, req.Port.Name)
	switch {
	case t.Gone || t.Unprepared:
		if slices.ContainsFunc(r.Header.Values("Via"), func(v string) bool { return strings.Contains(v, via) }) {
			req.Outcome = metrics.OutcomeGone
			w.Header().Set("Retry-After", "1")
			msg := " was deleted and its Service still routes to the resolver"
			if !t.Gone {
				msg = " has never been in Proxy mode, yet its Service routes to the resolver"
			}
			http.Error(w, "elasti: "+t.Key()+msg, http.StatusServiceUnavailable)
			return
		}
		r.Header.Add("Via", via)
		// The private Service is deleted with the ElastiService, and made only when Proxy mode
		// is first wanted, so pods mode has no slice to pick from either: both modes go
		// through the public Service.
		u.Addr = names.ServiceFQDN(t.Service, t.Namespace, h.Domain) + ":" + strconv.Itoa(int(req.Port.Port))
		if h.Mode != UpstreamPods {
			u.Host = u.Addr // the sidecar routes on the Host
		}
	case h.Mode == UpstreamPods:
		addr, ok := h.Endpoints.Pick(t.Backend, req.Port.Name)
		if !ok {
			// The gate opened and the endpoints went away again before this request left.
			w.Header().Set("Retry-After", "1")
			http.Error(w, "elasti: "+t.Key()+" has no ready endpoint", http.StatusServiceUnavailable)
			return
		}
		u.Addr = addr
	case h.Endpoints.ProbedOnly(t.Backend):
		// The backend's own Service has no ready pod yet; those that passed the controller's
		// probe are the probed Service's. The controller probes no target with a
		// DestinationRule, so no subset is asked for.
		host := names.ServiceFQDN(names.ProbedService(t.Service), t.Namespace, h.Domain) + ":" + strconv.Itoa(int(req.Port.Port))
		u.Addr, u.Host = host, host
	default:
		host := names.ServiceFQDN(t.Backend.Name, t.Backend.Namespace, h.Domain) + ":" + strconv.Itoa(int(req.Port.Port))
		u.Addr, u.Host, u.Subset = host, host, req.Subset
	}
	h.Next.ServeHTTP(w, r)
}

// closeConn asks the caller to open a new connection after this response: kube-proxy pinned
// the old one to the resolver, and a new one reaches the target's pods. HTTP/1.1 gets
// Connection: close; the HTTP/2 server turns the same header into a graceful GOAWAY. Upgrades
// are left alone, since their response must say Connection: Upgrade.
func closeConn(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "" {
		w.Header().Set("Connection", "close")
	}
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
