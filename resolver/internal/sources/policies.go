package sources

import (
	"context"
	"fmt"
	"sync"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/elasti-dev/elasti/resolver/internal/events"
)

// +kubebuilder:rbac:groups=security.istio.io,resources=authorizationpolicies,verbs=get;list;watch

// Policies holds AuthorizationPolicies by "namespace/name", for the resolver's check of each
// caller (handler.Authorize). The ElastiService's status says which apply to its target.
type Policies struct {
	mu sync.RWMutex
	m  map[string]*securityv1.AuthorizationPolicy
}

// NewPolicies returns an empty store.
func NewPolicies() *Policies {
	return &Policies{m: map[string]*securityv1.AuthorizationPolicy{}}
}

// Policy returns the policy named key.
func (p *Policies) Policy(key string) (*securityv1.AuthorizationPolicy, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ap, ok := p.m[key]
	return ap, ok
}

// Upsert records ap; the store keeps the informer's object, which no one may change.
func (p *Policies) Upsert(ap *securityv1.AuthorizationPolicy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[ap.Namespace+"/"+ap.Name] = ap
}

// Delete forgets a policy.
func (p *Policies) Delete(ap *securityv1.AuthorizationPolicy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, ap.Namespace+"/"+ap.Name)
}

// RegisterPolicies feeds p from the cache's AuthorizationPolicy informer.
func RegisterPolicies(ctx context.Context, c cache.Cache, p *Policies) error {
	inf, err := c.GetInformer(ctx, &securityv1.AuthorizationPolicy{})
	if err != nil {
		return fmt.Errorf("informer for AuthorizationPolicies: %w", err)
	}
	if _, err := inf.AddEventHandler(events.Handler(p.Upsert, p.Delete)); err != nil {
		return fmt.Errorf("event handler for AuthorizationPolicies: %w", err)
	}
	return nil
}
