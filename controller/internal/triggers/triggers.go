// Package triggers reads activity while a Service is in Serve mode, when elasti is not in the
// path. A prometheus trigger is an instant query compared with its threshold; elasti asks
// Prometheus for the last time within the cooldown at which that comparison held.
//
// Whoever may write an ElastiService chooses its trigger's server address, and the controller
// dials it from inside the cluster. An AllowList lets the operator restrict those addresses, and
// a Result tells the ElastiService's status only that a query failed, not how, so that the
// controller cannot be used to probe what answers at an address.
package triggers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/elasti-dev/elasti/api/v1alpha1"
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

// Reasons of the TriggersHealthy condition when a trigger could not be read.
const (
	ReasonInvalidTrigger    = "InvalidTrigger"
	ReasonAddressNotAllowed = "AddressNotAllowed"
	ReasonQueryFailed       = "QueryFailed"
)

// Result is what the triggers said.
type Result struct {
	// LastActive is the latest time in the window at which any trigger was above its
	// threshold; zero if none was.
	LastActive time.Time
	// Err is the first trigger that could not be read, with what its server answered, for the
	// controller's log; with Err set nothing counts as idle.
	Err error
	// Reason and Message, set with Err, describe it for the TriggersHealthy condition. For a
	// failed query they say only which trigger failed: the same words whether the server
	// refused the connection, timed out, or answered an error or something not Prometheus.
	Reason, Message string
}

// failed is the Result for trigger i that could not be read.
func failed(i int, reason, message string, err error) Result {
	return Result{Err: fmt.Errorf("spec.triggers[%d]: %w", i, err), Reason: reason, Message: message}
}

// queryFailed is the Result for a query to trigger i's server that failed.
func queryFailed(i int, t v1alpha1.Trigger, err error) Result {
	return failed(i, ReasonQueryFailed, fmt.Sprintf("trigger %d (%s) query failed; see the controller's log", i, t.Type), err)
}

// Evaluator reads triggers, querying only the servers its AllowList admits.
type Evaluator struct {
	Allowed AllowList
}

// Evaluate reads triggers with an Evaluator that admits any server.
func Evaluate(ctx context.Context, es *v1alpha1.ElastiService, window time.Duration) Result {
	return (&Evaluator{}).Evaluate(ctx, es, window)
}

// Evaluate asks every trigger of es when it was last above its threshold within the window
// that ends now. One subquery covers the whole window, so the controller asks only when the
// cooldown would expire, never on a polling timer, and steady low traffic that a short rate()
// window would miss between polls is still seen.
func (e *Evaluator) Evaluate(ctx context.Context, es *v1alpha1.ElastiService, window time.Duration) Result {
	var res Result
	for i, t := range es.Spec.Triggers {
		if t.Type != v1alpha1.TriggerPrometheus {
			return failed(i, ReasonInvalidTrigger, fmt.Sprintf("spec.triggers[%d].type %q is not a known trigger type", i, t.Type),
				fmt.Errorf("unknown type %q", t.Type))
		}
		if !e.Allowed.Allows(t.Metadata.ServerAddress) {
			return failed(i, ReasonAddressNotAllowed,
				fmt.Sprintf("spec.triggers[%d].metadata.serverAddress is not among the controller's allowed trigger addresses, so elasti does not query it", i),
				fmt.Errorf("server address %q is not allowed by --trigger-allowed-addresses", t.Metadata.ServerAddress))
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
			return failed(i, ReasonInvalidTrigger, fmt.Sprintf("spec.triggers[%d].metadata.threshold is not a number", i), err)
		}
		// The window's subquery sees only its aligned steps, so activity that began after the
		// latest step would be missed: ask about now first, and about the window only if idle.
		now := time.Now()
		_, active, err := e.query(ctx, t.Metadata.ServerAddress, fmt.Sprintf("(%s) > %s", query, threshold), now)
		if err != nil {
			return queryFailed(i, t, err)
		}
		if active {
			res.LastActive = now
			continue
		}
		v, ok, err := e.query(ctx, t.Metadata.ServerAddress, LastActiveQuery(query, threshold, window), now)
		if err != nil {
			return queryFailed(i, t, err)
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

// query is Query through a client that follows a redirect only to an allowed address.
func (e *Evaluator) query(ctx context.Context, server, query string, at time.Time) (float64, bool, error) {
	hc := &http.Client{Transport: promapi.DefaultRoundTripper, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if !e.Allowed.Allows(req.URL.String()) {
			return fmt.Errorf("redirected to %s, which is not allowed by --trigger-allowed-addresses", req.URL.Redacted())
		}
		return nil
	}}
	return Query(ctx, promapi.Config{Address: server, Client: hc}, query, at)
}

// Query runs an instant query at time at on the server cfg names and returns its single number;
// ok is false for an empty result. NaN counts as empty, as rate() over no samples gives it.
func Query(ctx context.Context, cfg promapi.Config, query string, at time.Time) (value float64, ok bool, err error) {
	server := cfg.Address
	c, err := promapi.NewClient(cfg)
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

// AllowList is the operator's list of servers that triggers may query (the controller's
// --trigger-allowed-addresses). An empty list allows any http or https address.
type AllowList []allowed

// allowed is one entry: a URL prefix (scheme, host, port and a leading path) or a host with an
// optional port, where a leading "*." stands for any subdomain.
type allowed struct {
	scheme, host, port, path string
	wildcard                 bool
}

// ParseAllowList reads a comma-separated list of entries such as
// "http://prometheus.monitoring:9090", "https://thanos.example/prometheus",
// "prometheus.monitoring:9090" or "*.monitoring.svc.cluster.local".
func ParseAllowList(list string) (AllowList, error) {
	var l AllowList
	for entry := range strings.SplitSeq(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		a, err := parseAllowed(entry)
		if err != nil {
			return nil, fmt.Errorf("allowed trigger address %q: %w", entry, err)
		}
		l = append(l, a)
	}
	return l, nil
}

func parseAllowed(entry string) (allowed, error) {
	if strings.Contains(entry, "://") {
		u, err := url.Parse(entry)
		if err != nil {
			return allowed{}, err
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return allowed{}, errors.New("scheme must be http or https")
		}
		if u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return allowed{}, errors.New("want scheme://host[:port][/path], with no user, query or fragment")
		}
		return allowed{scheme: u.Scheme, host: canonicalHost(u.Hostname()), port: portOf(u), path: strings.TrimSuffix(u.Path, "/")}, nil
	}
	host, port := entry, ""
	if h, p, err := net.SplitHostPort(entry); err == nil {
		host, port = h, p
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return allowed{}, errors.New("port must be a number from 1 to 65535")
		}
	}
	a := allowed{port: port}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		a.wildcard, host = true, rest
	}
	if host == "" || strings.ContainsAny(host, "/*?#@[] ") {
		return allowed{}, errors.New(`want a URL, or host[:port] where host may begin with "*."`)
	}
	a.host = canonicalHost(host)
	return a, nil
}

// Allows reports whether a trigger may query address. With entries, address must be an http or
// https URL that one of them matches: a URL entry by scheme, host, port and path prefix (whole
// segments, after resolving dot segments), a host entry by host (or subdomain) and port.
func (l AllowList) Allows(address string) bool {
	if len(l) == 0 {
		return true
	}
	u, err := url.Parse(address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return false
	}
	host, port := canonicalHost(u.Hostname()), portOf(u)
	p := path.Clean("/" + u.Path)
	for _, a := range l {
		if a.port != "" && a.port != port {
			continue
		}
		if a.scheme != "" {
			if a.scheme == u.Scheme && a.host == host && (a.path == "" || p == a.path || strings.HasPrefix(p, a.path+"/")) {
				return true
			}
			continue
		}
		if (!a.wildcard && host == a.host) || (a.wildcard && strings.HasSuffix(host, "."+a.host)) {
			return true
		}
	}
	return false
}

// canonicalHost lower-cases a host name and drops a trailing dot, so that variants of one name
// compare equal.
func canonicalHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// portOf is u's port, or its scheme's default.
func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}
