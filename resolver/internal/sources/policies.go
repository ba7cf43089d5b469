package sources

import (
	"sync"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
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
