package proxy

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// Upstream is where one request goes.
type Upstream struct {
	// Addr is host:port to dial.
	Addr string
	// Host, if set, replaces the Host header; the mesh routes on it.
	Host string
	// Subset is re-sent as X-Elasti-Subset for the private VirtualService.
	Subset string
	// H2C sends the request over HTTP/2 with prior knowledge instead of HTTP/1.1.
	H2C bool
}

type upstreamKey struct{}

// WithUpstream returns ctx carrying u.
func WithUpstream(ctx context.Context, u *Upstream) context.Context {
	return context.WithValue(ctx, upstreamKey{}, u)
}

// UpstreamFrom returns the Upstream in ctx, or nil.
func UpstreamFrom(ctx context.Context) *Upstream {
	u, _ := ctx.Value(upstreamKey{}).(*Upstream)
	return u
}

// Options configure New.
type Options struct {
	// DialRetries is how many times a refused dial is retried. Default 8.
	DialRetries int
	// DialBackoff is the first delay between dial attempts, doubled each time. Default 10ms.
	DialBackoff time.Duration
	// MaxConnsPerHost bounds the connections to one upstream address; 0 means no bound. A
	// bound queues a wake-up burst in the resolver instead of opening a connection per held
	// request at once.
	MaxConnsPerHost int
	// ConnWait bounds how long a request waits for a connection to its upstream (see
	// Transport); those that wait longer get 503 with Retry-After. 0 is no bound.
	ConnWait time.Duration
	// OnError runs when a request got no response, before the 502 is written.
	OnError func(r *http.Request, err error)
	Log     logr.Logger
	// Transport, if set, replaces the one the fields above describe: a test's dialer that
	// plays kube-proxy.
	Transport http.RoundTripper
}

// New builds the reverse proxy.
func New(o Options) *httputil.ReverseProxy {
	if o.DialRetries == 0 {
		o.DialRetries = 8
	}
	if o.DialBackoff == 0 {
		o.DialBackoff = 10 * time.Millisecond
	}
	tr := o.Transport
	if tr == nil {
		tr = newTransport(o)
	}
	return &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    tr,
		BufferPool:   bufferPool{},
		ErrorHandler: errorHandler(o),
		// ReverseProxy flushes streaming responses (no Content-Length, which includes gRPC, and
		// SSE) after every write; a response of known length needs no timer per request.
		FlushInterval: 0,
		// Copy errors (a caller or target gone mid-body) are routine for a proxy: debug level.
		ErrorLog: log.New(logWriter{o.Log}, "", 0),
	}
}

func rewrite(pr *httputil.ProxyRequest) {
	u := UpstreamFrom(pr.In.Context())
	if u == nil {
		// The chain always sets an upstream; an empty address makes the transport fail
		// rather than send the request anywhere else.
		u = &Upstream{}
	}
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = u.Addr
	pr.Out.Host = pr.In.Host
	if u.Host != "" {
		pr.Out.Host = u.Host
	}
	if u.Subset != "" {
		pr.Out.Header.Set(v1alpha1.HeaderSubset, u.Subset)
	}
	// Rewrite starts from a request without X-Forwarded-*; keep what earlier hops said and
	// append this one, so the target sees the original host and scheme.
	in := pr.In.Header
	if v := in["X-Forwarded-For"]; len(v) > 0 {
		pr.Out.Header["X-Forwarded-For"] = v
	}
	pr.SetXForwarded()
	if v := in.Get("X-Forwarded-Host"); v != "" {
		pr.Out.Header.Set("X-Forwarded-Host", v)
	}
	if v := in.Get("X-Forwarded-Proto"); v != "" {
		pr.Out.Header.Set("X-Forwarded-Proto", v)
	}
}

func errorHandler(o Options) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, ErrSlowBody) || bodyTooSlow(r.Context()) {
			// The caller is there but its body is not: the read deadline that caught it also
			// cancelled the request, so this comes before the check for a caller that left.
			w.Header().Set("Connection", "close")
			http.Error(w, "elasti: the request body arrived too slowly", http.StatusRequestTimeout)
			return
		}
		if r.Context().Err() != nil {
			// The caller is gone; nobody reads an answer.
			w.WriteHeader(499)
			return
		}
		if o.OnError != nil {
			o.OnError(r, err)
		}
		if errors.Is(err, ErrConnWait) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "elasti: no connection to the target was free in time; retry later", http.StatusServiceUnavailable)
			return
		}
		o.Log.V(1).Info("upstream failed", "host", r.Host, "error", err.Error())
		http.Error(w, "elasti: the target did not answer", http.StatusBadGateway)
	}
}

// ErrSlowBody fails a request body that arrives too slowly (the handler's minimum rate).
var ErrSlowBody = errors.New("request body arrived too slowly")

type slowBodyKey struct{}

// WithSlowBodyFlag returns ctx carrying a flag for the reader of the request's body to set when
// the body came too slowly. The read deadline that catches a stalled body also cancels the
// request, so the error the proxy sees may be the cancellation rather than ErrSlowBody.
func WithSlowBodyFlag(ctx context.Context) (context.Context, *atomic.Bool) {
	flag := &atomic.Bool{}
	return context.WithValue(ctx, slowBodyKey{}, flag), flag
}

func bodyTooSlow(ctx context.Context) bool {
	flag, _ := ctx.Value(slowBodyKey{}).(*atomic.Bool)
	return flag != nil && flag.Load()
}

// ErrConnWait is a request that got no connection to its upstream within the Transport's
// ConnWait: the upstream's connections were all busy (MaxConnsPerHost) or it could not be dialled.
var ErrConnWait = errors.New("no connection to the target within the wait")

// Transport sends requests whose Upstream says H2C over HTTP/2 with prior knowledge and
// everything else over HTTP/1.1, so gRPC keeps its streams and trailers and WebSocket upgrades
// keep working.
type Transport struct {
	H1, H2C *http.Transport
	// ConnWait bounds how long a request waits for a connection to its upstream; 0 is no
	// bound. Without one, requests queued behind MaxConnsPerHost wait as long as their caller.
	ConnWait time.Duration
}

func newTransport(o Options) *Transport {
	t := NewTransport(o.DialRetries, o.DialBackoff, o.MaxConnsPerHost)
	t.ConnWait = o.ConnWait
	return t
}

// NewTransport returns a Transport whose dials retry a refused connection.
func NewTransport(retries int, backoff time.Duration, maxConnsPerHost int) *Transport {
	dial := retryDial(&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}, retries, backoff)
	h1 := &http.Transport{
		DialContext:           dial,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		MaxConnsPerHost:       maxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	h2c := &http.Transport{
		DialContext:     dial,
		IdleConnTimeout: 90 * time.Second,
	}
	h2c.Protocols = new(http.Protocols)
	h2c.Protocols.SetUnencryptedHTTP2(true)
	return &Transport{H1: h1, H2C: h2c}
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt := t.H1
	if u := UpstreamFrom(r.Context()); u != nil && u.H2C {
		rt = t.H2C
	}
	if t.ConnWait <= 0 {
		return rt.RoundTrip(r)
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	var got atomic.Bool
	timer := time.AfterFunc(t.ConnWait, func() {
		if !got.Load() {
			cancel(ErrConnWait)
		}
	})
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { got.Store(true); timer.Stop() }}
	res, err := rt.RoundTrip(r.WithContext(httptrace.WithClientTrace(ctx, trace)))
	timer.Stop()
	if err != nil {
		cancel(nil)
		if errors.Is(context.Cause(ctx), ErrConnWait) {
			return nil, ErrConnWait
		}
		return nil, err
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// The upgraded connection is the body and must stay writable; it ends with the
		// server's request context, this context's parent.
		context.AfterFunc(r.Context(), func() { cancel(nil) })
		return res, nil
	}
	res.Body = &cancelBody{ReadCloser: res.Body, cancel: cancel}
	return res, nil
}

// cancelBody releases the request's context once the proxy is done with the response.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// CloseIdleConnections closes both transports' idle connections.
func (t *Transport) CloseIdleConnections() {
	t.H1.CloseIdleConnections()
	t.H2C.CloseIdleConnections()
}

// retryDial retries a refused connection: a pod can be Ready before its port listens, and
// nothing of the request has been sent yet, so the retry cannot duplicate it.
func retryDial(d *net.Dialer, retries int, backoff time.Duration) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		wait := backoff
		for attempt := 0; ; attempt++ {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil || attempt >= retries || !errors.Is(err, syscall.ECONNREFUSED) {
				return c, err
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, err
			case <-t.C:
			}
			wait = min(2*wait, time.Second)
		}
	}
}

type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.V(1).Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
