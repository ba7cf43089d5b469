package handler

import (
	"net/http"
	"time"

	"github.com/elasti-dev/elasti/resolver/internal/metrics"
)

// Config is everything Build wires together.
type Config struct {
	Proxy     http.Handler
	Targets   Targets
	Throttler interface {
		Throttler
		Gate
	}
	Waker       Waker
	Endpoints   Endpoints
	Upstream    string
	Domain      string
	MaxPending  int
	HoldTimeout time.Duration
	Metrics     *metrics.Metrics
}

// Build returns the request path, built innermost first.
func Build(c Config) http.Handler {
	h := c.Proxy
	h = &Forward{Next: h, Mode: c.Upstream, Domain: c.Domain, Endpoints: c.Endpoints}
	h = &Hold{Next: h, Throttler: c.Throttler, Waker: c.Waker, Tombstones: c.Targets, MaxPending: c.MaxPending,
		HoldTimeout: c.HoldTimeout, Metrics: c.Metrics}
	h = &Probe{Next: h, Gate: c.Throttler}
	h = &Record{Next: h, Metrics: c.Metrics}
	route := &Route{Next: h, Targets: c.Targets, Domain: c.Domain}
	if c.Metrics != nil {
		route.Unknown = c.Metrics.UnknownHosts.Inc
	}
	return route
}

// NewServer is the proxy's HTTP server: HTTP/1.1 and h2c with prior knowledge, no read or
// write timeout (requests are held and streams are long), and a keep-alive idle timeout longer
// than the callers', so the resolver never closes a connection a caller is about to reuse.
func NewServer(addr string, h http.Handler, idle time.Duration) *http.Server {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: time.Minute,
		IdleTimeout:       idle,
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	return srv
}
