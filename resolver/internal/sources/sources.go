package sources

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/namespaces"
	"github.com/elasti-dev/elasti/internal/routesig"
	"github.com/elasti-dev/elasti/resolver/internal/readiness"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
)

// +kubebuilder:rbac:groups=elasti.dev,resources=elastiservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// The route key's Secret, by name, in elasti's own namespace: a list or watch with a
// metadata.name field selector is authorized by resourceNames.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch,resourceNames=elasti-route-key,namespace=elasti-system

// ComponentPrivateService is the elasti.dev/component value the controller puts on private
// Services; the EndpointSlice controller copies it to their slices.
const ComponentPrivateService = v1alpha1.ComponentPrivateService

// CacheOptions restricts the cache to elasti's private Services and their slices, to the route
// key's one Secret, and to the namespaces of the comma-separated list (namespaces.Parse; none
// means all), where AuthorizationPolicies are also read in Istio's root namespace, whose
// policies apply to every workload.
func CacheOptions(watch string, routeKey types.NamespacedName, rootNamespace string) (cache.Options, error) {
	names, err := namespaces.Parse(watch)
	if err != nil {
		return cache.Options{}, fmt.Errorf("--watch-namespaces: %w", err)
	}
	private := labels.SelectorFromSet(labels.Set{v1alpha1.LabelComponent: ComponentPrivateService})
	o := cache.Options{DefaultNamespaces: namespaces.Cache(names), ByObject: map[client.Object]cache.ByObject{
		&corev1.Service{}:            {Label: private},
		&discoveryv1.EndpointSlice{}: {Label: private},
		// One Secret, by name: the resolver's role may read no other.
		&corev1.Secret{}: {
			Namespaces: map[string]cache.Config{routeKey.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", routeKey.Name),
		},
	}}
	if len(names) > 0 {
		o.ByObject[&securityv1.AuthorizationPolicy{}] = cache.ByObject{Namespaces: namespaces.Cache(names, rootNamespace)}
	}
	return o, nil
}

// Sinks are what the informers feed.
type Sinks struct {
	Registry  *registry.Registry
	Readiness *readiness.Cache
	// RouteKey is kept current from the route key's Secret.
	RouteKey *routesig.Key
	// Policies is fed where Istio's AuthorizationPolicy kind is installed; without it no policy
	// can apply, the controller lists none in any status, and the store stays empty.
	Policies *Policies
	Log      logr.Logger
}

// Register adds the event handlers that keep s current from c's informers. mapper says whether
// the AuthorizationPolicy kind exists. Call it before c starts.
func Register(ctx context.Context, c cache.Cache, mapper meta.RESTMapper, s Sinks) error {
	type watch struct {
		obj client.Object
		h   toolscache.ResourceEventHandler
	}
	watches := []watch{
		{&v1alpha1.ElastiService{}, eventHandler(s.Registry.UpsertElastiService, func(es *v1alpha1.ElastiService) {
			s.Registry.DeleteElastiService(es.Namespace, es.Name)
		})},
		{&corev1.Service{}, eventHandler(s.Registry.UpsertService, func(svc *corev1.Service) {
			s.Registry.DeleteService(svc.Namespace, svc.Name)
		})},
		{&discoveryv1.EndpointSlice{}, eventHandler(s.Readiness.Update, s.Readiness.Delete)},
		{&corev1.Secret{}, routeKeyHandler(s.RouteKey, s.Log.WithName("route-key"))},
	}
	switch _, err := mapper.RESTMapping(securityv1.SchemeGroupVersion.WithKind("AuthorizationPolicy").GroupKind()); {
	case err == nil:
		watches = append(watches, watch{&securityv1.AuthorizationPolicy{}, eventHandler(s.Policies.Upsert, s.Policies.Delete)})
	case !meta.IsNoMatchError(err):
		return fmt.Errorf("looking up AuthorizationPolicy: %w", err)
	}
	for _, w := range watches {
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

// routeKeyHandler keeps key current from the route key's Secret. A Secret without a valid key
// clears it, and then no route header is believed: the Host decides every request.
func routeKeyHandler(key *routesig.Key, log logr.Logger) toolscache.ResourceEventHandler {
	return eventHandler(func(s *corev1.Secret) {
		if err := key.Set(s.Data[routesig.SecretKey]); err != nil {
			log.Error(err, "route key Secret has no usable key; route headers are ignored", "secret", s.Namespace+"/"+s.Name)
			return
		}
		log.Info("route key loaded", "secret", s.Namespace+"/"+s.Name)
	}, func(s *corev1.Secret) {
		_ = key.Set(nil)
		log.Info("route key Secret deleted; route headers are ignored until the controller makes a new one", "secret", s.Namespace+"/"+s.Name)
	})
}

// eventHandler calls upsert for added and updated objects of type T and remove for deleted
// ones, including those the informer only saw as a tombstone. It is the one adapter from
// informers to the resolver's caches, which stay plain types that tests and the bench feed
// directly.
func eventHandler[T any](upsert, remove func(T)) toolscache.ResourceEventHandler {
	on := func(obj any, deleted bool) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj, deleted = d.Obj, true
		}
		o, ok := obj.(T)
		if !ok {
			return
		}
		if deleted {
			remove(o)
			return
		}
		upsert(o)
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { on(obj, false) },
		UpdateFunc: func(_, obj any) { on(obj, false) },
		DeleteFunc: func(obj any) { on(obj, true) },
	}
}
