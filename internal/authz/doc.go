// Package authz decides, for the resolver, what the target's own sidecar would decide: whether
// the Istio AuthorizationPolicies that apply to the target's pods let a caller in. The resolver
// replays requests with its own identity, so without this check a policy on source.principals
// or namespaces would either refuse every replay or let in anyone who can reach the resolver.
// Matching follows Istio's translation of policies into Envoy RBAC (pilot/pkg/security/authz in
// istio/istio 1.31) and Envoy's matchers, value by value. What the resolver cannot observe (JWT
// claims, IP blocks, path templates, an unknown port) is neither true nor false: an ALLOW rule
// must match whatever such a field holds, and a DENY or CUSTOM rule denies unless it fails
// whatever the field holds. The caller's principal comes from the x-forwarded-client-cert its
// sidecar appends (CallerFromHeader). The controller uses Selects (or Applies), Unsupported and
// DeniesPrincipal to decide whether a target can be proxied at all. Paths are compared as
// received: the resolver's own sidecar has normalised them with the mesh's setting already.
package authz
