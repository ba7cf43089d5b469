package reconciler

import (
	"context"
	"fmt"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/routes"
)

// One Service has one owner. The private Service, the resolver's slices and the replay routes
// are named after the Service, so two ElastiServices acting on it would take turns rewriting
// each other's objects. The one that claimed the Service first (v1alpha1.ClaimsBefore) owns it;
// the others wait, refused, and the next in line takes over once the owner is gone.

// claimedBy returns the ElastiService that owns es's Service when that is not es, else nil. One
// that is being deleted still owns the Service until its finalizer has restored everything.
func (r *Reconciler) claimedBy(ctx context.Context, es *v1alpha1.ElastiService) (*v1alpha1.ElastiService, error) {
	var list v1alpha1.ElastiServiceList
	if err := r.List(ctx, &list, client.InNamespace(es.Namespace), client.MatchingFields{indexService: es.Spec.Service}); err != nil {
		return nil, fmt.Errorf("listing the ElastiServices of Service %s: %w", es.Spec.Service, err)
	}
	var owner *v1alpha1.ElastiService
	for i := range list.Items {
		if c := &list.Items[i]; c.Name != es.Name && c.ClaimsBefore(es) && (owner == nil || c.ClaimsBefore(owner)) {
			owner = c
		}
	}
	return owner, nil
}

// refuse is the whole pass of an ElastiService whose Service another owns: no objects, no
// routes, no scaling, and a Ready condition that names the owner. It undoes only rewrites made
// in its own name, which exist if it acted before an older claim reached the cache.
func (r *Reconciler) refuse(ctx context.Context, es, owner *v1alpha1.ElastiService) error {
	if err := r.releaseRoutes(ctx, es); err != nil {
		return err
	}
	msg := fmt.Sprintf("ElastiService %s already claims Service %s; this one does nothing while it exists", owner.Name, es.Spec.Service)
	if c := meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Reason != v1alpha1.ReasonServiceClaimed {
		r.Recorder.Eventf(es, owner, corev1.EventTypeWarning, v1alpha1.ReasonServiceClaimed, "Refuse", "%s", msg)
	}
	es.Status.Mode, es.Status.ModeSince, es.Status.Routes = "", nil, nil
	for _, c := range []string{v1alpha1.ConditionRoutesProgrammed, v1alpha1.ConditionTargetReady,
		v1alpha1.ConditionResolverReady, v1alpha1.ConditionTriggersHealthy} {
		meta.RemoveStatusCondition(&es.Status.Conditions, c)
	}
	r.setCondition(es, v1alpha1.ConditionReady, false, v1alpha1.ReasonServiceClaimed, msg)
	return nil
}

// finalizeRefused lets a refused ElastiService go without touching what its Service's owner
// keeps: the target, the routes and the objects named after the Service.
func (r *Reconciler) finalizeRefused(ctx context.Context, es *v1alpha1.ElastiService) (ctrl.Result, error) {
	if err := r.releaseRoutes(ctx, es); err != nil {
		return ctrl.Result{}, err
	}
	controllerutil.RemoveFinalizer(es, v1alpha1.Finalizer)
	return ctrl.Result{}, r.Update(ctx, es)
}

// releaseRoutes restores the destinations rewritten in es's name, and no other.
func (r *Reconciler) releaseRoutes(ctx context.Context, es *v1alpha1.ElastiService) error {
	if !r.Istio {
		return nil
	}
	var list networkingv1.VirtualServiceList
	if err := r.List(ctx, &list, client.MatchingFields{indexRoutesTo: rewrittenFor(es.Key())}); err != nil {
		return fmt.Errorf("listing VirtualServices: %w", err)
	}
	t := r.routeParams(es)
	for _, vs := range list.Items {
		edited := vs.DeepCopy()
		changed, err := routes.Restore(edited, t)
		if err != nil {
			return err
		}
		if !changed {
			continue
		}
		if err := r.Patch(ctx, edited, client.MergeFromWithOptions(vs, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("restoring VirtualService %s/%s: %w", vs.Namespace, vs.Name, err)
		}
		r.Metrics.routeWrites.WithLabelValues("VirtualService").Inc()
	}
	return nil
}

// claimsChanged passes the events that can change who owns a Service: an ElastiService that
// appears or goes. spec.service is immutable, and an owner being deleted still owns it.
var claimsChanged = predicate.Funcs{
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// mapClaimants maps an ElastiService to every ElastiService that names the same Service.
func (r *Reconciler) mapClaimants(ctx context.Context, o client.Object) []reconcile.Request {
	es := o.(*v1alpha1.ElastiService)
	return r.byIndex(ctx, indexService, es.Spec.Service, client.InNamespace(es.Namespace))
}
