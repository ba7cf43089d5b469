package sources

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/resolver/internal/readiness"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
)

// +kubebuilder:rbac:groups=elasti.dev,resources=elastiservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch

// ComponentPrivateService is the elasti.dev/component value the controller puts on private
// Services; the EndpointSlice controller copies it to their slices.
const ComponentPrivateService = v1alpha1.ComponentPrivateService

// CacheOptions restricts the cache to elasti's private Services and their slices, and to the
// given namespaces (a comma-separated list; empty means all).
func CacheOptions(namespaces string) cache.Options {
	private := labels.SelectorFromSet(labels.Set{v1alpha1.LabelComponent: ComponentPrivateService})
	o := cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Service{}:            {Label: private},
		&discoveryv1.EndpointSlice{}: {Label: private},
	}}
	if namespaces != "" {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(namespaces, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				o.DefaultNamespaces[ns] = cache.Config{}
			}
		}
	}
	return o
}

// Register adds the event handlers that keep reg and ready current.
func Register(ctx context.Context, c cache.Cache, reg *registry.Registry, ready *readiness.Cache) error {
	for _, w := range []struct {
		obj client.Object
		h   interface {
			OnAdd(any, bool)
			OnUpdate(any, any)
			OnDelete(any)
		}
	}{
		{&v1alpha1.ElastiService{}, reg.ElastiServiceHandler()},
		{&corev1.Service{}, reg.ServiceHandler()},
		{&discoveryv1.EndpointSlice{}, ready.Handler()},
	} {
		inf, err := c.GetInformer(ctx, w.obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", w.obj, err)
		}
		if _, err := inf.AddEventHandler(w.h); err != nil {
			return fmt.Errorf("event handler for %T: %w", w.obj, err)
		}
	}
	return nil
}
