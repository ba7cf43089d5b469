package scaler

import (
	"context"
	"maps"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

func scaledObject(annotations map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(scaledObjectGVK)
	u.SetNamespace("shop")
	u.SetName("web")
	u.SetAnnotations(annotations)
	return u
}

// The hand-off: elasti pauses KEDA at zero and resumes it on the way up, and lifts only a pause
// it set itself.
func TestAutoscalerHandOff(t *testing.T) {
	keda := &v1alpha1.Autoscaler{Type: v1alpha1.AutoscalerKEDA, Name: "web"}
	tests := map[string]struct {
		before              map[string]string
		paused, afterResume map[string]string
	}{
		"not paused: paused at zero, then handed back": {
			before:      map[string]string{"team": "shop"},
			paused:      map[string]string{"team": "shop", kedaPausedReplicas: "0", pausedByElasti: "true"},
			afterResume: map[string]string{"team": "shop"},
		},
		"paused by its owner: left paused through zero and the wake": {
			before:      map[string]string{kedaPaused: "true"},
			paused:      map[string]string{kedaPaused: "true"},
			afterResume: map[string]string{kedaPaused: "true"},
		},
		"held at a count by its owner: left alone": {
			before:      map[string]string{kedaPausedReplicas: "3"},
			paused:      map[string]string{kedaPausedReplicas: "3"},
			afterResume: map[string]string{kedaPausedReplicas: "3"},
		},
		"already paused by elasti (a retry): paused again, then handed back": {
			before:      map[string]string{kedaPausedReplicas: "0", pausedByElasti: "true"},
			paused:      map[string]string{kedaPausedReplicas: "0", pausedByElasti: "true"},
			afterResume: map[string]string{},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithObjects(scaledObject(tc.before)).Build()
			s := &Scaler{Client: c}
			ctx := context.Background()
			read := func() map[string]string {
				u := scaledObject(nil)
				if err := c.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, u); err != nil {
					t.Fatal(err)
				}
				a := u.GetAnnotations()
				if a == nil {
					a = map[string]string{}
				}
				return a
			}
			if err := s.PauseAutoscaler(ctx, "shop", keda); err != nil {
				t.Fatal(err)
			}
			if got := read(); !maps.Equal(got, tc.paused) {
				t.Errorf("after the pause: %v, want %v", got, tc.paused)
			}
			if err := s.ResumeAutoscaler(ctx, "shop", keda); err != nil {
				t.Fatal(err)
			}
			if got := read(); !maps.Equal(got, tc.afterResume) {
				t.Errorf("after the resume: %v, want %v", got, tc.afterResume)
			}
		})
	}
}

func TestNoAutoscalerNothingToPause(t *testing.T) {
	s := &Scaler{Client: fake.NewClientBuilder().Build()}
	for _, as := range []*v1alpha1.Autoscaler{nil, {Type: v1alpha1.AutoscalerHPA, Name: "web"}} {
		if err := s.PauseAutoscaler(context.Background(), "shop", as); err != nil {
			t.Errorf("pause with %v: %v", as, err)
		}
		if err := s.ResumeAutoscaler(context.Background(), "shop", as); err != nil {
			t.Errorf("resume with %v: %v", as, err)
		}
	}
}

func TestKeepReplicas(t *testing.T) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", ResourceVersion: "7",
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 1000)}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Template: corev1.PodTemplateSpec{
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}},
		Status: appsv1.DeploymentStatus{Replicas: 2},
	}
	got, err := KeepReplicas(d)
	if err != nil {
		t.Fatal(err)
	}
	want := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", ResourceVersion: "7"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3)}, Status: appsv1.DeploymentStatus{Replicas: 2}}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("KeepReplicas() = %+v, want %+v", got, want)
	}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", ResourceVersion: "9"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), ServiceName: "db"}}
	if got, _ := KeepReplicas(sts); got.(*appsv1.StatefulSet).Spec.ServiceName != "" || *got.(*appsv1.StatefulSet).Spec.Replicas != 1 {
		t.Errorf("KeepReplicas(StatefulSet) = %+v", got)
	}
	if got, _ := KeepReplicas("other"); got != "other" {
		t.Errorf("KeepReplicas passes other objects through, got %v", got)
	}
}
