// Package activity receives the resolver's activity signals. A signal records the time in an
// in-memory Store and puts the ElastiService in the leader's workqueue through a channel source,
// so a wake-up is reconciled within milliseconds, with no polling. Only the Reconcile loop acts
// on it: this package writes nothing to the API server.
package activity

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/event"

	activityv1 "github.com/elasti-dev/elasti/api/activity/v1"
	"github.com/elasti-dev/elasti/api/v1alpha1"
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

// Verdict is an Authenticator's answer. The refusals are also the result label of
// elasti_controller_activity_signals_total.
type Verdict string

const (
	// Authenticated tokens may send signals.
	Authenticated Verdict = "authenticated"
	// RejectedToken was refused without a TokenReview: it is not a JWT, is not for
	// activityv1.Audience, has expired, is for a user not allowed, or was refused moments ago.
	RejectedToken Verdict = "rejected_token"
	// Unauthorized was refused by the TokenReview.
	Unauthorized Verdict = "unauthorized"
	// RateLimited would have needed a review while its source had asked for too many.
	RateLimited Verdict = "rate_limited"
)

// Authenticator decides whether a bearer token may send signals.
type Authenticator interface {
	// Authenticate judges token, sent from source (the caller's IP address). retryAfter is
	// set with RateLimited; err means the token could not be judged.
	Authenticate(ctx context.Context, token, source string) (v Verdict, retryAfter time.Duration, err error)
}

// TokenReviews creates TokenReviews; the typed client-go client's TokenReviews() is one.
type TokenReviews interface {
	Create(ctx context.Context, tr *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error)
}

// Bounds of the TokenReviewer.
const (
	// AcceptedTTL is how long an accepted token is trusted without a review, at most until it
	// expires.
	AcceptedTTL = time.Minute
	// RefusedTTL is how long a refused token is refused without a look.
	RefusedTTL = 10 * time.Second
	// DefaultReviewRate and DefaultReviewBurst are the reviews one source address may cause:
	// a resolver needs one a minute per token.
	DefaultReviewRate  = rate.Limit(1)
	DefaultReviewBurst = 5
	// maxTokenBytes is far above a service account token's size.
	maxTokenBytes = 16 << 10
	// expiryLeeway forgives clock skew with the API server that minted the token.
	expiryLeeway = 30 * time.Second
	// maxCached and maxSources bound memory under a flood of distinct tokens and addresses.
	maxCached  = 4096
	maxSources = 1024
)

// TokenReviewer accepts service account tokens minted for activityv1.Audience whose user is in Users.
// It refuses a token that cannot be one without asking anybody: the token is read as a JWT,
// trusting nothing in it, and must name activityv1.Audience, an allowed user (and Issuer, when set),
// and expire in the future. Only then does the API server review it with a TokenReview, at
// most Rate per second and Burst at once per source address. Answers are cached by the token's
// SHA-256: an accepted token for AcceptedTTL, a refused one for RefusedTTL.
type TokenReviewer struct {
	// Reviews should be a client of its own, with its own rate limit, so that a flood of
	// signals cannot spend the reconciler's.
	Reviews TokenReviews
	Users   []string
	// Issuer, when set, must be the token's iss claim.
	Issuer string
	// Rate and Burst bound the reviews per source address; DefaultReviewRate and
	// DefaultReviewBurst when zero.
	Rate  rate.Limit
	Burst int
	// Clock is clock.RealClock when nil.
	Clock clock.PassiveClock
	Log   logr.Logger

	// parse reads a token's claims; parseToken when nil (tests count the calls).
	parse func(token string) (*claims, error)

	mu       sync.Mutex
	accepted tokenCache
	refused  tokenCache
	sources  map[string]*sourceLimit
	renewing map[[32]byte]bool // a renewal's review is under way
	// renewed, when set, is called after each renewal (tests wait on it).
	renewed func()
}

var _ Authenticator = (*TokenReviewer)(nil)

// Authenticate implements Authenticator.
func (r *TokenReviewer) Authenticate(ctx context.Context, token, source string) (Verdict, time.Duration, error) {
	if token == "" || len(token) > maxTokenBytes {
		return RejectedToken, 0, nil
	}
	var clk clock.PassiveClock = clock.RealClock{}
	if r.Clock != nil {
		clk = r.Clock
	}
	now := clk.Now()
	sum := sha256.Sum256([]byte(token))
	r.mu.Lock()
	accepted, refused := r.accepted.has(sum, now), r.refused.has(sum, now)
	renew := accepted && r.accepted.renewDue(sum, now) && !r.renewing[sum]
	if renew {
		if r.renewing == nil {
			r.renewing = map[[32]byte]bool{}
		}
		r.renewing[sum] = true
	}
	r.mu.Unlock()
	switch {
	case accepted:
		if renew {
			go r.renew(clk, token, source, sum)
		}
		return Authenticated, 0, nil
	case refused:
		return RejectedToken, 0, nil
	}
	return r.review(ctx, now, token, source, sum)
}

// renewTimeout bounds a renewal's review, which no request waits for.
const renewTimeout = 10 * time.Second

// renew reviews an accepted token again before its acceptance lapses, off the signal's path: a
// resolver that keeps signalling (its keepalive does, every 20 s) never waits for a TokenReview,
// the first signal of a wake included, and the token is still reviewed at least once per
// AcceptedTTL. A refusal drops the acceptance at once; a failed review lets it lapse.
func (r *TokenReviewer) renew(clk clock.PassiveClock, token, source string, sum [32]byte) {
	defer func() {
		r.mu.Lock()
		delete(r.renewing, sum)
		r.mu.Unlock()
		if r.renewed != nil {
			r.renewed()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), renewTimeout)
	defer cancel()
	v, _, err := r.review(ctx, clk.Now(), token, source, sum)
	switch {
	case err != nil:
		r.Log.Error(err, "renewing the resolver's token review; it lapses unless a later one passes")
	case v == RejectedToken || v == Unauthorized:
		r.mu.Lock()
		r.accepted.drop(sum)
		r.mu.Unlock()
	}
}

// review judges a token that neither cache answers for: from its claims, then with a
// TokenReview within source's rate limit.
func (r *TokenReviewer) review(ctx context.Context, now time.Time, token, source string, sum [32]byte) (Verdict, time.Duration, error) {
	parse := r.parse
	if parse == nil {
		parse = parseToken
	}
	c, err := parse(token)
	if err == nil {
		err = r.check(c, now)
	}
	if err != nil {
		r.Log.V(1).Info("refused a token without review", "reason", err.Error())
		r.refuse(sum, now)
		return RejectedToken, 0, nil
	}
	if wait := r.take(source, now); wait > 0 {
		return RateLimited, wait, nil
	}

	tr, err := r.Reviews.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{activityv1.Audience}}},
		metav1.CreateOptions{})
	if err != nil {
		return "", 0, fmt.Errorf("creating a TokenReview: %w", err)
	}
	if !tr.Status.Authenticated || !slices.Contains(tr.Status.Audiences, activityv1.Audience) ||
		!slices.Contains(r.Users, tr.Status.User.Username) {
		r.refuse(sum, now)
		return Unauthorized, 0, nil
	}
	until, renewAfter := now.Add(AcceptedTTL), now.Add(AcceptedTTL/2)
	if exp := c.expiry(); exp.Before(until) {
		// Renewing would not extend the acceptance: the kubelet's next token needs its own review.
		until, renewAfter = exp, time.Time{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accepted.add(sum, until, now)
	r.accepted.setRenewAfter(sum, renewAfter)
	return Authenticated, 0, nil
}

func (r *TokenReviewer) refuse(sum [32]byte, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused.add(sum, now.Add(RefusedTTL), now)
}

// check tells why claims cannot be those of a token this reviewer would accept.
func (r *TokenReviewer) check(c *claims, now time.Time) error {
	switch {
	case !slices.Contains(c.Audience, activityv1.Audience):
		return fmt.Errorf("audience %q lacks %s", c.Audience, activityv1.Audience)
	case c.Expiry == nil:
		return errors.New("no expiry")
	case !now.Before(c.expiry().Add(expiryLeeway)):
		return fmt.Errorf("expired at %s", c.expiry().UTC().Format(time.RFC3339))
	case !slices.Contains(r.Users, c.Subject):
		return fmt.Errorf("subject %q is not an allowed user", c.Subject)
	case r.Issuer != "" && c.Issuer != r.Issuer:
		return fmt.Errorf("issuer %q is not %q", c.Issuer, r.Issuer)
	}
	return nil
}

// take spends one review from source's token bucket, or says how long until one is left.
func (r *TokenReviewer) take(source string, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sources[source]
	if !ok {
		limit, burst := r.Rate, r.Burst
		if limit <= 0 {
			limit = DefaultReviewRate
		}
		if burst <= 0 {
			burst = DefaultReviewBurst
		}
		if r.sources == nil {
			r.sources = map[string]*sourceLimit{}
		}
		if len(r.sources) >= maxSources {
			pruneSources(r.sources, now, time.Duration(float64(burst)/float64(limit)*float64(time.Second)))
		}
		s = &sourceLimit{lim: rate.NewLimiter(limit, burst)}
		r.sources[source] = s
	}
	s.seen = now
	res := s.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// sourceLimit is one source address's token bucket.
type sourceLimit struct {
	lim  *rate.Limiter
	seen time.Time
}

// pruneSources drops the buckets idle for refill or longer, which are full again, so a new
// bucket is the same; if none is, it drops one at random, so the map stays bounded.
func pruneSources(sources map[string]*sourceLimit, now time.Time, refill time.Duration) {
	for k, s := range sources {
		if now.Sub(s.seen) >= refill {
			delete(sources, k)
		}
	}
	for k := range sources {
		if len(sources) < maxSources {
			return
		}
		delete(sources, k)
	}
}

// tokenCache remembers token hashes until a deadline. It holds at most maxCached and forgets
// the oldest first, so a flood of distinct tokens costs bounded memory.
type tokenCache struct {
	until map[[32]byte]time.Time
	order [][32]byte // the keys of until, oldest first
	// renewAfter is when an accepted token's review should be renewed; absent, never.
	renewAfter map[[32]byte]time.Time
}

func (c *tokenCache) has(k [32]byte, now time.Time) bool {
	u, ok := c.until[k]
	return ok && now.Before(u)
}

func (c *tokenCache) renewDue(k [32]byte, now time.Time) bool {
	t, ok := c.renewAfter[k]
	return ok && !now.Before(t)
}

func (c *tokenCache) setRenewAfter(k [32]byte, t time.Time) {
	if t.IsZero() {
		delete(c.renewAfter, k)
		return
	}
	if c.renewAfter == nil {
		c.renewAfter = map[[32]byte]time.Time{}
	}
	c.renewAfter[k] = t
}

// drop forgets k at once; its place in order goes when it reaches the front.
func (c *tokenCache) drop(k [32]byte) {
	delete(c.until, k)
	delete(c.renewAfter, k)
}

func (c *tokenCache) add(k [32]byte, until, now time.Time) {
	if c.until == nil {
		c.until = map[[32]byte]time.Time{}
	}
	if _, ok := c.until[k]; !ok {
		c.order = append(c.order, k)
	}
	c.until[k] = until
	for len(c.order) > 0 && (len(c.until) > maxCached || !now.Before(c.until[c.order[0]])) {
		delete(c.until, c.order[0])
		delete(c.renewAfter, c.order[0])
		c.order = c.order[1:]
	}
}

// claims are the parts of a service account token read before any review. Nothing in them is
// trusted, since the signature is not checked here: they only spare a review of a token that
// could not pass it.
type claims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience audience `json:"aud"`
	Expiry   *float64 `json:"exp"`
}

// expiry is the exp claim in whole seconds, clamped so that no value overflows.
func (c *claims) expiry() time.Time { return time.Unix(int64(min(max(*c.Expiry, 0), 1<<40)), 0) }

// audience is a JWT's aud claim: one string or a list of them.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

// parseToken reads the claims of a JWT in compact form (header.payload.signature, each
// base64url without padding) without checking its signature.
func parseToken(token string) (*claims, error) {
	header, payload, ok := strings.Cut(token, ".")
	if !ok {
		return nil, errors.New("not a JWT")
	}
	payload, sig, ok := strings.Cut(payload, ".")
	if !ok || sig == "" || strings.Contains(sig, ".") {
		return nil, errors.New("not a JWT")
	}
	if _, err := base64.RawURLEncoding.DecodeString(sig); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := decodePart(header, &h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") {
		return nil, fmt.Errorf("algorithm %q", h.Alg)
	}
	c := &claims{}
	if err := decodePart(payload, c); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	return c, nil
}

func decodePart(part string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Metrics of the activity endpoint. Labels are bounded: the result only.
var signals = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "elasti_controller_activity_signals_total",
	Help: "Activity signals received from the resolver, by result (accepted, held, keepalive, not_leader, rejected_token, rate_limited, unauthorized, invalid).",
}, []string{"result"})

// Collectors returns the package's metrics, for registration.
func Collectors() []prometheus.Collector { return []prometheus.Collector{signals} }

// Handler serves activityv1.Path, and activityv1.KeepAlivePath with the same checks.
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
	// A replica that does not lead refuses before it reviews anything.
	select {
	case <-h.Elected:
	default:
		signals.WithLabelValues("not_leader").Inc()
		http.Error(w, "not the leader", http.StatusServiceUnavailable)
		return
	}
	if h.Auth != nil {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		source, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			source = r.RemoteAddr
		}
		v, retryAfter, err := h.Auth.Authenticate(r.Context(), token, source)
		if err != nil {
			h.Log.Error(err, "reviewing the resolver's token")
			http.Error(w, "cannot review token", http.StatusServiceUnavailable)
			return
		}
		switch v {
		case Authenticated:
		case RateLimited:
			signals.WithLabelValues(string(v)).Inc()
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int((retryAfter+time.Second-1)/time.Second))))
			http.Error(w, "too many token reviews from this address", http.StatusTooManyRequests)
			return
		default:
			signals.WithLabelValues(string(v)).Inc()
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	if r.URL.Path == activityv1.KeepAlivePath {
		signals.WithLabelValues("keepalive").Inc()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var sig activityv1.Signal
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
	mux.Handle(activityv1.Path, s.Handler)
	mux.Handle(activityv1.KeepAlivePath, s.Handler)
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
