package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/namespaces"
)

// uninstallPoll is how often uninstall looks at what is left; a variable for the tests.
var uninstallPoll = time.Second

// runUninstall is elasti-controller --uninstall, which the chart's pre-delete hook runs while the
// controller is still installed.
func runUninstall(o options, log logr.Logger) error {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	watched, err := namespaces.Parse(o.watchNamespaces)
	if err != nil {
		return fmt.Errorf("--watch-namespaces: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := uninstall(ctx, c, watched, o.uninstallTimeout, log); err != nil {
		return err
	}
	// Make-before-break once more: kube-proxy and sidecars follow the restored routes with a
	// lag, and helm deletes the resolver, which serves whatever still reaches it, only once this
	// hook has ended.
	log.Info("letting kube-proxy and sidecars follow the restored routes before the resolver goes", "settle", o.uninstallSettle)
	select {
	case <-ctx.Done():
	case <-time.After(o.uninstallSettle):
	}
	return nil
}

// uninstall deletes every ElastiService in namespaces (all namespaces when empty) and waits until
// they are gone, that is until the running controller's finalizer has woken each target at zero
// and restored its routes. Once the controller is uninstalled nobody runs the finalizers, and a
// Service at zero would keep routing to a resolver that no longer exists.
//
// It fails when timeout passes first, naming what is left: helm then stops the uninstall with
// the controller still running, rather than strand a workload at zero.
func uninstall(ctx context.Context, c client.Client, namespaces []string, timeout time.Duration, log logr.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if len(namespaces) == 0 {
		namespaces = []string{""} // all
	}
	left := func() ([]v1alpha1.ElastiService, error) {
		var out []v1alpha1.ElastiService
		for _, ns := range namespaces {
			var list v1alpha1.ElastiServiceList
			err := c.List(ctx, &list, client.InNamespace(ns))
			switch {
			case meta.IsNoMatchError(err):
				return nil, nil // no CRD, so no ElastiService
			case err != nil:
				return nil, fmt.Errorf("listing ElastiServices: %w", err)
			}
			out = append(out, list.Items...)
		}
		return out, nil
	}
	all, err := left()
	if err != nil {
		return err
	}
	for i := range all {
		es := &all[i]
		if err := c.Delete(ctx, es); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting ElastiService %s/%s: %w", es.Namespace, es.Name, err)
		}
	}
	log.Info("deleted ElastiServices; waiting for their finalizers", "count", len(all), "timeout", timeout)

	start := time.Now()
	tick := time.NewTicker(uninstallPoll)
	defer tick.Stop()
	var lastLog time.Time
	for {
		remaining, err := left()
		if err != nil && ctx.Err() == nil {
			log.Error(err, "retrying")
		}
		if err == nil && len(remaining) == 0 {
			log.Info("every ElastiService is gone: targets restored, routes back on the targets", "took", time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		if err == nil && time.Since(lastLog) >= 10*time.Second {
			log.Info("waiting", "left", describe(remaining))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("timed out after %s waiting for ElastiServices' finalizers: %w", timeout, err)
			}
			return fmt.Errorf("timed out after %s waiting for the finalizers of %d ElastiServices (is the controller running?): %s",
				timeout, len(remaining), strings.Join(describe(remaining), "; "))
		case <-tick.C:
		}
	}
}

// describe names each ElastiService with its Ready condition, which says what the finalizer waits for.
func describe(items []v1alpha1.ElastiService) []string {
	out := make([]string, 0, len(items))
	for _, es := range items {
		s := es.Namespace + "/" + es.Name
		if c := meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady); c != nil {
			s += fmt.Sprintf(" (%s: %s)", c.Reason, c.Message)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
