package registry

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/resolver/internal/events"
)

// Port is one port of a target's private Service.
type Port struct {
	Name string
	Port int32
}

// Target is an immutable snapshot of what the resolver needs to hold and replay a request for
// one ElastiService. A change to the ElastiService or its private Service makes a new snapshot.
type Target struct {
	// Namespace and Name of the ElastiService.
	Namespace, Name string
	// Service is the public Service.
	Service string
	// Backend is the private Service that selects the target's pods.
	Backend types.NamespacedName
	// MaxPending and HoldTimeout come from spec.queue; zero means the resolver's default.
	MaxPending  int
	HoldTimeout time.Duration
	// Probes are answered locally while the target is not ready.
	Probes []v1alpha1.ProbeResponse
	// Ports of the private Service, in its order; empty until the Service is seen.
	Ports []Port
}

// Key is "namespace/name" of the ElastiService.
func (t *Target) Key() string { return t.Namespace + "/" + t.Name }

// PortFor picks the Service port to forward to: the port the route named, else the port the
// Host named, else the only port, else port 80, else the first port. It returns the port and
// its name, which picks the matching EndpointSlice port in pods mode.
func (t *Target) PortFor(routePort, hostPort int32) Port {
	for _, want := range []int32{routePort, hostPort} {
		if want == 0 {
			continue
		}
		for _, p := range t.Ports {
			if p.Port == want {
				return p
			}
		}
		// The private Service may not be in the cache yet; the number is still right, since
		// the private Service has the public Service's port numbers.
		return Port{Port: want}
	}
	switch {
	case len(t.Ports) == 0:
		return Port{Port: 80}
	case len(t.Ports) == 1:
		return t.Ports[0]
	}
	for _, p := range t.Ports {
		if p.Port == 80 {
			return p
		}
	}
	return t.Ports[0]
}

// Errors of ByHost.
var (
	ErrUnknownHost = errors.New("no ElastiService serves this host")
	ErrAmbiguous   = errors.New("several ElastiServices serve this Service name")
)

// Forgetter releases what other parts of the resolver keep for a target that is gone.
type Forgetter interface {
	Forget(t *Target)
}

// Registry is the in-memory index of ElastiServices and their private Services' ports.
type Registry struct {
	domain string
	forget Forgetter

	mu        sync.RWMutex
	specs     map[types.NamespacedName]*v1alpha1.ElastiService
	targets   map[types.NamespacedName]*Target
	byService map[string][]types.NamespacedName // Service name -> ElastiServices, any namespace
	ports     map[types.NamespacedName][]Port   // private Service -> ports
}

// New returns an empty Registry for a cluster domain. forget, if not nil, is told about every
// target that goes away.
func New(domain string, forget Forgetter) *Registry {
	return &Registry{
		domain:    strings.ToLower(strings.TrimSuffix(domain, ".")),
		forget:    forget,
		specs:     map[types.NamespacedName]*v1alpha1.ElastiService{},
		targets:   map[types.NamespacedName]*Target{},
		byService: map[string][]types.NamespacedName{},
		ports:     map[types.NamespacedName][]Port{},
	}
}

// ByKey returns the target of the ElastiService namespace/name.
func (r *Registry) ByKey(namespace, name string) (*Target, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.targets[types.NamespacedName{Namespace: namespace, Name: name}]
	return t, ok
}

// ByHost finds the target whose spec.service a Host names, and the port the Host names (0 if
// none). A bare Service name matches only when one ElastiService in the cluster has it.
func (r *Registry) ByHost(host string) (*Target, int32, error) {
	h, ok := ParseHost(host, r.domain)
	if !ok {
		return nil, 0, ErrUnknownHost
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var found *Target
	var namespaces []string
	for _, key := range r.byService[h.Service] {
		if h.Namespace != "" && key.Namespace != h.Namespace {
			continue
		}
		if found != nil && found.Namespace != key.Namespace {
			namespaces = append(namespaces, key.Namespace)
			continue
		}
		found = r.targets[key]
		namespaces = append(namespaces, key.Namespace)
	}
	switch {
	case found == nil:
		return nil, 0, ErrUnknownHost
	case len(namespaces) > 1:
		sort.Strings(namespaces)
		return nil, 0, fmt.Errorf("%w %q in namespaces %s: use %s.<namespace> as the host", ErrAmbiguous,
			h.Service, strings.Join(namespaces, ", "), h.Service)
	}
	return found, h.Port, nil
}

// Len is the number of known ElastiServices.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.targets)
}

// UpsertElastiService records an ElastiService or its new spec.
func (r *Registry) UpsertElastiService(es *v1alpha1.ElastiService) {
	key := types.NamespacedName{Namespace: es.Namespace, Name: es.Name}
	r.mu.Lock()
	var stale *Target
	if old, ok := r.specs[key]; ok && old.Spec.Service != es.Spec.Service {
		r.unindex(key, old.Spec.Service)
		stale = r.targets[key]
	}
	r.specs[key] = es
	if !slices.Contains(r.byService[es.Spec.Service], key) {
		r.byService[es.Spec.Service] = append(r.byService[es.Spec.Service], key)
	}
	r.targets[key] = r.build(es)
	r.mu.Unlock()
	if stale != nil && r.forget != nil {
		r.forget.Forget(stale)
	}
}

// DeleteElastiService forgets an ElastiService.
func (r *Registry) DeleteElastiService(namespace, name string) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	r.mu.Lock()
	old, ok := r.specs[key]
	t := r.targets[key]
	if ok {
		r.unindex(key, old.Spec.Service)
		delete(r.specs, key)
		delete(r.targets, key)
	}
	r.mu.Unlock()
	if ok && r.forget != nil {
		r.forget.Forget(t)
	}
}

// UpsertService records the ports of a private Service.
func (r *Registry) UpsertService(svc *corev1.Service) {
	ports := make([]Port, 0, len(svc.Spec.Ports))
	for _, p := range svc.Spec.Ports {
		ports = append(ports, Port{Name: p.Name, Port: p.Port})
	}
	r.setPorts(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, ports)
}

// DeleteService forgets a private Service's ports.
func (r *Registry) DeleteService(namespace, name string) {
	r.setPorts(types.NamespacedName{Namespace: namespace, Name: name}, nil)
}

func (r *Registry) setPorts(key types.NamespacedName, ports []Port) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ports == nil {
		delete(r.ports, key)
	} else {
		r.ports[key] = ports
	}
	for esKey, es := range r.specs {
		if es.Namespace == key.Namespace && names.PrivateService(es.Spec.Service) == key.Name {
			r.targets[esKey] = r.build(es)
		}
	}
}

func (r *Registry) unindex(key types.NamespacedName, service string) {
	keys := slices.DeleteFunc(r.byService[service], func(k types.NamespacedName) bool { return k == key })
	if len(keys) == 0 {
		delete(r.byService, service)
	} else {
		r.byService[service] = keys
	}
}

// build makes a Target snapshot; r.mu must be held.
func (r *Registry) build(es *v1alpha1.ElastiService) *Target {
	backend := types.NamespacedName{Namespace: es.Namespace, Name: names.PrivateService(es.Spec.Service)}
	t := &Target{
		Namespace: es.Namespace,
		Name:      es.Name,
		Service:   es.Spec.Service,
		Backend:   backend,
		Probes:    es.Spec.ProbeResponses,
		Ports:     r.ports[backend],
	}
	if q := es.Spec.Queue; q != nil {
		if q.MaxPending != nil {
			t.MaxPending = int(*q.MaxPending)
		}
		if q.HoldTimeout != nil {
			t.HoldTimeout = q.HoldTimeout.Duration
		}
	}
	return t
}

// ElastiServiceHandler feeds the Registry from an ElastiService informer.
func (r *Registry) ElastiServiceHandler() toolscache.ResourceEventHandler {
	return events.Handler(r.UpsertElastiService, func(es *v1alpha1.ElastiService) {
		r.DeleteElastiService(es.Namespace, es.Name)
	})
}

// ServiceHandler feeds the Registry from an informer on private Services.
func (r *Registry) ServiceHandler() toolscache.ResourceEventHandler {
	return events.Handler(r.UpsertService, func(svc *corev1.Service) { r.DeleteService(svc.Namespace, svc.Name) })
}
