package resolvertest

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/resolver/internal/app"
	"github.com/elasti-dev/elasti/resolver/internal/throttler"
)

// A held request is released by SetReady through app.New's wiring, and by the deletion of its
// ElastiService through the registry's forgetter.
func TestResolver(t *testing.T) {
	tests := map[string]struct {
		release func(r *Resolver, key types.NamespacedName)
		want    error
	}{
		"ready": {release: func(r *Resolver, key types.NamespacedName) { r.SetReady(key, "10.0.0.1:8080", true) }},
		"deleted": {release: func(r *Resolver, _ types.NamespacedName) { r.Registry.DeleteElastiService("shop", "app") },
			want: throttler.ErrGone},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := New(app.Options{MaxPendingTotal: 10})
			key := r.Add(ElastiService("shop", "app"), corev1.ServicePort{Name: "http", Port: 80})
			if want := (types.NamespacedName{Namespace: "shop", Name: "app-elasti-private"}); key != want {
				t.Fatalf("key = %v, want %v", key, want)
			}
			if _, _, err := r.Registry.ByHost("app.shop"); err != nil {
				t.Fatalf("the registry does not know app.shop: %v", err)
			}
			if err := r.WaitPending(key, 1, 10*time.Millisecond); err == nil {
				t.Fatal("WaitPending with nothing held = nil, want an error")
			}
			r.SetReady(key, "10.0.0.1:8080", false)
			done := make(chan error, 1)
			go func() {
				_, err := r.Throttler.Wait(context.Background(), key, 10, 30*time.Second, nil)
				done <- err
			}()
			if err := r.WaitPending(key, 1, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			tc.release(r, key)
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) {
					t.Errorf("Wait = %v, want %v", err, tc.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the held request was not released")
			}
		})
	}
}
