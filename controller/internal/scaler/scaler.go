// Package scaler moves a workload's replica count through the generic /scale subresource, so that
// any kind with one works: Deployments, StatefulSets, Argo Rollouts and custom resources. It also
// pauses and resumes a KEDA ScaledObject around zero, so that elasti owns 0 <-> min and the
// autoscaler owns 1..N, never both.
package scaler

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// KEDA's pause annotations: with paused-replicas set KEDA holds the target at that count and
// stops acting on it.
const (
	kedaPausedReplicas = "autoscaling.keda.sh/paused-replicas"
	kedaPaused         = "autoscaling.keda.sh/paused"
	// pausedByElasti marks a pause elasti set, the only one it lifts: a ScaledObject its owner
	// paused stays paused.
	pausedByElasti = "elasti.dev/paused-autoscaler"
)

var scaledObjectGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}

// Scaler reads and writes replica counts.
type Scaler struct {
	Client client.Client
	Mapper meta.RESTMapper
	// Cache, when set, is where Deployments and StatefulSets are read from, so that a pass that
	// changes nothing sends no request; other kinds are read through /scale. What is written
	// goes through /scale, and only onto the version that was read.
	Cache client.Reader
}

// Scale is a target's replica count as /scale reports it.
type Scale struct {
	// Spec is the desired replica count.
	Spec int32
	// Status is the observed replica count.
	Status int32
	// ResourceVersion is the target's version that was read; Set writes onto it only.
	ResourceVersion string
}

// GVK resolves a scaleTargetRef to a kind; a plural resource name such as "deployments" is
// accepted too, as KubeElasti users write it.
func (s *Scaler) GVK(ref v1alpha1.ScaleTargetRef) (schema.GroupVersionKind, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return schema.GroupVersionKind{}, fmt.Errorf("scaleTargetRef.apiVersion %q: %w", ref.APIVersion, err)
	}
	gvk := gv.WithKind(ref.Kind)
	if _, err := s.Mapper.RESTMapping(gvk.GroupKind(), gv.Version); err == nil {
		return gvk, nil
	}
	kind, err := s.Mapper.KindFor(gv.WithResource(strings.ToLower(ref.Kind)))
	if err != nil {
		return schema.GroupVersionKind{}, fmt.Errorf("scaleTargetRef %s %s is not a known kind or resource: %w", ref.APIVersion, ref.Kind, err)
	}
	return kind, nil
}

func (s *Scaler) target(namespace string, ref v1alpha1.ScaleTargetRef) (*unstructured.Unstructured, error) {
	gvk, err := s.GVK(ref)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(namespace)
	u.SetName(ref.Name)
	return u, nil
}

// Get reads the target's scale.
func (s *Scaler) Get(ctx context.Context, namespace string, ref v1alpha1.ScaleTargetRef) (Scale, error) {
	u, err := s.target(namespace, ref)
	if err != nil {
		return Scale{}, err
	}
	if s.Cache != nil {
		if sc, ok, err := s.cached(ctx, u); ok || err != nil {
			return sc, err
		}
	}
	sc := &unstructured.Unstructured{}
	sc.SetGroupVersionKind(schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"})
	if err := s.Client.SubResource("scale").Get(ctx, u, sc); err != nil {
		return Scale{}, fmt.Errorf("reading /scale of %s %s/%s: %w", u.GetKind(), namespace, ref.Name, err)
	}
	spec, _, _ := unstructured.NestedInt64(sc.Object, "spec", "replicas")
	status, _, _ := unstructured.NestedInt64(sc.Object, "status", "replicas")
	return Scale{Spec: int32(spec), Status: int32(status), ResourceVersion: sc.GetResourceVersion()}, nil
}

// cached reads a Deployment or StatefulSet from the cache; ok is false for other kinds.
func (s *Scaler) cached(ctx context.Context, u *unstructured.Unstructured) (sc Scale, ok bool, err error) {
	key := client.ObjectKeyFromObject(u)
	var spec *int32
	switch u.GroupVersionKind() {
	case appsv1.SchemeGroupVersion.WithKind("Deployment"):
		d := &appsv1.Deployment{}
		if err := s.Cache.Get(ctx, key, d); err != nil {
			return Scale{}, true, fmt.Errorf("reading Deployment %s: %w", key, err)
		}
		spec, sc.Status, sc.ResourceVersion = d.Spec.Replicas, d.Status.Replicas, d.ResourceVersion
	case appsv1.SchemeGroupVersion.WithKind("StatefulSet"):
		st := &appsv1.StatefulSet{}
		if err := s.Cache.Get(ctx, key, st); err != nil {
			return Scale{}, true, fmt.Errorf("reading StatefulSet %s: %w", key, err)
		}
		spec, sc.Status, sc.ResourceVersion = st.Spec.Replicas, st.Status.Replicas, st.ResourceVersion
	default:
		return Scale{}, false, nil
	}
	sc.Spec = 1 // the API's default
	if spec != nil {
		sc.Spec = *spec
	}
	return sc, true, nil
}

// KeepReplicas is a cache transform for Deployments and StatefulSets: the Scaler reads only
// their replica counts and version, so a cluster's thousands of pod templates are not kept.
func KeepReplicas(o any) (any, error) {
	slim := func(m metav1.ObjectMeta) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion, Generation: m.Generation}
	}
	switch w := o.(type) {
	case *appsv1.Deployment:
		return &appsv1.Deployment{TypeMeta: w.TypeMeta, ObjectMeta: slim(w.ObjectMeta),
			Spec: appsv1.DeploymentSpec{Replicas: w.Spec.Replicas}, Status: appsv1.DeploymentStatus{Replicas: w.Status.Replicas}}, nil
	case *appsv1.StatefulSet:
		return &appsv1.StatefulSet{TypeMeta: w.TypeMeta, ObjectMeta: slim(w.ObjectMeta),
			Spec: appsv1.StatefulSetSpec{Replicas: w.Spec.Replicas}, Status: appsv1.StatefulSetStatus{Replicas: w.Status.Replicas}}, nil
	}
	return o, nil
}

// Set writes the target's desired replica count onto the version read (from.ResourceVersion):
// if the target changed since, the API server refuses it with a conflict, and the caller decides
// again on what is there now. An empty version writes unconditionally.
func (s *Scaler) Set(ctx context.Context, namespace string, ref v1alpha1.ScaleTargetRef, from Scale, replicas int32) error {
	u, err := s.target(namespace, ref)
	if err != nil {
		return err
	}
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if from.ResourceVersion != "" {
		patch = fmt.Appendf(nil, `{"metadata":{"resourceVersion":%q},"spec":{"replicas":%d}}`, from.ResourceVersion, replicas)
	}
	if err := s.Client.SubResource("scale").Patch(ctx, u, client.RawPatch(types.MergePatchType, patch),
		client.FieldOwner(v1alpha1.FieldManager)); err != nil {
		return fmt.Errorf("scaling %s %s/%s to %d: %w", u.GetKind(), namespace, ref.Name, replicas, err)
	}
	return nil
}

// PauseAutoscaler stops KEDA from scaling the target while it is at zero. An HPA needs nothing:
// it does not act on a target with zero replicas. A ScaledObject its owner paused already is
// left as it is, and so is never resumed by elasti.
func (s *Scaler) PauseAutoscaler(ctx context.Context, namespace string, as *v1alpha1.Autoscaler) error {
	if as == nil || as.Type != v1alpha1.AutoscalerKEDA {
		return nil
	}
	ann, err := s.scaledObjectAnnotations(ctx, namespace, as.Name)
	if err != nil {
		return err
	}
	if ann[pausedByElasti] == "" && (ann[kedaPaused] == "true" || ann[kedaPausedReplicas] != "") {
		return nil
	}
	return s.patchScaledObject(ctx, namespace, as.Name, `{"metadata":{"annotations":{"`+kedaPausedReplicas+`":"0","`+pausedByElasti+`":"true"}}}`)
}

// ResumeAutoscaler hands 1..N back to KEDA, undoing only a pause that PauseAutoscaler set.
func (s *Scaler) ResumeAutoscaler(ctx context.Context, namespace string, as *v1alpha1.Autoscaler) error {
	if as == nil || as.Type != v1alpha1.AutoscalerKEDA {
		return nil
	}
	ann, err := s.scaledObjectAnnotations(ctx, namespace, as.Name)
	if err != nil || ann[pausedByElasti] == "" {
		return err
	}
	return s.patchScaledObject(ctx, namespace, as.Name, `{"metadata":{"annotations":{"`+kedaPausedReplicas+`":null,"`+pausedByElasti+`":null}}}`)
}

func (s *Scaler) scaledObjectAnnotations(ctx context.Context, namespace, name string) (map[string]string, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(scaledObjectGVK)
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, u); err != nil {
		return nil, fmt.Errorf("reading KEDA ScaledObject %s/%s: %w", namespace, name, err)
	}
	return u.GetAnnotations(), nil
}

func (s *Scaler) patchScaledObject(ctx context.Context, namespace, name, patch string) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(scaledObjectGVK)
	u.SetNamespace(namespace)
	u.SetName(name)
	if err := s.Client.Patch(ctx, u, client.RawPatch(types.MergePatchType, []byte(patch)), client.FieldOwner(v1alpha1.FieldManager)); err != nil {
		return fmt.Errorf("patching KEDA ScaledObject %s/%s: %w", namespace, name, err)
	}
	return nil
}
