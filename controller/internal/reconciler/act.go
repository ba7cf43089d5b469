package reconciler

import (
	"context"
	"fmt"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"slices"
	"strings"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/decide"
	"github.com/elasti-dev/elasti/controller/internal/routes"
	"github.com/elasti-dev/elasti/controller/internal/scaler"
	"github.com/elasti-dev/elasti/internal/names"

	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/elasti-dev/elasti/controller/internal/resources"
)

// prepareProxy makes what Proxy mode needs before a caller is sent to the resolver: the
// finalizer that undoes it, the private Service that the resolver replays to, the policy that
// lets replays through the target's ALLOW policies, the replay routes on the private host, and
// the proxy Service that rewritten routes name.
func (r *Reconciler) prepareProxy(ctx context.Context, es *v1alpha1.ElastiService, obs *observed) error {
	if !controllerutil.ContainsFinalizer(es, v1alpha1.Finalizer) {
		// On a copy: the server's answer must not replace the status this pass has been setting,
		// and the status patch must not carry metadata.
		with := es.DeepCopy()
		controllerutil.AddFinalizer(with, v1alpha1.Finalizer)
		if err := r.Patch(ctx, with, client.MergeFromWithOptions(es, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("adding the finalizer: %w", err)
		}
	}
	if err := r.ensurePrivateService(ctx, es, obs.public); err != nil {
		return err
	}
	if err := r.ensureResolverAuthorization(ctx, es, obs); err != nil {
		return err
	}
	if !r.Istio {
		return nil
	}
	if err := r.ensureReplayRoutes(ctx, es, obs.destinationRule); err != nil {
		return err
	}
	return r.ensureProxyService(ctx, es, obs)
}

func (r *Reconciler) ensurePrivateService(ctx context.Context, es *v1alpha1.ElastiService, public *corev1.Service) error {
	want, have := resources.MakePrivateService(es, public, r.ResolverNamespace), &corev1.Service{}
	// Every field that says where the resolver's replays go: a private Service edited into an
	// ExternalName, a NodePort, external IPs, another selector or hidden from the resolver is
	// put back.
	return r.upsert(ctx, want, have, func() bool {
		return have.Annotations[resources.AnnotationExportTo] == want.Annotations[resources.AnnotationExportTo] &&
			have.Spec.Type == want.Spec.Type && have.Spec.ExternalName == want.Spec.ExternalName &&
			have.Spec.PublishNotReadyAddresses == want.Spec.PublishNotReadyAddresses &&
			equality.Semantic.DeepEqual(have.Spec.ExternalIPs, want.Spec.ExternalIPs) &&
			equality.Semantic.DeepEqual(have.Spec.Selector, want.Spec.Selector) &&
			equality.Semantic.DeepEqual(have.Spec.Ports, want.Spec.Ports)
	}, func() {
		have.Spec.Type, have.Spec.ExternalName, have.Spec.ExternalIPs = want.Spec.Type, want.Spec.ExternalName, want.Spec.ExternalIPs
		have.Spec.PublishNotReadyAddresses = want.Spec.PublishNotReadyAddresses
		have.Spec.Selector, have.Spec.Ports = want.Spec.Selector, want.Spec.Ports
		if have.Annotations == nil {
			have.Annotations = map[string]string{}
		}
		have.Annotations[resources.AnnotationExportTo] = want.Annotations[resources.AnnotationExportTo]
	})
}

// ensureReplayRoutes mirrors the public host's DestinationRule (as istiod merged it) onto the
// private host, with a VirtualService that picks the subset the resolver names, or removes both
// when there is none.
func (r *Reconciler) ensureReplayRoutes(ctx context.Context, es *v1alpha1.ElastiService, public *apinetworking.DestinationRule) error {
	drKey := types.NamespacedName{Namespace: es.Namespace, Name: names.PrivateDestinationRule(es.Spec.Service)}
	vsKey := types.NamespacedName{Namespace: es.Namespace, Name: names.PrivateVirtualService(es.Spec.Service)}
	if public == nil {
		return r.deleteAll(ctx, &networkingv1.DestinationRule{ObjectMeta: objectMeta(drKey)},
			&networkingv1.VirtualService{ObjectMeta: objectMeta(vsKey)})
	}
	dr := resources.MakeReplayDestinationRule(es, public, r.ClusterDomain, r.ResolverNamespace)
	var subsets []string
	for _, s := range public.GetSubsets() {
		subsets = append(subsets, s.GetName())
	}
	vs := resources.MakeReplayVirtualService(es, subsets, r.ClusterDomain, r.ResolverNamespace)

	if err := r.upsertDestinationRule(ctx, dr); err != nil {
		return err
	}
	haveVS := &networkingv1.VirtualService{}
	return r.upsert(ctx, vs, haveVS, func() bool { return proto.Equal(&haveVS.Spec, &vs.Spec) }, func() {
		proto.Reset(&haveVS.Spec)
		proto.Merge(&haveVS.Spec, &vs.Spec)
	})
}

// upsert creates want, or, when have (read into) differs by same(), applies set() to a copy and
// patches it with an optimistic lock.
func (r *Reconciler) upsert(ctx context.Context, want, have client.Object, same func() bool, set func()) error {
	err := r.Get(ctx, client.ObjectKeyFromObject(want), have)
	if apierrors.IsNotFound(err) {
		if err := r.Create(ctx, want); err != nil {
			return fmt.Errorf("creating %T %s: %w", want, want.GetName(), err)
		}
		r.Metrics.routeWrites.WithLabelValues(kindOf(want)).Inc()
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %T %s: %w", want, want.GetName(), err)
	}
	// The owner reference too: an ElastiService refused after it had created these objects
	// (an older claim seen late) must not take them with it when it is deleted.
	sameOwner := equality.Semantic.DeepEqual(have.GetOwnerReferences(), want.GetOwnerReferences())
	if same() && hasLabels(have, want.GetLabels()) && sameOwner {
		return nil
	}
	before := have.DeepCopyObject().(client.Object)
	set()
	have.SetLabels(mergeLabels(have.GetLabels(), want.GetLabels()))
	have.SetOwnerReferences(want.GetOwnerReferences())
	if err := r.Patch(ctx, have, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("updating %T %s: %w", want, want.GetName(), err)
	}
	r.Metrics.routeWrites.WithLabelValues(kindOf(want)).Inc()
	return nil
}

func kindOf(o client.Object) string {
	switch o.(type) {
	case *discoveryv1.EndpointSlice:
		return "EndpointSlice"
	case *networkingv1.DestinationRule:
		return "DestinationRule"
	case *networkingv1.VirtualService:
		return "VirtualService"
	case *corev1.Service:
		return "Service"
	case *securityv1.AuthorizationPolicy:
		return "AuthorizationPolicy"
	default:
		return "Other"
	}
}

// programRoutes points every route at the resolver (Proxy) or back at the target (Serve), and
// records the routes that point at the resolver in status.
func (r *Reconciler) programRoutes(ctx context.Context, es *v1alpha1.ElastiService, mode v1alpha1.Mode, obs *observed) error {
	t := r.routeParams(es)
	var refs []v1alpha1.RouteRef
	var exportTo []string
	if obs.public != nil && obs.public.Annotations[resources.AnnotationExportTo] != "" {
		exportTo = strings.Split(obs.public.Annotations[resources.AnnotationExportTo], ",")
	}
	for _, vs := range obs.virtualServices {
		edited := vs.DeepCopy()
		var changed bool
		var err error
		if mode == v1alpha1.ModeProxy && routes.Visible(vs, es.Namespace, exportTo) {
			changed, err = routes.Rewrite(edited, t)
		} else {
			changed, err = routes.Restore(edited, t)
		}
		if err != nil {
			return err
		}
		if changed {
			// The lock makes a concurrent edit by the user a conflict and a retry on fresh
			// data, never a silent overwrite.
			if err := r.Patch(ctx, edited, client.MergeFromWithOptions(vs, client.MergeFromWithOptimisticLock{})); err != nil {
				return fmt.Errorf("patching VirtualService %s/%s: %w", vs.Namespace, vs.Name, err)
			}
			r.Metrics.routeWrites.WithLabelValues("VirtualService").Inc()
		}
		if mode == v1alpha1.ModeProxy && routes.RoutesTo(edited, t) {
			refs = append(refs, v1alpha1.RouteRef{Kind: "VirtualService", Namespace: vs.Namespace, Name: vs.Name})
		}
	}

	var want []*discoveryv1.EndpointSlice
	if mode == v1alpha1.ModeProxy && obs.public != nil {
		want = resources.MakeResolverSlices(es, obs.public, obs.resolvers, r.ResolverPort)
	}
	slices, err := r.syncSlices(ctx, es, want, resources.ResolverSliceNames(es))
	if err != nil {
		return err
	}
	refs = append(refs, slices...)
	es.Status.Routes = refs
	return nil
}

// syncSlices makes elasti's EndpointSlices named names equal to want, deleting those not
// wanted, and returns a reference to each that exists.
func (r *Reconciler) syncSlices(ctx context.Context, es *v1alpha1.ElastiService, want []*discoveryv1.EndpointSlice, names []string) ([]v1alpha1.RouteRef, error) {
	var refs []v1alpha1.RouteRef
	for _, name := range names {
		i := slices.IndexFunc(want, func(s *discoveryv1.EndpointSlice) bool { return s.Name == name })
		if i < 0 {
			if err := r.deleteAll(ctx, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: es.Namespace, Name: name}}); err != nil {
				return nil, err
			}
			continue
		}
		w, have := want[i], &discoveryv1.EndpointSlice{}
		if err := r.upsert(ctx, w, have, func() bool {
			return equality.Semantic.DeepEqual(have.Endpoints, w.Endpoints) && equality.Semantic.DeepEqual(have.Ports, w.Ports)
		}, func() { have.Endpoints, have.Ports = w.Endpoints, w.Ports }); err != nil {
			return nil, err
		}
		refs = append(refs, v1alpha1.RouteRef{Kind: "EndpointSlice", Namespace: es.Namespace, Name: name})
	}
	return refs, nil
}

// upsertSelectorless keeps one of elasti's Services without a selector, whose slices elasti
// writes, as want says: an edit into an ExternalName, external IPs, a selector, other ports or
// other visibility is put back.
func (r *Reconciler) upsertSelectorless(ctx context.Context, want *corev1.Service) error {
	have := &corev1.Service{}
	return r.upsert(ctx, want, have, func() bool {
		return have.Spec.Type == want.Spec.Type && len(have.Spec.Selector) == 0 && have.Spec.ExternalName == "" &&
			len(have.Spec.ExternalIPs) == 0 && equality.Semantic.DeepEqual(have.Spec.Ports, want.Spec.Ports) &&
			have.Annotations[resources.AnnotationExportTo] == want.Annotations[resources.AnnotationExportTo]
	}, func() {
		have.Spec.Type, have.Spec.Selector, have.Spec.ExternalName, have.Spec.ExternalIPs = want.Spec.Type, nil, "", nil
		have.Spec.Ports = want.Spec.Ports
		if e := want.Annotations[resources.AnnotationExportTo]; e != "" {
			metav1.SetMetaDataAnnotation(&have.ObjectMeta, resources.AnnotationExportTo, e)
		} else {
			delete(have.Annotations, resources.AnnotationExportTo)
		}
	})
}

// ensureProxyService keeps the Service that rewritten routes name, and its slices listing the
// resolver pods, in both modes: a route rewritten to it must never name a Service that is not
// there yet, or is already gone.
func (r *Reconciler) ensureProxyService(ctx context.Context, es *v1alpha1.ElastiService, obs *observed) error {
	if obs.public == nil {
		return nil
	}
	if err := r.upsertSelectorless(ctx, resources.MakeProxyService(es, obs.public, r.ResolverPort)); err != nil {
		return err
	}
	if _, err := r.syncSlices(ctx, es, resources.MakeProxySlices(es, obs.public, obs.resolvers, r.ResolverPort), resources.ProxySliceNames(es)); err != nil {
		return err
	}
	return r.upsertDestinationRule(ctx, resources.MakeProxyDestinationRule(es, obs.public, r.ClusterDomain))
}

// upsertDestinationRule makes elasti's DestinationRule want exist with exactly its spec.
func (r *Reconciler) upsertDestinationRule(ctx context.Context, want *networkingv1.DestinationRule) error {
	have := &networkingv1.DestinationRule{}
	return r.upsert(ctx, want, have, func() bool { return proto.Equal(&have.Spec, &want.Spec) }, func() {
		proto.Reset(&have.Spec)
		proto.Merge(&have.Spec, &want.Spec)
	})
}

// scale acts on d.Scale, writing onto the target as read (from): a conflict means it changed
// since, and the next pass decides again.
func (r *Reconciler) scale(ctx context.Context, es *v1alpha1.ElastiService, d decide.Decision, from scaler.Scale, now time.Time) error {
	switch d.Scale {
	case decide.ScaleToZero:
		if err := r.Scaler.PauseAutoscaler(ctx, es.Namespace, es.Spec.Autoscaler); err != nil {
			return err
		}
		if err := r.Scaler.Set(ctx, es.Namespace, es.Spec.ScaleTargetRef, from, 0); err != nil {
			return err
		}
		es.Status.TargetReplicas = 0
		es.Status.LastScaledToZeroTime = &metav1.Time{Time: now}
		r.Metrics.scaleEvents.WithLabelValues(es.Namespace, es.Name, "to_zero").Inc()
		why := "idle"
		if d.Reason == v1alpha1.ReasonWakeFailed {
			why = "idle since a wake that failed"
		}
		r.Recorder.Eventf(es, nil, corev1.EventTypeNormal, v1alpha1.ReasonScaledToZero, "Scale",
			"scaled %s %s to zero after %ds %s", es.Spec.ScaleTargetRef.Kind, es.Spec.ScaleTargetRef.Name, es.Spec.CooldownPeriod, why)
	case decide.ScaleUp:
		if err := r.wake(ctx, es, from); err != nil {
			return err
		}
		es.Status.TargetReplicas = es.Spec.MinTargetReplicas
		es.Status.LastScaledUpTime = &metav1.Time{Time: now}
		r.Metrics.scaleEvents.WithLabelValues(es.Namespace, es.Name, "up").Inc()
		r.Recorder.Eventf(es, nil, corev1.EventTypeNormal, "WokeUp", "Scale",
			"scaled %s %s from zero to %d", es.Spec.ScaleTargetRef.Kind, es.Spec.ScaleTargetRef.Name, es.Spec.MinTargetReplicas)
	}
	return nil
}

// recordWakeFailure notes that the latest wake had no ready endpoint within spec.wakeTimeout,
// and says why in the Ready condition and a Warning event, from the pods' status where they can
// be read. Reading them is best effort: a failure to is logged, never a reason to retry.
func (r *Reconciler) recordWakeFailure(ctx context.Context, es *v1alpha1.ElastiService, obs *observed, now time.Time) {
	var pods []corev1.Pod
	if r.pods != nil && obs.public != nil {
		var list corev1.PodList
		// Bounded: the cause groups pods, so a few dozen say as much as thousands.
		if err := r.pods.List(ctx, &list, client.InNamespace(es.Namespace),
			client.MatchingLabels(obs.public.Spec.Selector), client.Limit(50)); err != nil {
			log.FromContext(ctx).Error(err, "listing the target's pods to say why its wake failed")
		} else {
			pods = list.Items
		}
	}
	cause := decide.WakeFailureCause(obs.scale.Spec, obs.scale.Status, pods)
	timeout := wakeTimeout(es)
	es.Status.LastWakeFailureTime = &metav1.Time{Time: now}
	r.Metrics.wakeFailures.WithLabelValues(es.Namespace, es.Name).Inc()
	r.setCondition(es, v1alpha1.ConditionReady, false, v1alpha1.ReasonWakeFailed,
		fmt.Sprintf("no ready endpoint %s after the wake: %s; %s", timeout, cause, wakeFailedNext(es)))
	r.Recorder.Eventf(es, nil, corev1.EventTypeWarning, v1alpha1.ReasonWakeFailed, "Wake",
		"%s %s had no ready endpoint %s after the wake: %s", es.Spec.ScaleTargetRef.Kind, es.Spec.ScaleTargetRef.Name, timeout, cause)
}

func (r *Reconciler) wake(ctx context.Context, es *v1alpha1.ElastiService, from scaler.Scale) error {
	if err := r.Scaler.ResumeAutoscaler(ctx, es.Namespace, es.Spec.Autoscaler); err != nil {
		return err
	}
	return r.Scaler.Set(ctx, es.Namespace, es.Spec.ScaleTargetRef, from, max(es.Spec.MinTargetReplicas, 1))
}

// deleteAll deletes the objects that the cache holds. Most passes find nothing to delete (no
// IPv6 slice, no replay routes without a DestinationRule), and a delete of what is not there is
// still a request against the client's rate limit. An object created a moment ago and not yet
// in the cache is deleted on the pass its watch event brings.
func (r *Reconciler) deleteAll(ctx context.Context, objs ...client.Object) error {
	for _, o := range objs {
		if err := r.Get(ctx, client.ObjectKeyFromObject(o), o); apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			continue
		}
		if err := r.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
			return fmt.Errorf("deleting %T %s/%s: %w", o, o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

func objectMeta(k types.NamespacedName) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}
}

func hasLabels(o client.Object, want map[string]string) bool {
	for k, v := range want {
		if o.GetLabels()[k] != v {
			return false
		}
	}
	return true
}

func mergeLabels(have, want map[string]string) map[string]string {
	out := make(map[string]string, len(have)+len(want))
	for k, v := range have {
		out[k] = v
	}
	for k, v := range want {
		out[k] = v
	}
	return out
}
