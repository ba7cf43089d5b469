package resolvertest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/resolver/internal/app"
	"github.com/elasti-dev/elasti/resolver/internal/handler"
)

// Domain is the cluster domain New resolves hosts in unless Options.Domain says otherwise.
const Domain = "cluster.local"

// Resolver is app.New's resolver with the test's hands on its caches.
type Resolver struct{ *app.Resolver }

// New wires o with app.New. Where o leaves them unset it resolves in Domain, replays to pods
// (handler.UpstreamPods), and wakes nothing: there is no controller to wake.
func New(o app.Options) *Resolver {
	if o.Domain == "" {
		o.Domain = Domain
	}
	if o.Upstream == "" {
		o.Upstream = handler.UpstreamPods
	}
	if o.ActivityClient == nil {
		o.ActivityClient = noActivity{}
	}
	// The context ends only the activity client's loops, and o.Activity stands in for it.
	return &Resolver{app.New(context.Background(), o)}
}

type noActivity struct{}

func (noActivity) Held(types.NamespacedName, func() bool) {}
func (noActivity) Active(types.NamespacedName)            {}
func (noActivity) Forget(types.NamespacedName)            {}

// ElastiService is the ElastiService namespace/service for the Service of the same name, as the
// controller has prepared it for Proxy mode (its finalizer), with nothing else set.
func ElastiService(namespace, service string) *v1alpha1.ElastiService {
	return &v1alpha1.ElastiService{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: service, Finalizers: []string{v1alpha1.Finalizer}},
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
	r.Readiness.Update(&discoveryv1.EndpointSlice{
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
