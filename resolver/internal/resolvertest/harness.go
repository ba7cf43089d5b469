package resolvertest

import (
	"fmt"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/resolver/internal/readiness"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/throttler"
)

// Domain is the cluster domain the harness's registry resolves hosts in.
const Domain = "cluster.local"

// Options configure New.
type Options struct {
	// MaxTotal bounds the requests held across all targets.
	MaxTotal int
	// NamespaceShare bounds those held for one namespace's targets; 0 means MaxTotal.
	NamespaceShare int
	// ReleaseDeleted releases the requests held for a deleted ElastiService, as the resolver's
	// main does. Without it nothing is told of deleted targets.
	ReleaseDeleted bool
}

// Resolver is the resolver's state: which targets exist, which are ready, and who waits.
type Resolver struct {
	Registry  *registry.Registry
	Ready     *readiness.Cache
	Throttler *throttler.Throttler
}

// New wires an empty registry, readiness cache and throttler.
func New(o Options) *Resolver {
	r := &Resolver{Ready: readiness.New()}
	r.Throttler = throttler.New(r.Ready, o.MaxTotal)
	r.Throttler.SetNamespaceShare(o.NamespaceShare)
	r.Ready.SetListener(r.Throttler)
	var forget registry.Forgetter // nil: the registry tells no one
	if o.ReleaseDeleted {
		forget = releaser{r.Throttler}
	}
	r.Registry = registry.New(Domain, forget)
	return r
}

// releaser does the throttler's part of the resolver's forgetter.
type releaser struct{ thr *throttler.Throttler }

func (f releaser) Forget(t *registry.Target) {
	if !t.Gone {
		f.thr.Forget(t.Backend)
	}
}

// Target is the ElastiService namespace/service for the Service of the same name, with
// nothing else set.
func Target(namespace, service string) *v1alpha1.ElastiService {
	return &v1alpha1.ElastiService{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: service},
		Spec:       v1alpha1.ElastiServiceSpec{Service: service},
	}
}

// Add puts es in the registry and, when ports are given, its private Service with those
// ports, as the informers would. It returns the private Service's key, under which the
// target's requests are held and its endpoints are found.
func (r *Resolver) Add(es *v1alpha1.ElastiService, ports ...corev1.ServicePort) types.NamespacedName {
	key := types.NamespacedName{Namespace: es.Namespace, Name: names.PrivateService(es.Spec.Service)}
	r.Registry.UpsertElastiService(es)
	if len(ports) > 0 {
		r.Registry.UpsertService(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Spec: corev1.ServiceSpec{Ports: ports}})
	}
	return key
}

// SetReady writes the EndpointSlice of the private Service key, as the cluster would: one
// endpoint at addr (host:port) on port "http", ready or not.
func (r *Resolver) SetReady(key types.NamespacedName, addr string, ready bool) {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	r.Ready.Update(&discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: key.Name}},
		Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(p))}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
	})
}

// WaitPending waits until at least n requests are held for key, or fails after limit.
func (r *Resolver) WaitPending(key types.NamespacedName, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	// Short sleeps first, so a benchmark sees a hold at once; longer ones for long waits, so
	// polling does not take the CPU from the requests it waits for.
	for sleep := 50 * time.Microsecond; r.Throttler.Pending(key) < n; sleep = min(2*sleep, 5*time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("held %d requests after %v, want %d", r.Throttler.Pending(key), limit, n)
		}
		time.Sleep(sleep)
	}
	return nil
}
