package handler

import (
	"net/http"
	"time"

	"github.com/elasti-dev/elasti/resolver/internal/metrics"
)

// Config is everything Build wires together.
type Config struct {
	Proxy    http.Handler
	Registry Registry
	// Signatures verifies the route headers; nil believes none.
	Signatures Verifier
	Throttler  interface {
		Throttler
		Gate
	}
	Activity   Activity
	Endpoints  Endpoints
	Upstream   string
	Domain     string
	MaxPending int
	// MaxPendingLimit is the most a spec.queue.maxPending may ask for; 0 is no limit.
	MaxPendingLimit int
	HoldTimeout     time.Duration
	// Admit, if set, says whether there is memory for one more held request.
	Admit func() bool
	// MaxHeldBody is how much of a held request's body is read while it waits.
	MaxHeldBody int64
	// MinBodyRate (bytes/s, after BodyGrace) bounds a body streamed to the target.
	MinBodyRate int64
	BodyGrace   time.Duration
	Metrics     *metrics.Metrics // required
	// ColdStartHeader adds HeaderColdStart to the answers of held requests.
	ColdStartHeader bool
	// Policies and Callers check callers against their targets' AuthorizationPolicies.
	Policies Policies
	Callers  *Callers
}

// Build returns the request path, built innermost first.
func Build(c Config) http.Handler {
	h := c.Proxy
	h = &Forward{Next: h, Mode: c.Upstream, Domain: c.Domain, Endpoints: c.Endpoints, MinBodyRate: c.MinBodyRate, BodyGrace: c.BodyGrace}
	h = &Hold{Next: h, Throttler: c.Throttler, Activity: c.Activity, Tombstones: c.Registry, MaxPending: c.MaxPending,
		MaxPendingLimit: c.MaxPendingLimit, HoldTimeout: c.HoldTimeout, Admit: c.Admit, MaxBody: c.MaxHeldBody, ColdStartHeader: c.ColdStartHeader, Metrics: c.Metrics}
	h = &Probe{Next: h, Gate: c.Throttler}
	h = &Authorize{Next: h, Policies: c.Policies, Callers: c.Callers}
	h = &Record{Next: h, Metrics: c.Metrics}
	return &Route{Next: h, Registry: c.Registry, Signatures: c.Signatures, Domain: c.Domain,
		Unknown: c.Metrics.UnknownHosts.Inc, Unsigned: c.Metrics.Unsigned.Inc}
}

// MaxHeaderBytes bounds a request's header block, which is held in memory as long as the
// request is: Go's default of 1 MiB would let a few thousand held requests take a gigabyte.
const MaxHeaderBytes = 64 << 10

// NewServer is the proxy's HTTP server: HTTP/1.1 and h2c with prior knowledge, no read or
// write timeout (requests are held and streams are long), headers of at most MaxHeaderBytes,
// and a keep-alive idle timeout longer than the callers', so the resolver never closes a
// connection a caller is about to reuse.
func NewServer(addr string, h http.Handler, idle time.Duration) *http.Server {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		IdleTimeout:       idle,
		Protocols:         new(http.Protocols),
	}
	// Held requests ask the kernel whether their caller is still there (callerGone).
	srv.ConnContext = withConn
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	return srv
}
