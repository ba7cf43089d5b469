package handler

import (
	"context"

	"github.com/elasti-dev/elasti/resolver/internal/proxy"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
)

// Request is what Route learned about a request. Inner steps read it and set Outcome.
type Request struct {
	Entry *registry.Entry
	// Port is the Service port to forward to.
	Port registry.Port
	// Subset is the X-Elasti-Subset the route named, if any.
	Subset string
	// Outcome is the outcome label for metrics; see the metrics.Outcome* values.
	Outcome string
	// BodyRead says the whole body is in memory (Hold read it), so the replay cannot stall
	// on the caller.
	BodyRead bool
	// Upstream is where Forward sends the request. It lives here so that one allocation and
	// one copy of the http.Request serve the whole chain.
	Upstream proxy.Upstream
}

type requestKey struct{}

// WithRequest returns ctx carrying r, and r.Upstream for the proxy.
func WithRequest(ctx context.Context, r *Request) context.Context {
	return proxy.WithUpstream(context.WithValue(ctx, requestKey{}, r), &r.Upstream)
}

// RequestFrom returns the Request in ctx, or nil.
func RequestFrom(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}
