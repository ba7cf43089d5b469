package reconciler

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/decide"

	"k8s.io/apimachinery/pkg/api/equality"
)

func (r *Reconciler) setCondition(es *v1alpha1.ElastiService, typ string, ok bool, reason, msg string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&es.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: es.Generation,
	})
}

func (r *Reconciler) setMode(es *v1alpha1.ElastiService, mode v1alpha1.Mode, now time.Time) {
	if es.Status.Mode == mode {
		return
	}
	es.Status.Mode = mode
	es.Status.ModeSince = &metav1.Time{Time: now}
}

// recordActivity persists the leader's in-memory activity coarsely: a new leader reading it is
// off by at most 30 s or a tenth of the cooldown (the triggers' window still covers the whole
// cooldown), and an active Service does not write its status on every request.
func (r *Reconciler) recordActivity(es *v1alpha1.ElastiService, last time.Time) {
	granularity := max(30*time.Second, time.Duration(es.Spec.CooldownPeriod)*time.Second/10)
	if old := es.Status.LastActivityTime; old == nil || last.Sub(old.Time) >= granularity {
		es.Status.LastActivityTime = &metav1.Time{Time: last.Truncate(time.Second)}
	}
}

func modeTarget(m v1alpha1.Mode) string {
	if m == v1alpha1.ModeProxy {
		return "resolver"
	}
	return "target"
}

func readyMessage(d decide.Decision, es *v1alpha1.ElastiService) string {
	switch d.Reason {
	case v1alpha1.ReasonScaledToZero:
		return "the target is at zero; the resolver holds requests and wakes it"
	case v1alpha1.ReasonWoken:
		return "woken from zero and ready; callers go straight to the target again"
	case v1alpha1.ReasonWaking:
		return fmt.Sprintf("woken from zero; waiting up to %s for the target's endpoints to be ready", wakeTimeout(es))
	case v1alpha1.ReasonWakeFailed:
		// The message recordWakeFailure wrote names the pods' reason; it stands until the
		// target serves, through the retries.
		if c := meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Reason == v1alpha1.ReasonWakeFailed {
			return c.Message
		}
		return fmt.Sprintf("the last wake had no ready endpoint within %s; %s", wakeTimeout(es), wakeFailedNext(es))
	case v1alpha1.ReasonDraining:
		return "idle; waiting for callers to follow the routes to the resolver before scaling to zero"
	case v1alpha1.ReasonIdle:
		return fmt.Sprintf("idle for %ds; switching to the resolver before scaling to zero", es.Spec.CooldownPeriod)
	case v1alpha1.ReasonTargetNotReady:
		return "the target has no ready endpoints; the resolver holds requests until it does"
	case v1alpha1.ReasonNoResolverReady:
		return "no resolver is ready, so callers go straight to the target, which stays up"
	default:
		return "callers go straight to the target"
	}
}

func wakeFailedNext(es *v1alpha1.ElastiService) string {
	return fmt.Sprintf("it goes back to zero once idle for %ds, and the next request wakes it again", es.Spec.CooldownPeriod)
}

func equalStatus(a, b *v1alpha1.ElastiServiceStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}

// observe records in es's status what gather read, and only that.
func (r *Reconciler) observe(es *v1alpha1.ElastiService, obs *observed) {
	if obs.authorizationRead {
		es.Status.AuthorizationPolicies = obs.authorization.applies
	}
	if obs.scaleErr != nil {
		r.setCondition(es, v1alpha1.ConditionTargetReady, false, obs.reason, obs.scaleErr.Error())
	}
	if obs.scaleRead {
		es.Status.TargetReplicas = obs.scale.Spec
	}
	if obs.endpointsRead {
		es.Status.ReadyEndpoints = obs.ready
		if obs.ready > 0 {
			r.setCondition(es, v1alpha1.ConditionTargetReady, true, v1alpha1.ReasonEndpointsReady, fmt.Sprintf("%d ready endpoints", obs.ready))
		} else {
			r.setCondition(es, v1alpha1.ConditionTargetReady, false, v1alpha1.ReasonNoReadyEndpoints, fmt.Sprintf("%d replicas, none ready", obs.scale.Spec))
		}
	}
	if obs.resolversRead {
		if len(obs.resolvers) > 0 {
			r.setCondition(es, v1alpha1.ConditionResolverReady, true, v1alpha1.ReasonEndpointsReady, fmt.Sprintf("%d ready resolver endpoints", len(obs.resolvers)))
		} else {
			r.setCondition(es, v1alpha1.ConditionResolverReady, false, v1alpha1.ReasonNoReadyEndpoints,
				fmt.Sprintf("no ready endpoints for Service %s/%s; staying in Serve mode", r.ResolverNamespace, r.ResolverService))
		}
	}
	if obs.triggersAsked {
		switch t := obs.triggers; {
		case t.Err != nil:
			r.setCondition(es, v1alpha1.ConditionTriggersHealthy, false, t.Reason,
				t.Message+"; elasti will not scale to zero until the triggers answer")
		case obs.triggerActive:
			r.setCondition(es, v1alpha1.ConditionTriggersHealthy, true, v1alpha1.ReasonTriggerActive,
				"a trigger was above its threshold at "+t.LastActive.UTC().Format(time.RFC3339))
		default:
			r.setCondition(es, v1alpha1.ConditionTriggersHealthy, true, v1alpha1.ReasonTriggersIdle,
				fmt.Sprintf("no trigger was above its threshold in the last %ds", es.Spec.CooldownPeriod))
		}
	}
}

// setReady sets the Ready condition from the decision.
func (r *Reconciler) setReady(es *v1alpha1.ElastiService, d decide.Decision, obs *observed) {
	msg := readyMessage(d, es)
	switch d.Reason {
	case v1alpha1.ReasonUnsupportedPort:
		msg = decide.PortsMessage(obs.nonHTTP)
	case v1alpha1.ReasonUnsupportedAuthorization:
		msg = obs.authorization.unsupported
	}
	r.setCondition(es, v1alpha1.ConditionReady, d.Ready(), d.Reason, msg)
}
