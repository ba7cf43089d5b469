package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the group and version of the ElastiService API.
var GroupVersion = schema.GroupVersion{Group: "elasti.dev", Version: "v1alpha1"}

var (
	// SchemeBuilder registers the API types with a runtime.Scheme. Only apimachinery is
	// imported, so that the API package stays cheap to depend on.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the API types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ElastiService{}, &ElastiServiceList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
