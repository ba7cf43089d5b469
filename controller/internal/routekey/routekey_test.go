package routekey

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/routesig"
)

var name = types.NamespacedName{Namespace: "elasti-system", Name: routesig.DefaultSecretName}

func TestEnsureCreatesOnceAndKeeps(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().Build()
	first, err := Ensure(ctx, c, name)
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{}
	if err := c.Get(ctx, name, s); err != nil {
		t.Fatalf("no Secret after Ensure: %v", err)
	}
	if n := len(s.Data[routesig.SecretKey]); n != routesig.KeySize {
		t.Errorf("key of %d bytes, want %d", n, routesig.KeySize)
	}
	if s.Labels[v1alpha1.LabelManagedBy] != v1alpha1.ManagedByValue {
		t.Errorf("labels = %v, want elasti's managed-by", s.Labels)
	}
	second, err := Ensure(ctx, c, name)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := first.Sign("shop/app", "", ""), second.Sign("shop/app", "", ""); a != b {
		t.Errorf("a second Ensure made a new key: signatures %q and %q", a, b)
	}
}

// Two replicas starting together: the loser of the Create reads the winner's key.
func TestEnsureLosesTheRace(t *testing.T) {
	ctx := context.Background()
	winner := []byte("the-winning-replica-key-01234567")
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			_ = c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name},
				Data: map[string][]byte{routesig.SecretKey: winner}})
			return c.Create(ctx, obj, opts...) // AlreadyExists
		},
	}).Build()
	got, err := Ensure(ctx, c, name)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := routesig.New(winner)
	if got.Sign("a/b", "", "") != want.Sign("a/b", "", "") {
		t.Error("Ensure kept its own key after losing the Create")
	}
}

func TestEnsureRefusesAShortKey(t *testing.T) {
	c := fake.NewClientBuilder().WithObjects(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name},
		Data: map[string][]byte{routesig.SecretKey: []byte("short")}}).Build()
	if _, err := Ensure(context.Background(), c, name); err == nil {
		t.Fatal("Ensure accepted a 5-byte key")
	}
}
