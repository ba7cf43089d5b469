package readiness

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/endpoints"
)

// Listener is told that the readiness of a Service may have changed. It must read the new state
// back from the Cache, so that calls that race each other still converge on the latest state.
type Listener interface {
	Changed(key types.NamespacedName)
}

// endpoint is one ready address with its host:port strings made in advance, so that Pick,
// which runs for every forwarded request, allocates nothing.
type endpoint struct {
	addrs map[string]string // EndpointSlice port name -> host:port
	only  string            // host:port when the slice has exactly one port
	// probed: listed by the controller because its own probe passed (a probed slice), not
	// marked Ready by the kubelet yet.
	probed bool
}

// service is the ready endpoints of one Service across its slices. It is replaced, never
// changed, so readers need no lock beyond the map's.
type service struct {
	slices    map[string][]endpoint // slice name -> ready endpoints
	endpoints []endpoint            // all ready endpoints
	kubelet   bool                  // some endpoint is not only probed
	next      *atomic.Uint64        // round-robin cursor, shared across replacements
}

// Cache holds the ready endpoints of the Services it has seen slices for.
type Cache struct {
	mu       sync.RWMutex
	services map[types.NamespacedName]*service
	listener Listener
}

// New returns an empty Cache that tells l, if not nil, of every change.
func New(l Listener) *Cache {
	return &Cache{services: map[types.NamespacedName]*service{}, listener: l}
}

// Ready says whether the Service has at least one ready endpoint.
func (c *Cache) Ready(key types.NamespacedName) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := c.services[key]
	return s != nil && len(s.endpoints) > 0
}

// ProbedOnly says whether the Service's only ready endpoints are probed ones: its own address
// then reaches no ready pod, and the probed pods are reached through the probed Service
// (names.ProbedService).
func (c *Cache) ProbedOnly(key types.NamespacedName) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := c.services[key]
	return s != nil && len(s.endpoints) > 0 && !s.kubelet
}

// Pick returns a ready endpoint of the Service as host:port, spreading calls across endpoints.
// portName is the Service port's name; a slice with one port is used whatever its name.
func (c *Cache) Pick(key types.NamespacedName, portName string) (string, bool) {
	c.mu.RLock()
	s := c.services[key]
	c.mu.RUnlock()
	if s == nil || len(s.endpoints) == 0 {
		return "", false
	}
	n := uint64(len(s.endpoints))
	start := s.next.Add(1)
	for i := range n {
		e := s.endpoints[(start+i)%n]
		if addr, ok := e.addrs[portName]; ok {
			return addr, true
		}
		if e.only != "" {
			return e.only, true
		}
	}
	return "", false
}

// Update records an EndpointSlice. Slices without the kubernetes.io/service-name label are
// ignored.
func (c *Cache) Update(slice *discoveryv1.EndpointSlice) {
	key, ok := serviceOf(slice)
	if !ok {
		return
	}
	probed := slice.Labels[v1alpha1.LabelProbedFor] != ""
	ports := map[string]int32{}
	for _, p := range slice.Ports {
		if p.Port == nil {
			continue
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		ports[name] = *p.Port
	}
	var ready []endpoint
	for _, e := range slice.Endpoints {
		if !endpoints.Ready(e) {
			continue
		}
		for _, a := range e.Addresses {
			ep := endpoint{addrs: make(map[string]string, len(ports)), probed: probed}
			for name, port := range ports {
				ep.addrs[name] = net.JoinHostPort(a, strconv.Itoa(int(port)))
				if len(ports) == 1 {
					ep.only = ep.addrs[name]
				}
			}
			ready = append(ready, ep)
		}
	}
	c.set(key, slice.Name, ready, false)
}

// Delete forgets an EndpointSlice.
func (c *Cache) Delete(slice *discoveryv1.EndpointSlice) {
	if key, ok := serviceOf(slice); ok {
		c.set(key, slice.Name, nil, true)
	}
}

func (c *Cache) set(key types.NamespacedName, sliceName string, ready []endpoint, deleted bool) {
	c.mu.Lock()
	old := c.services[key]
	s := &service{slices: map[string][]endpoint{}, next: &atomic.Uint64{}}
	if old != nil {
		s.next = old.next
		for n, eps := range old.slices {
			s.slices[n] = eps
		}
	}
	if deleted {
		delete(s.slices, sliceName)
	} else {
		s.slices[sliceName] = ready
	}
	for _, eps := range s.slices {
		s.endpoints = append(s.endpoints, eps...)
		for _, e := range eps {
			s.kubelet = s.kubelet || !e.probed
		}
	}
	if len(s.slices) == 0 {
		delete(c.services, key)
	} else {
		c.services[key] = s
	}
	// The throttler's gate follows Ready; Forward reads ProbedOnly per request.
	changed := (old != nil && len(old.endpoints) > 0) != (len(s.endpoints) > 0)
	c.mu.Unlock()
	if changed && c.listener != nil {
		c.listener.Changed(key)
	}
}

// serviceOf is the Service a slice counts for: a probed slice's private Service, which it
// names, in its own namespace; any other slice's own Service.
func serviceOf(slice *discoveryv1.EndpointSlice) (types.NamespacedName, bool) {
	if name := slice.Labels[v1alpha1.LabelProbedFor]; name != "" {
		return types.NamespacedName{Namespace: slice.Namespace, Name: name}, true
	}
	name := slice.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: slice.Namespace, Name: name}, true
}
