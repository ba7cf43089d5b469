package handler

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/elasti-dev/elasti/resolver/internal/proxy"
)

// Errors about the caller, as the cause of a held request's end.
var (
	// errClientLeft means the caller closed or reset its connection while its request was held.
	errClientLeft = errors.New("the caller left while its request was held")
	// errSlowBody means a request body arrived more slowly than the minimum rate.
	errSlowBody = proxy.ErrSlowBody
)

// heldBody reads a held request's body while the request waits. Go's HTTP/1.1 server notices a
// caller that leaves (FIN or RST) only once the body has been read, so a body left unread would
// keep a gone caller's request held and then replayed. Reading it also means the replay never
// waits on the caller: a slow sender cannot keep one of the target's connections busy. Bodies
// larger than the limit keep their first limit bytes here and stream the rest at the replay.
type heldBody struct {
	done chan struct{}
	buf  bytes.Buffer
	rest io.Reader // the unread remainder when the body was larger than the limit
	err  error
}

// holdBody starts reading r's body into memory, at most limit bytes. left runs if the body
// ends early, which means the caller went away. It returns nil when r has no body.
func holdBody(r *http.Request, limit int64, left func()) *heldBody {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || limit <= 0 {
		return nil
	}
	b := &heldBody{done: make(chan struct{})}
	if r.ContentLength > limit {
		// Too large to keep: only a check before the replay can tell whether its caller left.
		b.rest = r.Body
		close(b.done)
		return b
	}
	body := r.Body
	if r.ContentLength > 0 {
		b.buf.Grow(int(r.ContentLength))
	}
	go func() {
		defer close(b.done)
		n, err := b.buf.ReadFrom(io.LimitReader(body, limit))
		switch {
		case err != nil:
			b.err = err
			left()
		case n == limit && r.ContentLength < 0:
			b.rest = body // chunked and longer than the limit
		}
	}()
	return b
}

// wait returns once the body is read, the deadline passes (errSlowBody) or ctx ends.
func (b *heldBody) wait(ctx context.Context, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return errSlowBody
	}
}

// reader is the body to replay: what was read, then what was not.
func (b *heldBody) reader(orig io.ReadCloser) io.ReadCloser {
	if b.rest == nil {
		return io.NopCloser(&b.buf)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(&b.buf, b.rest), orig}
}

// minRateBody fails a request body that stalls for longer than grace, or whose average rate
// after grace falls below rate bytes per second, so that a caller trickling its body cannot keep
// a connection to the target, one of a bounded few, busy for ever.
type minRateBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	n     int64
	rate  int64
	grace time.Duration
	slow  *atomic.Bool // tells the proxy's error handler (proxy.WithSlowBodyFlag)
}

func newMinRateBody(w http.ResponseWriter, body io.ReadCloser, rate int64, grace time.Duration, slow *atomic.Bool) *minRateBody {
	return &minRateBody{ReadCloser: body, rc: http.NewResponseController(w), start: time.Now(), rate: rate, grace: grace, slow: slow}
}

func (b *minRateBody) Read(p []byte) (int, error) {
	now := time.Now()
	// Every read must bring something within grace; a writer that cannot set a deadline
	// (a test recorder) is still bounded by the rate check.
	_ = b.rc.SetReadDeadline(now.Add(b.grace))
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		b.slow.Store(true)
		return n, errSlowBody
	}
	if err == nil {
		if el := time.Since(b.start); el > b.grace && float64(b.n) < float64(b.rate)*el.Seconds() {
			b.slow.Store(true)
			return n, errSlowBody
		}
	}
	return n, err
}

// connKey carries the caller's connection in the request context (NewServer's ConnContext), so
// that a held request can ask the kernel whether its caller is still there.
type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// callerGone says whether the caller's TCP connection has been closed or reset by the caller.
// It is the last check before a replay: the request context says so too, but only once the
// server's background read has run, and never while a body is left unread.
func callerGone(r *http.Request) bool {
	if r.Context().Err() != nil {
		return true
	}
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	return c != nil && peerClosed(c)
}
