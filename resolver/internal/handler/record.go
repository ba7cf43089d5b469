package handler

import (
	"net/http"

	"github.com/elasti-dev/elasti/resolver/internal/metrics"
)

// Record counts each response by target, status class and outcome.
type Record struct {
	Next    http.Handler
	Metrics *metrics.Metrics
}

var _ http.Handler = (*Record)(nil)

func (h *Record) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	h.Next.ServeHTTP(sw, r)
	req := RequestFrom(r.Context())
	if req == nil {
		return
	}
	h.Metrics.Response(req.Entry.Namespace, req.Entry.Name, sw.code, req.Outcome)
}

// statusWriter remembers the status code. Unwrap lets http.ResponseController reach Flush and
// Hijack of the server's writer, which the proxy needs for streaming and upgrades.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
