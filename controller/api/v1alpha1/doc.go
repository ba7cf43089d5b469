// Package v1alpha1 holds the ElastiService API (group elasti.dev), its lifecycle helpers and the
// labels, annotations and headers that the controller and the resolver agree on.
//
// +kubebuilder:object:generate=true
// +groupName=elasti.dev
package v1alpha1
