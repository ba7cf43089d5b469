package reconciler

import (
	"context"
	"fmt"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/decide"
	"github.com/elasti-dev/elasti/internal/names"

	"github.com/elasti-dev/elasti/controller/internal/resources"
)

// finalize undoes everything before the ElastiService goes: the target back to
// minTargetReplicas if it is at zero, routes back to the target once it has ready endpoints (or
// at once when no resolver could hold requests meanwhile), and elasti's own objects removed. An
// uninstall must never leave a workload at zero or a route pointing at nothing.
func (r *Reconciler) finalize(ctx context.Context, es *v1alpha1.ElastiService) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(es, v1alpha1.Finalizer) {
		return ctrl.Result{}, nil
	}
	switch owner, err := r.claimedBy(ctx, es); {
	case err != nil:
		return ctrl.Result{}, err
	case owner != nil:
		return r.finalizeRefused(ctx, es)
	}
	sc, err := r.Scaler.Get(ctx, es.Namespace, es.Spec.ScaleTargetRef)
	targetExists := true
	switch {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		targetExists = false // nothing to bring back
	case err != nil:
		return ctrl.Result{}, err
	case sc.Spec == 0:
		if err := r.wake(ctx, es, sc); err != nil {
			return ctrl.Result{}, err
		}
		r.Recorder.Eventf(es, nil, corev1.EventTypeNormal, "WokeUp", "Finalize",
			"restoring %s %s to %d replicas before deletion", es.Spec.ScaleTargetRef.Kind, es.Spec.ScaleTargetRef.Name, es.Spec.MinTargetReplicas)
	}
	in := decide.RemovalInput{TargetExists: targetExists, DeletedAt: es.DeletionTimestamp.Time,
		Mode: es.Status.Mode, ModeSince: timeOf(es.Status.ModeSince), DrainDelay: r.DrainDelay}
	if targetExists {
		// The target's own endpoints, not the private Service's: that is deleted below, and a
		// retry after a failed update must not wait for it to come back.
		addrs, err := r.readyAddresses(ctx, es.Namespace, es.Spec.Service, notElastis)
		if err != nil {
			return ctrl.Result{}, err
		}
		resolvers, err := r.resolverEndpoints(ctx)
		if err != nil {
			return ctrl.Result{}, err
		}
		in.ReadyEndpoints, in.Resolvers = len(addrs), len(resolvers)
	}
	step, wait := decide.Removal(in, r.now())
	if step == decide.RemovalAwaitTarget {
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	before := es.DeepCopy()
	obs := &observed{}
	if r.Istio {
		if obs.virtualServices, err = r.virtualServicesFor(ctx, es); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.programRoutes(ctx, es, v1alpha1.ModeServe, obs); err != nil {
		return ctrl.Result{}, err
	}
	if step == decide.RemovalDrain {
		// Kube-proxy and callers' sidecars follow the routes a moment later, and their requests
		// still reach the resolver, which serves them only while this ElastiService and its
		// private Service exist: both stay for the drain delay.
		r.setMode(es, v1alpha1.ModeServe, r.now())
		if !equalStatus(&before.Status, &es.Status) {
			if err := r.Status().Patch(ctx, es, client.MergeFrom(before)); err != nil {
				return ctrl.Result{}, fmt.Errorf("recording Serve mode before removal: %w", err)
			}
		}
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	own := []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: es.Namespace, Name: names.PrivateService(es.Spec.Service)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: es.Namespace, Name: names.ProxyService(es.Spec.Service)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: es.Namespace, Name: names.ProbedService(es.Spec.Service)}},
	}
	if r.Istio {
		own = append(own, &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: es.Namespace, Name: names.ProxyService(es.Spec.Service)}})
	}
	if r.AuthorizationPolicies {
		own = append(own, &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: es.Namespace, Name: names.ResolverAuthorizationPolicy(es.Spec.Service)}})
	}
	for _, n := range append(resources.ProxySliceNames(es), resources.ProbedSliceNames(es)...) {
		own = append(own, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: es.Namespace, Name: n}})
	}
	if err := r.deleteAll(ctx, own...); err != nil {
		return ctrl.Result{}, err
	}
	if r.Istio {
		if err := r.ensureReplayRoutes(ctx, es, nil); err != nil {
			return ctrl.Result{}, err
		}
	}
	controllerutil.RemoveFinalizer(es, v1alpha1.Finalizer)
	return ctrl.Result{}, r.Update(ctx, es)
}
