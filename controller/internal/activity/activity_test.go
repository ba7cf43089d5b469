package activity

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/elasti-dev/elasti/internal/wake"
)

type tokenSet map[string]bool

func (s tokenSet) Allowed(_ context.Context, token string) (bool, error) { return s[token], nil }

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
			req := httptest.NewRequest(tc.method, wake.Path, strings.NewReader(tc.body))
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
