// Package triggers reads activity while a Service is in Serve mode, when elasti is not in the
// path. A prometheus trigger is an instant query compared with its threshold.
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
	// Active is true when any trigger is above its threshold.
	Active bool
	// Err is the first trigger that could not be read; with Err set nothing counts as idle.
	Err error
}

// Evaluate queries every trigger of es.
func Evaluate(ctx context.Context, es *v1alpha1.ElastiService) Result {
	for i, t := range es.Spec.Triggers {
		if t.Type != v1alpha1.TriggerPrometheus {
			return Result{Err: fmt.Errorf("triggers[%d]: unknown type %q", i, t.Type)}
		}
		query := t.Metadata.Query
		if query == "" {
			query = DefaultQuery(es.Spec.Service, es.Namespace)
		}
		value, err := Query(ctx, t.Metadata.ServerAddress, query)
		if err != nil {
			return Result{Err: fmt.Errorf("triggers[%d]: %w", i, err)}
		}
		threshold := 0.0
		if t.Metadata.Threshold != "" {
			if threshold, err = strconv.ParseFloat(t.Metadata.Threshold, 64); err != nil {
				return Result{Err: fmt.Errorf("triggers[%d].metadata.threshold: %w", i, err)}
			}
		}
		if value > threshold {
			return Result{Active: true}
		}
	}
	return Result{}
}

// Query runs an instant query and returns its single number. An empty vector is 0 (no series
// means no traffic); NaN is 0 too, as rate() over no samples gives it.
func Query(ctx context.Context, server, query string) (float64, error) {
	c, err := promapi.NewClient(promapi.Config{Address: server})
	if err != nil {
		return 0, fmt.Errorf("prometheus client for %s: %w", server, err)
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	v, _, _, err := promv1.NewAPI(c).Query(ctx, query, time.Now())
	if err != nil {
		return 0, fmt.Errorf("querying %s: %w", server, err)
	}
	var f float64
	switch r := v.(type) {
	case model.Vector:
		if len(r) == 0 {
			return 0, nil
		}
		if len(r) > 1 {
			return 0, fmt.Errorf("query returned %d series, want one number: aggregate it, for example with sum()", len(r))
		}
		f = float64(r[0].Value)
	case *model.Scalar:
		f = float64(r.Value)
	default:
		return 0, fmt.Errorf("query returned a %s, want a vector or scalar", v.Type())
	}
	if math.IsNaN(f) {
		return 0, nil
	}
	return f, nil
}
