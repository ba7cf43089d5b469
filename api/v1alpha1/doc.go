// Package v1alpha1 holds the ElastiService API (group elasti.dev), its lifecycle helpers and the
// labels, annotations and headers that the controller and the resolver agree on. It lives at the
// root, beside both binaries, because both serve it: the controller writes it, the resolver
// reads it.
//
// +kubebuilder:object:generate=true
// +groupName=elasti.dev
package v1alpha1
