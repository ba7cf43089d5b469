package activity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/event"

	activityv1 "github.com/elasti-dev/elasti/api/activity/v1"
)

type tokenSet map[string]bool

func (s tokenSet) Authenticate(_ context.Context, token, _ string) (Verdict, time.Duration, error) {
	if s[token] {
		return Authenticated, 0, nil
	}
	return Unauthorized, 0, nil
}

func TestHandler(t *testing.T) {
	elected := make(chan struct{})
	close(elected)
	notElected := make(chan struct{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		method, token, body string
		elected             chan struct{}
		wantCode            int
		wantEvent           bool
	}{
		"accepted":          {"POST", "good", `{"namespace":"shop","name":"target","held":true}`, elected, http.StatusAccepted, true},
		"bad token":         {"POST", "bad", `{"namespace":"shop","name":"target"}`, elected, http.StatusUnauthorized, false},
		"no token":          {"POST", "", `{"namespace":"shop","name":"target"}`, elected, http.StatusUnauthorized, false},
		"not the leader":    {"POST", "good", `{"namespace":"shop","name":"target"}`, notElected, http.StatusServiceUnavailable, false},
		"GET":               {"GET", "good", ``, elected, http.StatusMethodNotAllowed, false},
		"not JSON":          {"POST", "good", `wake up`, elected, http.StatusBadRequest, false},
		"invalid namespace": {"POST", "good", `{"namespace":"Shop!","name":"target"}`, elected, http.StatusBadRequest, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			events := make(chan event.GenericEvent, 1)
			store := NewStore()
			h := &Handler{Store: store, Auth: tokenSet{"good": true}, Elected: tc.elected, Events: events,
				Log: logr.Discard(), Now: func() time.Time { return now }}
			req := httptest.NewRequest(tc.method, activityv1.Path, strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantCode {
				t.Errorf("status = %d, want %d (%s)", rec.Code, tc.wantCode, rec.Body)
			}
			key := types.NamespacedName{Namespace: "shop", Name: "target"}
			select {
			case ev := <-events:
				if !tc.wantEvent {
					t.Errorf("got event %v, want none", ev.Object)
				} else if ev.Object.GetNamespace() != "shop" || ev.Object.GetName() != "target" {
					t.Errorf("event for %s/%s, want shop/target", ev.Object.GetNamespace(), ev.Object.GetName())
				}
				if got := store.Last(key); !got.Equal(now) {
					t.Errorf("Last() = %v, want %v", got, now)
				}
			default:
				if tc.wantEvent {
					t.Errorf("got no event, want one")
				}
				if got := store.Last(key); !got.IsZero() {
					t.Errorf("Last() = %v after a refused signal, want zero", got)
				}
			}
		})
	}
}

func TestStoreKeepsLatest(t *testing.T) {
	s := NewStore()
	key := types.NamespacedName{Namespace: "a", Name: "b"}
	t1 := time.Unix(100, 0)
	s.Record(key, t1)
	s.Record(key, t1.Add(-time.Second))
	if got := s.Last(key); !got.Equal(t1) {
		t.Errorf("Last() = %v, want %v", got, t1)
	}
	s.Forget(key)
	if got := s.Last(key); !got.IsZero() {
		t.Errorf("Last() after Forget = %v, want zero", got)
	}
}

const resolverUser = "system:serviceaccount:elasti-system:elasti-resolver"

// fakeReviews is the API server's TokenReview: it authenticates the tokens in users, for
// activityv1.Audience, and counts the reviews.
type fakeReviews struct {
	mu    sync.Mutex
	n     int
	users map[string]string
}

func (f *fakeReviews) Create(_ context.Context, tr *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	out := tr.DeepCopy()
	if u, ok := f.users[tr.Spec.Token]; ok && slices.Equal(tr.Spec.Audiences, []string{activityv1.Audience}) {
		out.Status = authnv1.TokenReviewStatus{Authenticated: true, Audiences: tr.Spec.Audiences, User: authnv1.UserInfo{Username: u}}
	}
	return out, nil
}

func (f *fakeReviews) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// reviewFixture is a Handler with a real TokenReviewer over fakeReviews, on a fake clock.
type reviewFixture struct {
	clock    *clocktesting.FakePassiveClock
	reviews  *fakeReviews
	reviewer *TokenReviewer
	handler  *Handler
	parses   int
}

func newReviewFixture(elected bool) *reviewFixture {
	f := &reviewFixture{
		clock:   clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		reviews: &fakeReviews{users: map[string]string{}},
	}
	f.reviewer = &TokenReviewer{Reviews: f.reviews, Users: []string{resolverUser}, Issuer: "https://kubernetes.default.svc",
		Clock: f.clock, parse: func(token string) (*claims, error) {
			f.parses++
			return parseToken(token)
		}}
	ch := make(chan struct{})
	if elected {
		close(ch)
	}
	f.handler = &Handler{Store: NewStore(), Auth: f.reviewer, Elected: ch, Events: make(chan event.GenericEvent, 16),
		Log: logr.Discard(), Now: f.clock.Now}
	return f
}

// post sends one signal with token from source and returns the response.
func (f *reviewFixture) post(token, source string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, activityv1.Path, strings.NewReader(`{"namespace":"shop","name":"target"}`))
	req.RemoteAddr = source + ":40000"
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return rec
}

// token is an unsigned JWT with the resolver's claims, for an hour from the fixture's time,
// changed by edit.
func (f *reviewFixture) token(edit func(c map[string]any)) string {
	c := map[string]any{"aud": []string{activityv1.Audience}, "sub": resolverUser, "iss": "https://kubernetes.default.svc",
		"exp": f.clock.Now().Add(time.Hour).Unix()}
	if edit != nil {
		edit(c)
	}
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "RS256", "kid": "k"}) + "." + enc(c) + "." + base64.RawURLEncoding.EncodeToString([]byte("unchecked"))
}

func randomToken(t *testing.T) string {
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Tokens that cannot be the resolver's are refused from their claims alone, even when the API
// server would have said yes: no TokenReview is spent on them.
func TestTokenReviewerRefusesForeignTokensWithoutReview(t *testing.T) {
	tests := map[string]func(f *reviewFixture) string{
		"random, not a JWT": func(*reviewFixture) string { return randomToken(t) },
		"two parts":         func(*reviewFixture) string { return "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0" },
		"unsigned (alg none)": func(f *reviewFixture) string {
			_, rest, _ := strings.Cut(f.token(nil), ".")
			return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + rest
		},
		"wrong audience": func(f *reviewFixture) string {
			return f.token(func(c map[string]any) { c["aud"] = []string{"https://kubernetes.default.svc"} })
		},
		"expired": func(f *reviewFixture) string {
			return f.token(func(c map[string]any) { c["exp"] = f.clock.Now().Add(-time.Hour).Unix() })
		},
		"no expiry": func(f *reviewFixture) string { return f.token(func(c map[string]any) { delete(c, "exp") }) },
		"another service account": func(f *reviewFixture) string {
			return f.token(func(c map[string]any) { c["sub"] = "system:serviceaccount:shop:default" })
		},
		"another issuer": func(f *reviewFixture) string {
			return f.token(func(c map[string]any) { c["iss"] = "https://evil.example" })
		},
	}
	for name, token := range tests {
		t.Run(name, func(t *testing.T) {
			f := newReviewFixture(true)
			tok := token(f)
			f.reviews.users[tok] = resolverUser
			if rec := f.post(tok, "10.0.0.1"); rec.Code != http.StatusUnauthorized {
				t.Errorf("status = %d, want %d", rec.Code, http.StatusUnauthorized)
			}
			if got := f.reviews.count(); got != 0 {
				t.Errorf("TokenReviews = %d, want 0", got)
			}
		})
	}
}

// A refused token is remembered for RefusedTTL: sending it again costs neither a parse nor a
// review, however it was refused. The memory is bounded.
func TestTokenReviewerCachesRefusals(t *testing.T) {
	f := newReviewFixture(true)
	foreign := f.token(func(c map[string]any) { c["aud"] = "someone-else" })
	forged := f.token(func(c map[string]any) { c["jti"] = "forged" }) // the claims pass, the review does not
	for range 2 {
		if rec := f.post(foreign, "10.0.0.1"); rec.Code != http.StatusUnauthorized {
			t.Errorf("foreign token: status = %d, want %d", rec.Code, http.StatusUnauthorized)
		}
	}
	if f.parses != 1 || f.reviews.count() != 0 {
		t.Errorf("the same foreign token twice: %d parses and %d TokenReviews, want 1 and 0", f.parses, f.reviews.count())
	}
	for range 2 {
		if rec := f.post(forged, "10.0.0.1"); rec.Code != http.StatusUnauthorized {
			t.Errorf("forged token: status = %d, want %d", rec.Code, http.StatusUnauthorized)
		}
	}
	if f.parses != 2 || f.reviews.count() != 1 {
		t.Errorf("the same forged token twice: %d parses and %d TokenReviews in all, want 2 and 1", f.parses, f.reviews.count())
	}

	f.clock.SetTime(f.clock.Now().Add(RefusedTTL))
	f.post(foreign, "10.0.0.1")
	if f.parses != 3 {
		t.Errorf("after RefusedTTL: %d parses in all, want 3 (the refusal forgotten)", f.parses)
	}

	for range maxCached + 100 {
		f.post(randomToken(t), "10.0.0.1")
	}
	if n := len(f.reviewer.refused.until); n > maxCached {
		t.Errorf("%d refusals cached, want at most %d", n, maxCached)
	}
}

// A flood of distinct tokens whose claims look right costs one source at most a burst of
// reviews; the rest are told to come back later, and other sources are not affected.
func TestTokenReviewerRateLimitsReviewsPerSource(t *testing.T) {
	f := newReviewFixture(true)
	limited := testutil.ToFloat64(signals.WithLabelValues(string(RateLimited)))
	codes := map[int]int{}
	for i := range 500 {
		rec := f.post(f.token(func(c map[string]any) { c["jti"] = i }), "10.0.0.1")
		codes[rec.Code]++
		if rec.Code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("Retry-After = %q, want 1", rec.Header().Get("Retry-After"))
		}
	}
	if got := f.reviews.count(); got != DefaultReviewBurst {
		t.Errorf("TokenReviews = %d, want the burst, %d", got, DefaultReviewBurst)
	}
	if want := map[int]int{http.StatusUnauthorized: DefaultReviewBurst, http.StatusTooManyRequests: 500 - DefaultReviewBurst}; !maps.Equal(codes, want) {
		t.Errorf("statuses = %v, want %v", codes, want)
	}
	if got := testutil.ToFloat64(signals.WithLabelValues(string(RateLimited))) - limited; got != 500-DefaultReviewBurst {
		t.Errorf("rate_limited signals = %v, want %d", got, 500-DefaultReviewBurst)
	}

	good := f.token(nil)
	f.reviews.users[good] = resolverUser
	if rec := f.post(good, "10.0.0.2"); rec.Code != http.StatusAccepted {
		t.Errorf("the resolver from another address: status = %d, want %d", rec.Code, http.StatusAccepted)
	}
	f.clock.SetTime(f.clock.Now().Add(time.Second))
	if rec := f.post(f.token(func(c map[string]any) { c["jti"] = "later" }), "10.0.0.1"); rec.Code != http.StatusUnauthorized {
		t.Errorf("a second later: status = %d, want %d (reviewed again)", rec.Code, http.StatusUnauthorized)
	}
	if got := f.reviews.count(); got != DefaultReviewBurst+2 {
		t.Errorf("TokenReviews = %d, want %d", got, DefaultReviewBurst+2)
	}
}

// A replica that does not lead answers 503 and reviews nothing, whatever the token.
func TestNonLeaderReviewsNothing(t *testing.T) {
	f := newReviewFixture(false)
	good := f.token(nil)
	f.reviews.users[good] = resolverUser
	for _, tok := range []string{good, randomToken(t)} {
		if rec := f.post(tok, "10.0.0.1"); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("status = %d, want %d", rec.Code, http.StatusServiceUnavailable)
		}
	}
	if got := f.reviews.count(); got != 0 || f.parses != 0 {
		t.Errorf("a non-leader made %d TokenReviews and %d parses, want none", got, f.parses)
	}
}

// The resolver's token is accepted after one review and trusted for AcceptedTTL, but never
// past its own expiry.
func TestTokenReviewerAcceptsAndCaches(t *testing.T) {
	f := newReviewFixture(true)
	good := f.token(nil)
	f.reviews.users[good] = resolverUser
	for range 2 {
		if rec := f.post(good, "10.0.0.1"); rec.Code != http.StatusAccepted {
			t.Errorf("status = %d, want %d (%s)", rec.Code, http.StatusAccepted, rec.Body)
		}
	}
	if got := f.reviews.count(); got != 1 {
		t.Errorf("TokenReviews for one token sent twice = %d, want 1", got)
	}
	f.clock.SetTime(f.clock.Now().Add(AcceptedTTL))
	if rec := f.post(good, "10.0.0.1"); rec.Code != http.StatusAccepted || f.reviews.count() != 2 {
		t.Errorf("after AcceptedTTL: status %d after %d TokenReviews, want %d after 2", rec.Code, f.reviews.count(), http.StatusAccepted)
	}

	short := f.token(func(c map[string]any) { c["exp"] = f.clock.Now().Add(20 * time.Second).Unix() })
	f.reviews.users[short] = resolverUser
	f.post(short, "10.0.0.1")
	f.clock.SetTime(f.clock.Now().Add(21 * time.Second))
	f.post(short, "10.0.0.1")
	if got := f.reviews.count(); got != 4 {
		t.Errorf("TokenReviews = %d, want 4: a token is not trusted from the cache past its expiry", got)
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJlbGFzdGktY29udHJvbGxlciIsImV4cCI6MX0.c2ln")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := parseToken(token)
		if err == nil && c.Expiry != nil {
			_ = c.expiry()
		}
	})
}

// An accepted token used past half of AcceptedTTL is reviewed again in the background, so a
// resolver that keeps signalling never waits for a review, and the token is still reviewed at
// least once per AcceptedTTL: a refusal ends the acceptance at once.
func TestTokenReviewerRenewsAheadOfLapse(t *testing.T) {
	f := newReviewFixture(true)
	renewed := make(chan struct{}, 1)
	f.reviewer.renewed = func() { renewed <- struct{}{} }
	waitRenewal := func() {
		t.Helper()
		select {
		case <-renewed:
		case <-time.After(5 * time.Second):
			t.Fatal("no renewal")
		}
	}
	good := f.token(nil)
	f.reviews.users[good] = resolverUser
	start := f.clock.Now()
	if rec := f.post(good, "10.0.0.1"); rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d, want %d", rec.Code, http.StatusAccepted)
	}
	f.clock.SetTime(start.Add(AcceptedTTL / 4))
	f.post(good, "10.0.0.1")
	if got := f.reviews.count(); got != 1 {
		t.Fatalf("TokenReviews before half the TTL = %d, want 1", got)
	}

	f.clock.SetTime(start.Add(AcceptedTTL / 2))
	if rec := f.post(good, "10.0.0.1"); rec.Code != http.StatusAccepted {
		t.Fatalf("status while renewing = %d, want %d", rec.Code, http.StatusAccepted)
	}
	waitRenewal()
	if got := f.reviews.count(); got != 2 {
		t.Fatalf("TokenReviews after a renewal = %d, want 2", got)
	}
	// Past the first review's lapse, within the renewal's: accepted with no review on the way.
	f.clock.SetTime(start.Add(AcceptedTTL + time.Second))
	if rec := f.post(good, "10.0.0.1"); rec.Code != http.StatusAccepted {
		t.Fatalf("status after the first review's TTL = %d, want %d", rec.Code, http.StatusAccepted)
	}
	if got := f.reviews.count(); got != 2 {
		t.Errorf("TokenReviews past the first TTL = %d, want 2: the renewal should have covered it", got)
	}
	waitRenewal() // that signal was past the renewal's own half-life, so it renewed again
	if got := f.reviews.count(); got != 3 {
		t.Fatalf("TokenReviews = %d, want 3", got)
	}

	// The API server stops accepting the token (its pod was deleted): the next renewal ends it.
	delete(f.reviews.users, good)
	f.clock.SetTime(start.Add(AcceptedTTL + AcceptedTTL/2 + 2*time.Second))
	f.post(good, "10.0.0.1")
	waitRenewal()
	if rec := f.post(good, "10.0.0.1"); rec.Code != http.StatusUnauthorized {
		t.Errorf("status after a refused renewal = %d, want %d", rec.Code, http.StatusUnauthorized)
	}
	if got := f.reviews.count(); got != 4 {
		t.Errorf("TokenReviews = %d, want 4: the refusal is cached", got)
	}
}

// The keepalive passes the signal's checks and then wakes nothing.
func TestKeepAlive(t *testing.T) {
	elected := make(chan struct{})
	close(elected)
	tests := map[string]struct {
		token    string
		elected  chan struct{}
		wantCode int
	}{
		"accepted":       {"good", elected, http.StatusNoContent},
		"bad token":      {"bad", elected, http.StatusUnauthorized},
		"not the leader": {"good", make(chan struct{}), http.StatusServiceUnavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			events := make(chan event.GenericEvent, 1)
			store := NewStore()
			h := &Handler{Store: store, Auth: tokenSet{"good": true}, Elected: tc.elected, Events: events, Log: logr.Discard()}
			req := httptest.NewRequest(http.MethodPost, activityv1.KeepAlivePath, nil)
			req.Header.Set("Authorization", "Bearer "+tc.token)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantCode {
				t.Errorf("status = %d, want %d (%s)", rec.Code, tc.wantCode, rec.Body)
			}
			if len(events) != 0 || len(store.last) != 0 {
				t.Errorf("a keepalive queued %d events and recorded %d activities, want none", len(events), len(store.last))
			}
		})
	}
}
