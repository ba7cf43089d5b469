package reconciler

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/decide"
)

// conflictRetry is how soon a pass whose scale write found the target changed looks again: the
// cache has the change a moment later.
const conflictRetry = 200 * time.Millisecond

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	es := &v1alpha1.ElastiService{}
	if err := r.Get(ctx, req.NamespacedName, es); err != nil {
		if apierrors.IsNotFound(err) {
			r.Activity.Forget(req.NamespacedName)
			r.Metrics.forget(req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !es.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, es)
	}
	before := es.DeepCopy()
	result, err := r.reconcile(ctx, es)
	es.Status.ObservedGeneration = es.Generation
	if !equalStatus(&before.Status, &es.Status) {
		// A merge patch without a lock: this controller is the status's only writer, and a
		// conflict caused by the cache lagging behind its own last write must not drop what
		// this pass did (such as the time it woke the target).
		if perr := r.Status().Patch(ctx, es, client.MergeFrom(before)); perr != nil {
			return ctrl.Result{}, errors.Join(err, perr)
		}
	}
	return result, err
}

func (r *Reconciler) reconcile(ctx context.Context, es *v1alpha1.ElastiService) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	switch owner, err := r.claimedBy(ctx, es); {
	case err != nil:
		r.setCondition(es, v1alpha1.ConditionReady, false, v1alpha1.ReasonListFailed, err.Error())
		return ctrl.Result{}, err
	case owner != nil:
		return ctrl.Result{}, r.refuse(ctx, es, owner)
	}
	now := r.now()
	obs, err := r.gather(ctx, es, now)
	r.observe(es, obs)
	if err != nil {
		r.setCondition(es, v1alpha1.ConditionReady, false, obs.reason, err.Error())
		if !obs.terminal {
			// A passing failure (a list, a read of /scale): change nothing and retry, rather
			// than move callers off a resolver that is holding their requests.
			return ctrl.Result{}, err
		}
		// The Service or the target is gone or unusable: the resolver could never wake it,
		// so callers must not be left pointing at the resolver.
		if rerr := r.programRoutes(ctx, es, v1alpha1.ModeServe, obs); rerr != nil {
			return ctrl.Result{}, errors.Join(err, rerr)
		}
		r.setMode(es, v1alpha1.ModeServe, now)
		return ctrl.Result{}, nil
	}

	d := decide.Decide(decide.Input{
		Mode:            es.Status.Mode,
		ModeSince:       timeOf(es.Status.ModeSince),
		Replicas:        obs.scale.Spec,
		ReadyEndpoints:  obs.ready,
		ResolverReady:   len(obs.resolvers) > 0,
		WokeAt:          timeOf(es.Status.LastScaledUpTime),
		LastActivity:    obs.lastActivity,
		TriggersHealthy: obs.triggers.Err == nil,
		Cooldown:        time.Duration(es.Spec.CooldownPeriod) * time.Second,
		DrainDelay:      r.DrainDelay,
		WakeTimeout:     wakeTimeout(es),
		WakeFailedAt:    timeOf(es.Status.LastWakeFailureTime),
		Unsupported:     obs.unsupported(),
	}, now)
	logger.V(1).Info("decided", "mode", d.Mode, "scale", d.Scale, "reason", d.Reason,
		"replicas", obs.scale.Spec, "ready", obs.ready, "resolvers", len(obs.resolvers),
		"modeSince", timeOf(es.Status.ModeSince), "wokeAt", timeOf(es.Status.LastScaledUpTime),
		"wakeFailedAt", timeOf(es.Status.LastWakeFailureTime))

	// 1. What Proxy mode needs, made the first time it is wanted and kept from then on, so that
	// an ElastiService that stays in Serve costs its status alone.
	if d.Mode == v1alpha1.ModeProxy || es.Status.Mode == v1alpha1.ModeProxy {
		if err := r.prepareProxy(ctx, es, obs); err != nil {
			return ctrl.Result{}, err
		}
		if r.Istio {
			made := time.Duration(0)
			if !obs.proxyMade.IsZero() {
				made = now.Sub(obs.proxyMade)
			}
			d = decide.Prepare(d, es.Status.Mode, made)
		}
	}
	// 2. Routes. Mode is recorded only once they are programmed: make before break.
	if err := r.programRoutes(ctx, es, d.Mode, obs); err != nil {
		r.setCondition(es, v1alpha1.ConditionRoutesProgrammed, false, v1alpha1.ReasonProgrammingFailed, err.Error())
		return ctrl.Result{}, err
	}
	r.setCondition(es, v1alpha1.ConditionRoutesProgrammed, true, string(d.Mode), "routes send callers to the "+modeTarget(d.Mode))
	if es.Status.Mode != d.Mode {
		// A new ElastiService's first Serve changes nothing for its callers: no event.
		if es.Status.Mode != "" || d.Mode != v1alpha1.ModeServe {
			r.Recorder.Eventf(es, nil, corev1.EventTypeNormal, "ModeChanged", "Program",
				"%s mode: %s", d.Mode, d.Reason)
		}
		if d.Mode == v1alpha1.ModeServe && d.Reason == v1alpha1.ReasonWoken {
			r.Metrics.observeWake(es, now)
		}
		r.setMode(es, d.Mode, now)
	}
	r.Metrics.observeMode(es)
	// 3. Replicas. A failed wake is told before the scale-down it allows.
	if d.RecordWakeFailure {
		r.recordWakeFailure(ctx, es, obs, now)
	}
	if err := r.scale(ctx, es, d, obs.scale, now); err != nil {
		if apierrors.IsConflict(err) {
			// The target changed since it was read (from the cache): decide again on what is
			// there now, without calling it a failure.
			log.FromContext(ctx).V(1).Info("the target changed since it was read; deciding again", "error", err.Error())
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		r.setCondition(es, v1alpha1.ConditionReady, false, v1alpha1.ReasonScaleFailed, err.Error())
		return ctrl.Result{}, err
	}
	// New pods that elasti's own probe passed, for the resolver, while the wake's callers wait.
	if err := r.syncProbed(ctx, es, d, obs); err != nil {
		return ctrl.Result{}, err
	}
	// 4. Status.
	r.recordActivity(es, obs.lastActivity)
	r.setReady(es, d, obs)
	return ctrl.Result{RequeueAfter: decide.RequeueAfter(d, obs.triggers.Err != nil, r.TriggerInterval)}, nil
}

// wakeTimeout is spec.wakeTimeout, or its default for an object stored before the field existed.
func wakeTimeout(es *v1alpha1.ElastiService) time.Duration {
	if t := es.Spec.WakeTimeout; t != nil && t.Duration > 0 {
		return t.Duration
	}
	return v1alpha1.DefaultWakeTimeout
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

func latest(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}
