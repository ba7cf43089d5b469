// Package routekey keeps the route key's Secret, whose key signs the headers that the route
// rewrite adds for the resolver (package internal/routesig).
package routekey

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/routesig"
)

// The route key's Secret, in elasti's namespace only: create cannot be limited by name, get is.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create,namespace=elasti-system
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get,resourceNames=elasti-route-key,namespace=elasti-system

// Ensure returns a Signer for the key in the Secret named key, creating the Secret with a random
// key when it does not exist. c must read from the API server, not a cache: the controller's
// role may read this one Secret and no other. Replicas that start together agree, since only
// one Create succeeds and the others read what it wrote.
func Ensure(ctx context.Context, c client.Client, key types.NamespacedName) (*routesig.Signer, error) {
	s := &corev1.Secret{}
	err := c.Get(ctx, key, s)
	if apierrors.IsNotFound(err) {
		random := make([]byte, routesig.KeySize)
		_, _ = rand.Read(random) // never fails (crypto/rand)
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{
				v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
			}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{routesig.SecretKey: random},
		}
		err = c.Create(ctx, s, client.FieldOwner(v1alpha1.FieldManager))
		if apierrors.IsAlreadyExists(err) {
			err = c.Get(ctx, key, s)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("route key Secret %s: %w", key, err)
	}
	signer, err := routesig.New(s.Data[routesig.SecretKey])
	if err != nil {
		return nil, fmt.Errorf("route key Secret %s, key %q: %w (delete the Secret to have a new one made)", key, routesig.SecretKey, err)
	}
	return signer, nil
}
