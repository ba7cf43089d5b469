package scaler

import (
	"context"
	"maps"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
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
