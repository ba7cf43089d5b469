package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

func elastiService(ns, name string) *v1alpha1.ElastiService {
	return &v1alpha1.ElastiService{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name, Finalizers: []string{v1alpha1.Finalizer},
	}}
}

// finalizer plays the controller: it removes the finalizer of every ElastiService being deleted
// in namespaces, until ctx ends.
func finalizer(ctx context.Context, c client.Client, namespaces ...string) {
	for ctx.Err() == nil {
		for _, ns := range namespaces {
			var list v1alpha1.ElastiServiceList
			_ = c.List(ctx, &list, client.InNamespace(ns))
			for i := range list.Items {
				es := &list.Items[i]
				if !es.DeletionTimestamp.IsZero() && controllerutil.RemoveFinalizer(es, v1alpha1.Finalizer) {
					_ = c.Update(ctx, es)
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUninstall(t *testing.T) {
	uninstallPoll = 10 * time.Millisecond
	tests := map[string]struct {
		namespaces []string
		finalized  []string // namespaces whose finalizers the pretend controller runs
		wantGone   []string
		wantKept   []string
		wantErr    string
	}{
		"every namespace, finalizers run": {
			finalized: []string{"a", "b", "c"}, wantGone: []string{"a/one", "a/two", "b/one", "c/one"},
		},
		"only the watched namespaces": {
			namespaces: []string{"a", "b"}, finalized: []string{"a", "b", "c"},
			wantGone: []string{"a/one", "a/two", "b/one"}, wantKept: []string{"c/one"},
		},
		"no controller: fails naming what is left": {
			namespaces: []string{"a"}, wantKept: []string{"a/one", "a/two", "c/one"},
			wantErr: "a/one (Idle: idle for 60s); a/two",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			if err := v1alpha1.AddToScheme(scheme); err != nil {
				t.Fatal(err)
			}
			one := elastiService("a", "one")
			one.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue,
				Reason: "Idle", Message: "idle for 60s", LastTransitionTime: metav1.Now()}}
			c := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1alpha1.ElastiService{}).
				WithObjects(one, elastiService("a", "two"), elastiService("b", "one"), elastiService("c", "one")).Build()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go finalizer(ctx, c, tc.finalized...)

			timeout := 5 * time.Second
			if tc.wantErr != "" {
				timeout = 200 * time.Millisecond
			}
			err := uninstall(ctx, c, tc.namespaces, timeout, logr.Discard())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("uninstall() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("uninstall() = %v, want an error containing %q", err, tc.wantErr)
			}
			cancel()
			for _, key := range tc.wantGone {
				ns, n, _ := strings.Cut(key, "/")
				if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: n}, &v1alpha1.ElastiService{}); !apierrors.IsNotFound(err) {
					t.Errorf("%s: got %v, want it gone", key, err)
				}
			}
			for _, key := range tc.wantKept {
				ns, n, _ := strings.Cut(key, "/")
				es := &v1alpha1.ElastiService{}
				if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: n}, es); err != nil {
					t.Errorf("%s: got %v, want it kept", key, err)
				}
				if inWatched := tc.namespaces == nil || ns != "c"; inWatched == es.DeletionTimestamp.IsZero() {
					t.Errorf("%s: deletion timestamp %v, want it set only in a watched namespace", key, es.DeletionTimestamp)
				}
			}
		})
	}
}
