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

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
)

// Port is one port of a target's private Service.
type Port struct {
	Name string
	Port int32
	// TargetPort is the pods' port number, which AuthorizationPolicies name; 0 when the
	// Service names it by a name.
	TargetPort int32
}

// Entry is the registry's immutable snapshot of what the resolver needs to hold and replay a
// request for one ElastiService. A change to the ElastiService or its private Service makes a
// new snapshot.
type Entry struct {
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
	// Serving says the ElastiService is in Serve mode: callers still reaching the resolver
	// are on a connection or route from before the switch.
	Serving bool
	// Gone marks a tombstone: the ElastiService was deleted, its routes are restored and its
	// private Service may be gone, so requests go to the public Service.
	Gone bool
	// Unprepared says the ElastiService has never wanted Proxy mode (it has no finalizer yet):
	// the controller has not made its private Service, and nothing routes callers to the
	// resolver, so a request that reaches it anyway goes to the public Service.
	Unprepared bool
	// Policies are the AuthorizationPolicies ("namespace/name") that apply to the target's
	// pods, as the controller found them (status.authorizationPolicies): every caller is
	// checked against them before it is held or replayed.
	Policies []string
}

// Key is "namespace/name" of the ElastiService.
func (t *Entry) Key() string { return t.Namespace + "/" + t.Name }

// PortFor picks the Service port to forward to: the port the route named, else the port the
// Host named, else the only port, else port 80, else the first port. It returns the port and
// its name, which picks the matching EndpointSlice port in pods mode. ok is false for a port
// the private Service does not have, or any port asked for while its ports are unknown: the
// replay would dial a port nobody chose to expose.
func (t *Entry) PortFor(routePort, hostPort int32) (p Port, ok bool) {
	for _, want := range []int32{routePort, hostPort} {
		if want == 0 {
			continue
		}
		for _, p := range t.Ports {
			if p.Port == want {
				return p, true
			}
		}
		return Port{}, false
	}
	switch {
	case len(t.Ports) == 0:
		// The private Service is not in the cache yet; the public Service's port 80 is
		// the usual HTTP port.
		return Port{Port: 80}, true
	case len(t.Ports) == 1:
		return t.Ports[0], true
	}
	for _, p := range t.Ports {
		if p.Port == 80 {
			return p, true
		}
	}
	return t.Ports[0], true
}

// Errors of ByHost.
var (
	ErrUnknownHost = errors.New("no ElastiService serves this host")
	ErrAmbiguous   = errors.New("several ElastiServices serve this Service name")
)

// Forgetter releases what other parts of the resolver keep for a target that is gone. It runs
// when the target goes away, and again with its tombstone (Gone set) when the grace period ends.
type Forgetter interface {
	Forget(t *Entry)
}

// DefaultGrace is the resolver's default Options.Grace.
const DefaultGrace = 10 * time.Minute

// tombstone is what is left of a deleted ElastiService: kube-proxy pins a caller's keep-alive
// connection to a resolver pod, so requests keep arriving after the routes are restored.
type tombstone struct {
	t       *Entry
	expires time.Time
}

// Registry is the in-memory index of ElastiServices and their private Services' ports.
type Registry struct {
	domain string
	forget Forgetter

	mu        sync.RWMutex
	specs     map[types.NamespacedName]*v1alpha1.ElastiService
	targets   map[types.NamespacedName]*Entry
	byService map[string][]types.NamespacedName // Service name -> ElastiServices, any namespace
	ports     map[types.NamespacedName][]Port   // private Service -> ports
	// lastPorts survives the private Service, which the controller deletes before it lets the
	// ElastiService go, so a tombstone still knows the ports.
	lastPorts map[types.NamespacedName][]Port // ElastiService -> last non-empty ports
	tombs     map[types.NamespacedName]tombstone
	grace     time.Duration
	now       func() time.Time
}

// Options configure a Registry.
type Options struct {
	// Domain is the cluster DNS domain, such as cluster.local.
	Domain string
	// Forget, if not nil, is told about every entry that goes away.
	Forget Forgetter
	// Grace is how long a deleted ElastiService still resolves, as a tombstone; 0 keeps none.
	Grace time.Duration
}

// New returns an empty Registry.
func New(o Options) *Registry {
	return &Registry{
		domain:    strings.ToLower(strings.TrimSuffix(o.Domain, ".")),
		forget:    o.Forget,
		specs:     map[types.NamespacedName]*v1alpha1.ElastiService{},
		targets:   map[types.NamespacedName]*Entry{},
		byService: map[string][]types.NamespacedName{},
		ports:     map[types.NamespacedName][]Port{},
		lastPorts: map[types.NamespacedName][]Port{},
		tombs:     map[types.NamespacedName]tombstone{},
		grace:     o.Grace,
		now:       time.Now,
	}
}

// Tombstone returns the tombstone of the ElastiService namespace/name, if it was deleted within
// the grace period.
func (r *Registry) Tombstone(namespace, name string) (*Entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	tb, ok := r.tombs[types.NamespacedName{Namespace: namespace, Name: name}]
	if !ok || !r.now().Before(tb.expires) {
		return nil, false
	}
	return tb.t, true
}

// ByKey returns the target of the ElastiService namespace/name, or its tombstone.
func (r *Registry) ByKey(namespace, name string) (*Entry, bool) {
	r.mu.RLock()
	t, ok := r.targets[types.NamespacedName{Namespace: namespace, Name: name}]
	r.mu.RUnlock()
	if ok {
		return t, true
	}
	return r.Tombstone(namespace, name)
}

// ByHost finds the target whose spec.service a Host names, and the port the Host names (0 if
// none). A Host with a namespace picks that namespace's live ElastiService, else its tombstone.
// A bare Service name is relative to the caller's namespace, which the resolver cannot see, so
// it matches only when one namespace claims the name, live or within a tombstone's grace: a
// name another namespace gave up moments ago may still be its callers' name, and sending them
// (and their cookies) to a namespace that claims it now would cross tenants.
func (r *Registry) ByHost(host string) (*Entry, int32, error) {
	h, ok := ParseHost(host, r.domain)
	if !ok {
		return nil, 0, ErrUnknownHost
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var live, dead *Entry
	var liveKey types.NamespacedName
	// first and others are the namespaces that claim a bare name; others stays nil (no
	// allocation) unless a second namespace shows up.
	var first string
	var others []string
	claim := func(ns string) {
		switch {
		case h.Namespace != "" || ns == first || slices.Contains(others, ns):
		case first == "":
			first = ns
		default:
			others = append(others, ns)
		}
	}
	for _, key := range r.byService[h.Service] {
		if h.Namespace != "" && key.Namespace != h.Namespace {
			continue
		}
		claim(key.Namespace)
		// Of two in one namespace, the controller serves only the one that claimed the Service
		// first and refuses the other, which has no route of its own.
		if live == nil || r.specs[key].ClaimsBefore(r.specs[liveKey]) {
			live, liveKey = r.targets[key], key
		}
	}
	if len(r.tombs) > 0 {
		// Tombstones are few and short-lived, so a scan is cheap.
		now := r.now()
		for key, tb := range r.tombs {
			if tb.t.Service != h.Service || !now.Before(tb.expires) || h.Namespace != "" && key.Namespace != h.Namespace {
				continue
			}
			claim(key.Namespace)
			if dead == nil || key.String() < dead.Key() {
				dead = tb.t
			}
		}
	}
	switch {
	case len(others) > 0:
		namespaces := append(slices.Clone(others), first)
		sort.Strings(namespaces)
		return nil, 0, fmt.Errorf("%w %q in namespaces %s (live or deleted within %s): use %s.<namespace> as the host",
			ErrAmbiguous, h.Service, strings.Join(namespaces, ", "), r.grace, h.Service)
	case live != nil:
		return live, h.Port, nil
	case dead != nil:
		return dead, h.Port, nil
	}
	return nil, 0, ErrUnknownHost
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
	expired := r.expire()
	var stale *Entry
	if old, ok := r.specs[key]; ok && old.Spec.Service != es.Spec.Service {
		// spec.service is immutable, so this is a new ElastiService of the same name: deleted
		// and re-created while the watch was down, which the relist reports as an update. The
		// old one's routes are restored; callers pinned to it resolve to a tombstone.
		r.unindex(key, old.Spec.Service)
		stale = r.targets[key]
		r.bury(key, stale)
	}
	if tb, ok := r.tombs[key]; ok && tb.t.Service == es.Spec.Service {
		delete(r.tombs, key) // re-created: the live target wins
	}
	r.specs[key] = es
	if !slices.Contains(r.byService[es.Spec.Service], key) {
		r.byService[es.Spec.Service] = append(r.byService[es.Spec.Service], key)
	}
	r.targets[key] = r.build(es)
	r.mu.Unlock()
	r.forgetAll(expired)
	if stale != nil && r.forget != nil {
		r.forget.Forget(stale)
	}
}

// DeleteElastiService forgets an ElastiService.
func (r *Registry) DeleteElastiService(namespace, name string) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	r.mu.Lock()
	expired := r.expire()
	old, ok := r.specs[key]
	t := r.targets[key]
	if ok {
		r.unindex(key, old.Spec.Service)
		// Buried before Forget releases held requests, so they find the tombstone.
		r.bury(key, t)
		delete(r.specs, key)
		delete(r.targets, key)
	}
	r.mu.Unlock()
	r.forgetAll(expired)
	if ok && r.forget != nil {
		r.forget.Forget(t)
	}
}

// bury records a tombstone for t, the last live target of key; r.mu must be held.
func (r *Registry) bury(key types.NamespacedName, t *Entry) {
	last := r.lastPorts[key]
	delete(r.lastPorts, key) // the next target of key may have another backend
	if r.grace <= 0 || t == nil {
		return
	}
	g := *t
	g.Gone, g.Serving, g.Unprepared = true, false, false
	if len(g.Ports) == 0 {
		g.Ports = last
	}
	r.tombs[key] = tombstone{t: &g, expires: r.now().Add(r.grace)}
}

// expire drops tombstones past their grace period and returns those whose ElastiService is
// not live again, for forgetAll; r.mu must be held. It runs on every write, so tombstones
// never outnumber the deletions of one grace period plus those since the last write.
func (r *Registry) expire() []*Entry {
	var out []*Entry
	now := r.now()
	for key, tb := range r.tombs {
		if now.Before(tb.expires) {
			continue
		}
		delete(r.tombs, key)
		if _, live := r.targets[key]; !live {
			out = append(out, tb.t)
		}
	}
	return out
}

func (r *Registry) forgetAll(ts []*Entry) {
	if r.forget == nil {
		return
	}
	for _, t := range ts {
		r.forget.Forget(t)
	}
}

// UpsertService records the ports of a private Service.
func (r *Registry) UpsertService(svc *corev1.Service) {
	ports := make([]Port, 0, len(svc.Spec.Ports))
	for _, p := range svc.Spec.Ports {
		ports = append(ports, Port{Name: p.Name, Port: p.Port, TargetPort: p.TargetPort.IntVal})
	}
	r.setPorts(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, ports)
}

// DeleteService forgets a private Service's ports.
func (r *Registry) DeleteService(namespace, name string) {
	r.setPorts(types.NamespacedName{Namespace: namespace, Name: name}, nil)
}

func (r *Registry) setPorts(key types.NamespacedName, ports []Port) {
	r.mu.Lock()
	expired := r.expire()
	defer r.forgetAll(expired)
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

// build makes an Entry; r.mu must be held.
func (r *Registry) build(es *v1alpha1.ElastiService) *Entry {
	backend := types.NamespacedName{Namespace: es.Namespace, Name: names.PrivateService(es.Spec.Service)}
	t := &Entry{
		Namespace: es.Namespace,
		Name:      es.Name,
		Service:   es.Spec.Service,
		Backend:   backend,
		Probes:    es.Spec.ProbeResponses,
		Ports:     r.ports[backend],
		Serving:   es.Status.Mode == v1alpha1.ModeServe,
		Policies:  es.Status.AuthorizationPolicies,
		// The controller adds its finalizer before it makes anything for Proxy mode.
		Unprepared: !slices.Contains(es.Finalizers, v1alpha1.Finalizer),
	}
	if len(t.Ports) > 0 {
		r.lastPorts[types.NamespacedName{Namespace: es.Namespace, Name: es.Name}] = t.Ports
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
