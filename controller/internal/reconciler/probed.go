package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/decide"
	"github.com/elasti-dev/elasti/controller/internal/podprobe"
	"github.com/elasti-dev/elasti/controller/internal/resources"
	"github.com/elasti-dev/elasti/internal/endpoints"
	"github.com/elasti-dev/elasti/internal/names"
)

// newPod is a pod of the target that the Service's own slices list as not ready yet.
type newPod struct {
	ref    *corev1.ObjectReference
	probed resources.Probed
}

// newPods lists the target's pods that the kubelet has not marked Ready yet and that are not
// going away.
func newPods(own []discoveryv1.EndpointSlice) []newPod {
	var out []newPod
	for i := range own {
		s := &own[i]
		for _, ep := range s.Endpoints {
			if endpoints.Ready(ep) || (ep.Conditions.Terminating != nil && *ep.Conditions.Terminating) ||
				ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || ep.TargetRef.UID == "" || len(ep.Addresses) == 0 {
				continue
			}
			out = append(out, newPod{ref: ep.TargetRef, probed: resources.Probed{Endpoint: ep, Ports: s.Ports, AddressType: s.AddressType}})
		}
	}
	return out
}

// syncProbed runs elasti's own probes on the target's new pods while a wake's callers wait in
// Proxy mode, and lists the pods that passed in the probed Service's slices: the resolver replays
// to them, and istiod gives them to its sidecar, before the kubelet's next periodic probe marks
// them Ready. Everything is let go of, and the probed Service removed, once the mode is Serve, the
// target is at zero, or probing does not apply.
func (r *Reconciler) syncProbed(ctx context.Context, es *v1alpha1.ElastiService, d decide.Decision, obs *observed) error {
	if r.Prober == nil || r.pods == nil {
		return nil
	}
	owner := types.NamespacedName{Namespace: es.Namespace, Name: es.Name}
	waking := d.Mode == v1alpha1.ModeProxy && obs.scale.Spec > 0 && obs.ready == 0
	var pods []newPod
	if waking {
		pods = newPods(obs.own)
	}
	switch {
	case len(pods) == 0:
	case es.ReadinessOf() == v1alpha1.ReadinessKubelet:
		r.setCondition(es, v1alpha1.ConditionDirectProbing, false, v1alpha1.ReasonProbingDisabled,
			"spec.coldStart.readiness is Kubelet: held requests wait for the kubelet to mark a pod Ready")
		pods = nil
	case obs.destinationRule != nil:
		// The replay routes that pick a subset and carry the traffic policy are on the private
		// host only, and a probed pod may be of any subset.
		r.setCondition(es, v1alpha1.ConditionDirectProbing, false, v1alpha1.ReasonProbingDestinationRule,
			"the Service has a DestinationRule, whose subsets and traffic policy apply to replays through the private Service: held requests wait for the kubelet")
		pods = nil
	}
	uids := make(map[types.UID]bool, len(pods))
	for _, p := range pods {
		uids[p.ref.UID] = true
		if !r.Prober.Tracks(p.ref.UID) {
			if err := r.startProbe(ctx, es, owner, p.ref); err != nil {
				return err
			}
		}
	}
	states := r.Prober.Keep(owner, uids)

	var passed []resources.Probed
	var failed, refused []string
	for _, p := range pods {
		s, ok := states[p.ref.UID]
		switch {
		case !ok:
		case s.State == podprobe.Passed:
			passed = append(passed, p.probed)
		case s.State == podprobe.Failed && errors.Is(s.Err, podprobe.ErrNotProbeable):
			refused = append(refused, fmt.Sprintf("pod %s: %v", p.ref.Name, s.Err))
		case s.State == podprobe.Failed:
			failed = append(failed, fmt.Sprintf("pod %s: %v", p.ref.Name, s.Err))
		}
	}
	switch {
	case len(passed) > 0:
		r.setCondition(es, v1alpha1.ConditionDirectProbing, true, v1alpha1.ReasonProbePassed,
			fmt.Sprintf("%d new pod(s) passed elasti's probes before the kubelet marked them Ready; held requests go to them", len(passed)))
	case len(failed) > 0:
		r.setCondition(es, v1alpha1.ConditionDirectProbing, false, v1alpha1.ReasonProbeFailed,
			"held requests wait for the kubelet: "+failed[0])
	case len(refused) > 0:
		r.setCondition(es, v1alpha1.ConditionDirectProbing, false, v1alpha1.ReasonNotProbeable,
			"held requests wait for the kubelet: "+refused[0])
	}
	// The Service before its slices, and gone after them: a slice never names a Service that is
	// not there.
	want := resources.MakeProbedSlices(es, passed)
	if len(want) > 0 {
		if err := r.upsertSelectorless(ctx, resources.MakeProbedService(es, obs.public, r.ResolverNamespace)); err != nil {
			return err
		}
	}
	if _, err := r.syncSlices(ctx, es, want, resources.ProbedSliceNames(es)); err != nil {
		return err
	}
	if len(want) == 0 {
		return r.deleteAll(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: es.Namespace, Name: names.ProbedService(es.Spec.Service)}})
	}
	return nil
}

// startProbe reads the pod once and probes it, or records why it cannot be probed. The pod is
// read from the API server, not a cache: a cache would watch every pod in the cluster for the
// few that are waking.
func (r *Reconciler) startProbe(ctx context.Context, es *v1alpha1.ElastiService, owner types.NamespacedName, ref *corev1.ObjectReference) error {
	pod := &corev1.Pod{}
	if err := r.pods.Get(ctx, types.NamespacedName{Namespace: es.Namespace, Name: ref.Name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // gone; its slice entry goes too
		}
		return fmt.Errorf("reading pod %s: %w", ref.Name, err)
	}
	if pod.UID != ref.UID {
		return nil // replaced by a pod of the same name; its own endpoint comes next
	}
	if pod.Spec.HostNetwork {
		// Its IP is the node's, where the kubelet probes from inside; elasti would probe the node.
		r.Prober.Refuse(owner, pod.UID, &podprobe.NotProbeableError{Reason: "host network"})
		return nil
	}
	probe, err := podprobe.Translate(pod)
	switch {
	case errors.Is(err, podprobe.ErrNoPodIP):
		return nil // its endpoint has an address, so the pod's status follows
	case err != nil:
		r.Prober.Refuse(owner, pod.UID, err)
		return nil
	}
	started := pod.Status.StartTime
	log.FromContext(ctx).V(1).Info("probing a new pod", "pod", pod.Name, "probe", probe.String())
	r.Prober.Start(owner, podprobe.Target{
		UID:     pod.UID,
		Probe:   probe,
		Backoff: podprobe.Backoff{Timeout: wakeTimeout(es)},
		OnPass: func(at time.Time) {
			if started != nil {
				r.Metrics.probeReady.WithLabelValues(es.Namespace, es.Name).Observe(at.Sub(started.Time).Seconds())
			}
		},
	})
	return nil
}
