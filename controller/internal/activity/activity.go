// Package activity receives the resolver's activity signals. A signal records the time in an
// in-memory Store and puts the ElastiService in the leader's workqueue through a channel source,
// so a wake-up is reconciled within milliseconds, with no polling. Only the Reconcile loop acts
// on it: this package writes nothing to the API server.
package activity

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/wake"
)

// Store keeps the last activity per ElastiService. It is the leader's memory; the reconciler
// persists it to status coarsely, so a new leader starts from there.
type Store struct {
	mu   sync.Mutex
	last map[types.NamespacedName]time.Time
}

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{last: map[types.NamespacedName]time.Time{}} }

// Record notes activity for key at t, keeping the latest.
func (s *Store) Record(key types.NamespacedName, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.After(s.last[key]) {
		s.last[key] = t
	}
}

// Last returns the latest activity for key, or the zero time.
func (s *Store) Last(key types.NamespacedName) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[key]
}

// Forget drops key, when its ElastiService is gone.
func (s *Store) Forget(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, key)
}

// Authenticator decides whether a bearer token may send signals.
type Authenticator interface {
	Allowed(ctx context.Context, token string) (bool, error)
}

// TokenReviewer accepts service account tokens minted for wake.Audience whose user is in Users,
// checked with the API server's TokenReview and cached for a minute so a burst costs one review.
type TokenReviewer struct {
	Client client.Client
	Users  []string

	mu    sync.Mutex
	cache map[[32]byte]time.Time
}

// Allowed implements Authenticator.
func (r *TokenReviewer) Allowed(ctx context.Context, token string) (bool, error) {
	if token == "" {
		return false, nil
	}
	sum := sha256.Sum256([]byte(token))
	now := time.Now()
	r.mu.Lock()
	if exp, ok := r.cache[sum]; ok && now.Before(exp) {
		r.mu.Unlock()
		return true, nil
	}
	r.mu.Unlock()

	tr := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{wake.Audience}}}
	if err := r.Client.Create(ctx, tr); err != nil {
		return false, err
	}
	if !tr.Status.Authenticated || !slices.Contains(tr.Status.Audiences, wake.Audience) ||
		!slices.Contains(r.Users, tr.Status.User.Username) {
		return false, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache == nil {
		r.cache = map[[32]byte]time.Time{}
	}
	for k, exp := range r.cache {
		if now.After(exp) {
			delete(r.cache, k)
		}
	}
	r.cache[sum] = now.Add(time.Minute)
	return true, nil
}

// Metrics of the activity endpoint. Labels are bounded: the result only.
var signals = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "elasti_controller_activity_signals_total",
	Help: "Activity signals received from the resolver, by result (accepted, held, unauthorized, not_leader, invalid).",
}, []string{"result"})

// Collectors returns the package's metrics, for registration.
func Collectors() []prometheus.Collector { return []prometheus.Collector{signals} }

// Handler serves wake.Path.
type Handler struct {
	Store *Store
	// Auth checks the caller; nil accepts everyone (for tests and clusters that restrict the
	// port with a NetworkPolicy instead).
	Auth Authenticator
	// Elected is closed once this replica leads; before that signals are refused with 503 so
	// the resolver retries and reaches the leader.
	Elected <-chan struct{}
	// Events feeds the reconciler's channel source.
	Events chan<- event.GenericEvent
	Log    logr.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

var _ http.Handler = (*Handler)(nil)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.Auth != nil {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		ok, err := h.Auth.Allowed(r.Context(), token)
		if err != nil {
			h.Log.Error(err, "reviewing the resolver's token")
			http.Error(w, "cannot review token", http.StatusServiceUnavailable)
			return
		}
		if !ok {
			signals.WithLabelValues("unauthorized").Inc()
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	select {
	case <-h.Elected:
	default:
		signals.WithLabelValues("not_leader").Inc()
		http.Error(w, "not the leader", http.StatusServiceUnavailable)
		return
	}
	var sig wake.Signal
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&sig); err != nil {
		signals.WithLabelValues("invalid").Inc()
		http.Error(w, "body must be a JSON activity signal", http.StatusBadRequest)
		return
	}
	if errs := append(validation.IsDNS1123Label(sig.Namespace), validation.IsDNS1123Subdomain(sig.Name)...); len(errs) > 0 {
		signals.WithLabelValues("invalid").Inc()
		http.Error(w, "invalid namespace or name: "+strings.Join(errs, "; "), http.StatusBadRequest)
		return
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	key := types.NamespacedName{Namespace: sig.Namespace, Name: sig.Name}
	h.Store.Record(key, now())
	es := &v1alpha1.ElastiService{ObjectMeta: metav1.ObjectMeta{Namespace: sig.Namespace, Name: sig.Name}}
	select {
	case h.Events <- event.GenericEvent{Object: es}:
	case <-r.Context().Done():
		http.Error(w, "cancelled", http.StatusServiceUnavailable)
		return
	}
	result := "accepted"
	if sig.Held {
		result = "held"
	}
	signals.WithLabelValues(result).Inc()
	w.WriteHeader(http.StatusAccepted)
}

// Server serves the Handler on addr until ctx ends. It runs on every replica, so that a
// non-leader can answer 503 at once instead of leaving the resolver to time out.
type Server struct {
	Addr    string
	Handler http.Handler
}

// Start implements manager.Runnable.
func (s *Server) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle(wake.Path, s.Handler)
	srv := &http.Server{Addr: s.Addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: the server runs everywhere.
func (s *Server) NeedLeaderElection() bool { return false }
