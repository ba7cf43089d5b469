// Package triggers reads activity while a Service is in Serve mode, when elasti is not in the
// path. A prometheus trigger is an instant query compared with its threshold; elasti asks
// Prometheus for the last time within the cooldown at which that comparison held.
package triggers

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
)

// Timeout bounds one query, so an unreachable server cannot stall a reconcile.
const Timeout = 5 * time.Second

// DefaultQuery is the rate of Istio's standard request metric at the Service's own pods, used
// when a trigger names only a server. Requests that the resolver replays go to the private
// Service and are not counted here; the resolver reports those itself.
func DefaultQuery(service, namespace string) string {
	return fmt.Sprintf(`sum(rate(istio_requests_total{reporter="destination",destination_service_namespace=%q,destination_service_name=%q}[1m])) or vector(0)`,
		namespace, service)
}

// Result is what the triggers said.
type Result struct {
	// LastActive is the latest time in the window at which any trigger was above its
	// threshold; zero if none was.
	LastActive time.Time
	// Err is the first trigger that could not be read; with Err set nothing counts as idle.
	Err error
}

// Evaluate asks every trigger of es when it was last above its threshold within the window
// that ends now. One subquery covers the whole window, so the controller asks only when the
// cooldown would expire, never on a polling timer, and steady low traffic that a short rate()
// window would miss between polls is still seen.
func Evaluate(ctx context.Context, es *v1alpha1.ElastiService, window time.Duration) Result {
	var res Result
	for i, t := range es.Spec.Triggers {
		if t.Type != v1alpha1.TriggerPrometheus {
			return Result{Err: fmt.Errorf("triggers[%d]: unknown type %q", i, t.Type)}
		}
		query := t.Metadata.Query
		if query == "" {
			query = DefaultQuery(es.Spec.Service, es.Namespace)
		}
		threshold := t.Metadata.Threshold
		if threshold == "" {
			threshold = "0"
		}
		if _, err := strconv.ParseFloat(threshold, 64); err != nil {
			return Result{Err: fmt.Errorf("triggers[%d].metadata.threshold: %w", i, err)}
		}
		// The window's subquery sees only its aligned steps, so activity that began after the
		// latest step would be missed: ask about now first, and about the window only if idle.
		now := time.Now()
		_, active, err := Query(ctx, t.Metadata.ServerAddress, fmt.Sprintf("(%s) > %s", query, threshold), now)
		if err != nil {
			return Result{Err: fmt.Errorf("triggers[%d]: %w", i, err)}
		}
		if active {
			res.LastActive = now
			continue
		}
		v, ok, err := Query(ctx, t.Metadata.ServerAddress, LastActiveQuery(query, threshold, window), now)
		if err != nil {
			return Result{Err: fmt.Errorf("triggers[%d]: %w", i, err)}
		}
		if ok {
			if last := time.Unix(0, int64(v*float64(time.Second))); last.After(res.LastActive) {
				res.LastActive = last
			}
		}
	}
	return res
}

// LastActiveQuery wraps query so that Prometheus answers with the latest evaluation time within
// window at which it was above threshold, or with nothing. The step, a hundredth of the window
// between 5 s and 1 min, is the resolution of that time.
func LastActiveQuery(query, threshold string, window time.Duration) string {
	step := min(max(window/100, 5*time.Second), time.Minute)
	return fmt.Sprintf("max_over_time(timestamp((%s) > %s)[%ds:%ds])",
		query, threshold, int64(max(window, step)/time.Second), int64(step/time.Second))
}

// Query runs an instant query at time at and returns its single number; ok is false for an
// empty result. NaN counts as empty, as rate() over no samples gives it.
func Query(ctx context.Context, server, query string, at time.Time) (value float64, ok bool, err error) {
	c, err := promapi.NewClient(promapi.Config{Address: server})
	if err != nil {
		return 0, false, fmt.Errorf("prometheus client for %s: %w", server, err)
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	v, _, _, err := promv1.NewAPI(c).Query(ctx, query, at)
	if err != nil {
		return 0, false, fmt.Errorf("querying %s: %w", server, err)
	}
	var f float64
	switch r := v.(type) {
	case model.Vector:
		if len(r) == 0 {
			return 0, false, nil
		}
		if len(r) > 1 {
			return 0, false, fmt.Errorf("query returned %d series, want one number: aggregate it, for example with sum()", len(r))
		}
		f = float64(r[0].Value)
	case *model.Scalar:
		f = float64(r.Value)
	default:
		return 0, false, fmt.Errorf("query returned a %s, want a vector or scalar", v.Type())
	}
	if math.IsNaN(f) {
		return 0, false, nil
	}
	return f, true, nil
}
