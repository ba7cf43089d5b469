package handler

import (
	"net/http"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
)

// Gate says whether a backend is ready now.
type Gate interface {
	Ready(key types.NamespacedName) bool
}

// Probe answers requests matching the target's spec.probeResponses while the target is not
// ready, so health checks do not wake it. Once it is ready they reach the target.
type Probe struct {
	Next http.Handler
	Gate Gate
}

var _ http.Handler = (*Probe)(nil)

func (h *Probe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := RequestFrom(r.Context())
	// A gone or never proxied target's probes reach its pods through the public Service.
	if len(req.Entry.Probes) == 0 || req.Entry.Gone || req.Entry.Unprepared || h.Gate.Ready(req.Entry.Backend) {
		h.Next.ServeHTTP(w, r)
		return
	}
	for i := range req.Entry.Probes {
		if p := &req.Entry.Probes[i]; MatchProbe(p, r) {
			req.Outcome = metrics.OutcomeProbe
			writeProbe(w, p)
			return
		}
	}
	h.Next.ServeHTTP(w, r)
}

// MatchProbe says whether r matches p: path or prefix, method, and every header.
func MatchProbe(p *v1alpha1.ProbeResponse, r *http.Request) bool {
	path := r.URL.Path
	switch {
	case p.Path != "" && path != p.Path:
		return false
	case p.PathPrefix != "" && !strings.HasPrefix(path, p.PathPrefix):
		return false
	case p.Method != "" && !strings.EqualFold(p.Method, r.Method):
		return false
	}
	for _, m := range p.Headers {
		vs, ok := r.Header[http.CanonicalHeaderKey(m.Name)]
		if !ok {
			return false
		}
		if m.Value != "" && !containsValue(vs, m.Value) {
			return false
		}
	}
	return true
}

func containsValue(vs []string, want string) bool {
	for _, v := range vs {
		if v == want {
			return true
		}
	}
	return false
}

func writeProbe(w http.ResponseWriter, p *v1alpha1.ProbeResponse) {
	code := int(p.StatusCode)
	if code == 0 {
		code = http.StatusOK
	}
	ct := p.ContentType
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(p.Body)))
	w.WriteHeader(code)
	_, _ = w.Write([]byte(p.Body))
}
