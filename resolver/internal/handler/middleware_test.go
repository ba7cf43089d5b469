package handler

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/routesig"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
	"github.com/elasti-dev/elasti/resolver/internal/proxy"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/throttler"
)

func newRegistry() *registry.Registry {
	r := registry.New(registry.Options{Domain: "cluster.local", Grace: registry.DefaultGrace})
	for _, e := range []struct {
		ns, name, svc string
		ports         []int32
	}{{"shop", "app", "app", []int32{80, 8080, 9000}}, {"shop", "db", "db", []int32{5432}}, {"bank", "db", "db", []int32{5432}}} {
		r.UpsertElastiService(&v1alpha1.ElastiService{
			ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: e.name},
			Spec:       v1alpha1.ElastiServiceSpec{Service: e.svc},
		})
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: e.svc + "-elasti-private"}}
		for _, p := range e.ports {
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "p" + strconv.Itoa(int(p)), Port: p})
		}
		r.UpsertService(svc)
	}
	return r
}

// testKey is the route key of the handler tests; sign makes the headers a rewritten route sets.
var testKey = func() *routesig.Key {
	k := &routesig.Key{}
	if err := k.Set([]byte("0123456789abcdef0123456789abcdef")); err != nil {
		panic(err)
	}
	return k
}()

func sign(target, port, subset string) map[string]string {
	h := map[string]string{v1alpha1.HeaderElastiService: target, v1alpha1.HeaderSignature: testKey.Signer().Sign(target, port, subset)}
	if port != "" {
		h[v1alpha1.HeaderPort] = port
	}
	if subset != "" {
		h[v1alpha1.HeaderSubset] = subset
	}
	return h
}

// with returns h plus k: v.
func with(h map[string]string, k, v string) map[string]string {
	h[k] = v
	return h
}

// seen records the request that reached the inner handler.
type seen struct {
	req    *Request
	header http.Header
}

func (s *seen) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.req, s.header = RequestFrom(r.Context()), r.Header.Clone()
	w.WriteHeader(http.StatusNoContent)
}

func TestRoute(t *testing.T) {
	tests := map[string]struct {
		method     string
		host       string
		header     map[string]string
		wantCode   int
		wantTarget string
		wantPort   int32
		wantSubset string
		wantBody   string
		unsigned   bool // the elasti headers were there and ignored
	}{
		"signed target": {
			host: "app.shop", header: with(sign("shop/app", "8080", "v2"), v1alpha1.HeaderRestoreKey, "k"),
			wantCode: 204, wantTarget: "shop/app", wantPort: 8080, wantSubset: "v2",
		},
		"signed target, external host":  {host: "shop.example.com", header: sign("shop/app", "", ""), wantCode: 204, wantTarget: "shop/app", wantPort: 80},
		"signed target, port from host": {host: "app.shop:9000", header: sign("shop/app", "", ""), wantCode: 204, wantTarget: "shop/app", wantPort: 9000},
		"signed target, route port not on the Service": {
			host: "x", header: sign("shop/app", "6379", ""), wantCode: 404, wantBody: "has no port 6379",
		},
		"signed target, host port not on the Service": {
			host: "app.shop:6379", header: sign("shop/app", "", ""), wantCode: 404, wantBody: "has no port 6379",
		},
		"signed target, bad port": {host: "x", header: sign("shop/app", "http", ""), wantCode: 400},
		// Routes that the previous release rewrote carry the key under the header's old name.
		"signed target, previous release's header": {
			host: "x", header: oldHeader(sign("shop/app", "8080", "v2")), wantCode: 204, wantTarget: "shop/app", wantPort: 8080, wantSubset: "v2",
		},
		"signed target, the header's new name wins": {
			host: "evil.example", header: with(sign("shop/app", "", ""), v1alpha1.HeaderElastiServiceOld, "bank/db"),
			wantCode: 204, wantTarget: "shop/app", wantPort: 80,
		},
		// Forgeries: each is ignored, and the Host decides.
		"forged target, external host": {
			host: "evil.example", header: map[string]string{v1alpha1.HeaderElastiService: "bank/db"}, wantCode: 404, unsigned: true,
		},
		"forged target, other tenant's host": {
			host: "app.shop", header: map[string]string{v1alpha1.HeaderElastiService: "bank/db", v1alpha1.HeaderPort: "5432"},
			wantCode: 204, wantTarget: "shop/app", wantPort: 80, unsigned: true,
		},
		"signature of another target": {
			host: "evil.example", header: with(sign("shop/app", "", ""), v1alpha1.HeaderElastiService, "bank/db"), wantCode: 404, unsigned: true,
		},
		"signed target, forged subset": {
			host: "app.shop", header: with(sign("shop/app", "", ""), v1alpha1.HeaderSubset, "internal-admin"),
			wantCode: 204, wantTarget: "shop/app", wantPort: 80, unsigned: true,
		},
		"signed target, forged port": {
			host: "app.shop", header: with(sign("shop/app", "8080", ""), v1alpha1.HeaderPort, "9000"),
			wantCode: 204, wantTarget: "shop/app", wantPort: 80, unsigned: true,
		},
		"subset without a target": {
			host: "app.shop", header: map[string]string{v1alpha1.HeaderSubset: "internal-admin"}, wantCode: 204, wantTarget: "shop/app", wantPort: 80,
		},
		"unknown target":               {host: "x", header: sign("shop/nope", "", ""), wantCode: 404, unsigned: true},
		"malformed target":             {host: "x", header: map[string]string{v1alpha1.HeaderElastiService: "nope"}, wantCode: 404, unsigned: true},
		"host short":                   {host: "app", wantCode: 204, wantTarget: "shop/app", wantPort: 80},
		"host fqdn with port":          {host: "db.bank.svc.cluster.local:5432", wantCode: 204, wantTarget: "bank/db", wantPort: 5432},
		"host port not on the Service": {host: "app.shop:6379", wantCode: 404, wantBody: "has no port 6379"},
		"host ambiguous":               {host: "db", wantCode: 421, wantBody: "db.<namespace>"},
		"host unknown":                 {host: "example.com", wantCode: 404, wantBody: "no ElastiService serves host"},
		"connect":                      {method: http.MethodConnect, host: "app.shop:80", wantCode: 405},
		"connect, signed":              {method: http.MethodConnect, host: "app.shop:80", header: sign("shop/app", "", ""), wantCode: 405},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			inner := &seen{}
			unknown, unsigned := 0, 0
			h := &Route{Next: inner, Registry: newRegistry(), Signatures: testKey, Domain: "cluster.local",
				Unknown: func() { unknown++ }, Unsigned: func() { unsigned++ }}
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			r := httptest.NewRequest(method, "/", nil)
			r.Host = tc.host
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			r.Header.Set("X-Other", "kept")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if got := w.Code; got != tc.wantCode {
				t.Fatalf("code = %d, want %d (body %q)", got, tc.wantCode, w.Body.String())
			}
			if !strings.Contains(w.Body.String(), tc.wantBody) {
				t.Errorf("body = %q, want it to contain %q", w.Body.String(), tc.wantBody)
			}
			if (unsigned == 1) != tc.unsigned {
				t.Errorf("unsigned count = %d, want %v", unsigned, tc.unsigned)
			}
			if tc.wantTarget == "" {
				if tc.method == http.MethodConnect {
					if inner.req != nil {
						t.Error("CONNECT forwarded")
					}
					return
				}
				if inner.req != nil || unknown != 1 {
					t.Errorf("forwarded = %v, unknown count = %d; want not forwarded and counted once", inner.req != nil, unknown)
				}
				return
			}
			if got := inner.req.Entry.Key(); got != tc.wantTarget {
				t.Errorf("target = %s, want %s", got, tc.wantTarget)
			}
			if got := inner.req.Port.Port; got != tc.wantPort {
				t.Errorf("port = %d, want %d", got, tc.wantPort)
			}
			if got := inner.req.Subset; got != tc.wantSubset {
				t.Errorf("subset = %q, want %q", got, tc.wantSubset)
			}
			for k := range inner.header {
				if strings.HasPrefix(k, "X-Elasti-") {
					t.Errorf("header %s reached the next handler", k)
				}
			}
			if got := inner.header.Get("X-Other"); got != "kept" {
				t.Errorf("X-Other = %q, want kept", got)
			}
		})
	}
}

// oldHeader moves the ElastiService key of signed route headers to the previous release's name.
func oldHeader(h map[string]string) map[string]string {
	h[v1alpha1.HeaderElastiServiceOld] = h[v1alpha1.HeaderElastiService]
	delete(h, v1alpha1.HeaderElastiService)
	return h
}

func TestStripHeaders(t *testing.T) {
	h := http.Header{"X-Elasti-Service": {"a/b"}, "X-Elasti-Target": {"a/b"}, "x-elasti-custom": {"1"}, "X-Elastic": {"keep"}, "Host": {"h"},
		"X-Envoy-Max-Retries": {"50"}, "x-envoy-upstream-rq-timeout-ms": {"1"}, "X-Envoyish": {"keep"}}
	StripHeaders(h)
	if len(h) != 3 || h.Get("X-Elastic") != "keep" || h.Get("X-Envoyish") != "keep" {
		t.Errorf("after StripHeaders: %v, want only X-Elastic, X-Envoyish and Host", h)
	}
}

type gate bool

func (g gate) Ready(types.NamespacedName) bool { return bool(g) }

func withRequest(r *http.Request, t *registry.Entry) (*http.Request, *Request) {
	req := &Request{Entry: t, Port: registry.Port{Name: "http", Port: 80}}
	return r.WithContext(WithRequest(r.Context(), req)), req
}

func TestProbe(t *testing.T) {
	target := &registry.Entry{Namespace: "shop", Name: "app", Probes: []v1alpha1.ProbeResponse{
		{Path: "/healthz", Method: "GET", Body: "ok"},
		{PathPrefix: "/status/", StatusCode: 204, Headers: []v1alpha1.HeaderMatch{{Name: "x-probe"}}},
		{Path: "/ready", Headers: []v1alpha1.HeaderMatch{{Name: "User-Agent", Value: "kube-probe"}}, ContentType: "application/json", Body: "{}"},
	}}
	tests := map[string]struct {
		ready    bool
		method   string
		path     string
		header   map[string]string
		wantCode int
		wantBody string
		wantCT   string
	}{
		"exact path":              {method: "GET", path: "/healthz", wantCode: 200, wantBody: "ok", wantCT: "text/plain; charset=utf-8"},
		"exact path wrong method": {method: "POST", path: "/healthz", wantCode: 418},
		"prefix with header":      {method: "GET", path: "/status/x", header: map[string]string{"X-Probe": ""}, wantCode: 204},
		"prefix without header":   {method: "GET", path: "/status/x", wantCode: 418},
		"header value":            {method: "GET", path: "/ready", header: map[string]string{"User-Agent": "kube-probe"}, wantCode: 200, wantBody: "{}", wantCT: "application/json"},
		"header value mismatch":   {method: "GET", path: "/ready", header: map[string]string{"User-Agent": "curl"}, wantCode: 418},
		"no match":                {method: "GET", path: "/", wantCode: 418},
		"ready target forwards":   {ready: true, method: "GET", path: "/healthz", wantCode: 418},
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := &Probe{Next: next, Gate: gate(tc.ready)}
			r, req := withRequest(httptest.NewRequest(tc.method, tc.path, nil), target)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantCode || w.Body.String() != tc.wantBody {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Body.String(), tc.wantCode, tc.wantBody)
			}
			if got := w.Header().Get("Content-Type"); tc.wantCT != "" && got != tc.wantCT {
				t.Errorf("Content-Type = %q, want %q", got, tc.wantCT)
			}
			if tc.wantCode != 418 && req.Outcome != metrics.OutcomeProbe {
				t.Errorf("outcome = %q, want %q", req.Outcome, metrics.OutcomeProbe)
			}
		})
	}
}

// fakeThrottler answers Ready and Wait with fixed results.
type fakeThrottler struct {
	ready bool
	held  bool
	err   error
	// got records the limits Wait was called with.
	maxPending int
	timeout    time.Duration
}

func (f *fakeThrottler) Wait(_ context.Context, _ types.NamespacedName, maxPending int, timeout time.Duration, onHold func()) (bool, error) {
	f.maxPending, f.timeout = maxPending, timeout
	if f.held && onHold != nil {
		onHold()
	}
	return f.held, f.err
}
func (f *fakeThrottler) Pending(types.NamespacedName) int { return 0 }
func (f *fakeThrottler) Ready(types.NamespacedName) bool  { return f.ready }

type fakeActivity struct{ held, active int }

func (f *fakeActivity) Held(types.NamespacedName, func() bool) { f.held++ }
func (f *fakeActivity) Active(types.NamespacedName)            { f.active++ }

func TestHold(t *testing.T) {
	tests := map[string]struct {
		thr            fakeThrottler
		target         registry.Entry
		tombs          tombstones
		wantCode       int
		wantOutcome    string
		wantRetry      bool
		wantHeld       int
		wantActive     int
		wantMaxPending int
		wantTimeout    time.Duration
		noMemory       bool
	}{
		// Ready passes without calling Wait, so no limits are recorded.
		"ready fast path":    {thr: fakeThrottler{ready: true}, wantCode: 204, wantOutcome: metrics.OutcomePassed, wantActive: 1},
		"ready passes":       {thr: fakeThrottler{}, wantCode: 204, wantOutcome: metrics.OutcomePassed, wantActive: 1, wantMaxPending: 5, wantTimeout: time.Minute},
		"held then replayed": {thr: fakeThrottler{held: true}, wantCode: 204, wantOutcome: metrics.OutcomeReplayed, wantHeld: 1, wantMaxPending: 5, wantTimeout: time.Minute},
		"target queue full":  {thr: fakeThrottler{err: throttler.ErrQueueFull}, wantCode: 503, wantRetry: true, wantOutcome: metrics.OutcomeQueueFull, wantMaxPending: 5, wantTimeout: time.Minute},
		"global queue full":  {thr: fakeThrottler{err: throttler.ErrTotalFull}, wantCode: 503, wantRetry: true, wantOutcome: metrics.OutcomeQueueFull, wantMaxPending: 5, wantTimeout: time.Minute},
		"timeout":            {thr: fakeThrottler{held: true, err: throttler.ErrTimeout}, wantCode: 504, wantOutcome: metrics.OutcomeTimeout, wantHeld: 1, wantMaxPending: 5, wantTimeout: time.Minute},
		"target deleted":     {thr: fakeThrottler{held: true, err: throttler.ErrGone}, wantCode: 503, wantRetry: true, wantOutcome: metrics.OutcomeGone, wantHeld: 1, wantMaxPending: 5, wantTimeout: time.Minute},
		"tombstone passes without waiting or a signal": {target: registry.Entry{Gone: true}, wantCode: 204, wantOutcome: metrics.OutcomeGoneForwarded},
		"deleted while held goes to the tombstone": {thr: fakeThrottler{held: true, err: throttler.ErrGone}, tombs: tombstones{"shop/app": {Gone: true}},
			wantCode: 204, wantOutcome: metrics.OutcomeGoneForwarded, wantHeld: 1, wantMaxPending: 5, wantTimeout: time.Minute},
		"caller left":          {thr: fakeThrottler{held: true, err: context.Canceled}, wantCode: 499, wantOutcome: metrics.OutcomeCancelled, wantHeld: 1, wantMaxPending: 5, wantTimeout: time.Minute},
		"spec.queue overrides": {thr: fakeThrottler{}, target: registry.Entry{MaxPending: 2, HoldTimeout: time.Second}, wantCode: 204, wantOutcome: metrics.OutcomePassed, wantActive: 1, wantMaxPending: 2, wantTimeout: time.Second},
		// The operator's limit caps what a tenant asks for.
		"spec.queue above the limit": {thr: fakeThrottler{}, target: registry.Entry{MaxPending: 100000}, wantCode: 204, wantOutcome: metrics.OutcomePassed, wantActive: 1, wantMaxPending: 50, wantTimeout: time.Minute},
		"namespace share full":       {thr: fakeThrottler{err: throttler.ErrNamespaceFull}, wantCode: 503, wantRetry: true, wantOutcome: metrics.OutcomeQueueFull, wantMaxPending: 5, wantTimeout: time.Minute},
		// Near the memory limit nothing new is held, and the throttler is never asked.
		"no memory for a hold": {thr: fakeThrottler{held: true}, noMemory: true, wantCode: 503, wantRetry: true, wantOutcome: metrics.OutcomeQueueFull},
		// Answered, never replayed: past the drain timeout the resolver stops before the target
		// could be ready.
		"drain timeout while held": {thr: fakeThrottler{held: true, err: throttler.ErrDraining}, wantCode: 503, wantRetry: true, wantOutcome: metrics.OutcomeDraining, wantHeld: 1, wantMaxPending: 5, wantTimeout: time.Minute},
		"refused while draining":   {thr: fakeThrottler{err: throttler.ErrDraining}, wantCode: 503, wantRetry: true, wantOutcome: metrics.OutcomeDraining, wantMaxPending: 5, wantTimeout: time.Minute},
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			activity := &fakeActivity{}
			thr := tc.thr
			h := &Hold{Next: next, Throttler: &thr, Activity: activity, Tombstones: tc.tombs, MaxPending: 5, MaxPendingLimit: 50,
				HoldTimeout: time.Minute, Admit: func() bool { return !tc.noMemory }, Metrics: metrics.New()}
			target := tc.target
			target.Namespace, target.Name = "shop", "app"
			r, req := withRequest(httptest.NewRequest("GET", "/", nil), &target)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantCode || req.Outcome != tc.wantOutcome {
				t.Errorf("got %d %s, want %d %s", w.Code, req.Outcome, tc.wantCode, tc.wantOutcome)
			}
			if (tc.wantOutcome == metrics.OutcomeGone || tc.wantOutcome == metrics.OutcomeDraining) && w.Header().Get("Connection") != "close" {
				t.Errorf("503 (%s) does not close the connection", tc.wantOutcome)
			}
			if got := w.Header().Get("Retry-After") != ""; got != tc.wantRetry {
				t.Errorf("Retry-After present = %v, want %v", got, tc.wantRetry)
			}
			if activity.held != tc.wantHeld || activity.active != tc.wantActive {
				t.Errorf("held/active signals = %d/%d, want %d/%d", activity.held, activity.active, tc.wantHeld, tc.wantActive)
			}
			if thr.maxPending != tc.wantMaxPending || thr.timeout != tc.wantTimeout {
				t.Errorf("limits = %d, %v; want %d, %v", thr.maxPending, thr.timeout, tc.wantMaxPending, tc.wantTimeout)
			}
		})
	}
}

// A held request's answer says how long it waited when ColdStartHeader is set, and its cold
// start is observed once, by outcome; a request that was never held has neither.
func TestColdStart(t *testing.T) {
	tests := map[string]struct {
		thr         fakeThrottler
		header      bool
		wantHeader  bool
		wantOutcome string // observed; "" for none
	}{
		"replayed, header on":  {thr: fakeThrottler{held: true}, header: true, wantHeader: true, wantOutcome: metrics.OutcomeReplayed},
		"replayed, header off": {thr: fakeThrottler{held: true}, wantOutcome: metrics.OutcomeReplayed},
		"timed out while held": {thr: fakeThrottler{held: true, err: throttler.ErrTimeout}, header: true, wantOutcome: metrics.OutcomeTimeout},
		"passed, never held":   {thr: fakeThrottler{ready: true}, header: true},
		"queue full, not held": {thr: fakeThrottler{err: throttler.ErrQueueFull}, header: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := metrics.New()
			thr := tc.thr
			next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
			h := &Hold{Next: next, Throttler: &thr, Activity: &fakeActivity{}, MaxPending: 5, HoldTimeout: time.Minute,
				ColdStartHeader: tc.header, Metrics: m}
			target := registry.Entry{Namespace: "shop", Name: "app"}
			r, _ := withRequest(httptest.NewRequest("GET", "/", nil), &target)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			got := w.Result().Header.Get(HeaderColdStart)
			if tc.wantHeader != (got != "") {
				t.Errorf("%s = %q, want present %v", HeaderColdStart, got, tc.wantHeader)
			}
			if got != "" {
				if d, err := time.ParseDuration(got); err != nil || d < 0 || d > time.Minute {
					t.Errorf("%s = %q, want a duration such as 0.001s", HeaderColdStart, got)
				}
			}
			n := testutil.CollectAndCount(m.ColdStart)
			if tc.wantOutcome == "" {
				if n != 0 {
					t.Errorf("%d cold starts observed, want none", n)
				}
				return
			}
			h2, err := m.ColdStart.GetMetricWithLabelValues("shop", "app", tc.wantOutcome)
			if err != nil {
				t.Fatal(err)
			}
			pb := &dto.Metric{}
			if err := h2.(prometheus.Metric).Write(pb); err != nil {
				t.Fatal(err)
			}
			if c := pb.GetHistogram().GetSampleCount(); n != 1 || c != 1 {
				t.Errorf("cold starts: %d series, %d samples for %s; want one of each", n, c, tc.wantOutcome)
			}
		})
	}
}

// endpoints has one ready address, or none; probedOnly when only the controller's probe passed it.
type endpoints struct {
	addr       string
	probedOnly bool
}

func (e endpoints) Pick(types.NamespacedName, string) (string, bool) { return e.addr, e.addr != "" }
func (e endpoints) ProbedOnly(types.NamespacedName) bool             { return e.probedOnly }

func TestForward(t *testing.T) {
	tests := map[string]struct {
		mode      string
		endpoints endpoints
		wantCode  int
		want      proxy.Upstream
	}{
		"service": {mode: UpstreamService, endpoints: endpoints{addr: "10.0.0.1:8080"}, wantCode: 204, want: proxy.Upstream{
			Addr: "app-elasti-private.shop.svc.cluster.local:80", Host: "app-elasti-private.shop.svc.cluster.local:80", Subset: "v1"}},
		// istiod and kube-proxy would pick the kubelet's not-ready entry for the pod on the
		// private Service at random, so a probed pod is reached through its own Service.
		"service, only probed pods ready": {mode: UpstreamService, endpoints: endpoints{addr: "10.0.0.1:8080", probedOnly: true}, wantCode: 204, want: proxy.Upstream{
			Addr: "app-elasti-probed.shop.svc.cluster.local:80", Host: "app-elasti-probed.shop.svc.cluster.local:80"}},
		"pods":                         {mode: UpstreamPods, endpoints: endpoints{addr: "10.0.0.1:8080"}, wantCode: 204, want: proxy.Upstream{Addr: "10.0.0.1:8080"}},
		"pods, only probed pods ready": {mode: UpstreamPods, endpoints: endpoints{addr: "10.0.0.1:8080", probedOnly: true}, wantCode: 204, want: proxy.Upstream{Addr: "10.0.0.1:8080"}},
		"pods none ready":              {mode: UpstreamPods, wantCode: 503},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got proxy.Upstream
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = *proxy.UpstreamFrom(r.Context())
				w.WriteHeader(http.StatusNoContent)
			})
			h := &Forward{Next: next, Mode: tc.mode, Domain: "cluster.local", Endpoints: tc.endpoints}
			target := &registry.Entry{Namespace: "shop", Name: "app", Service: "app", Backend: types.NamespacedName{Namespace: "shop", Name: "app-elasti-private"}}
			r, req := withRequest(httptest.NewRequest("GET", "/", nil), target)
			req.Subset, req.Port = "v1", registry.Port{Name: "http", Port: 80}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantCode || got != tc.want {
				t.Errorf("got %d %+v, want %d %+v", w.Code, got, tc.wantCode, tc.want)
			}
		})
	}
}

func TestWantsH2C(t *testing.T) {
	tests := map[string]struct {
		major    int
		ct, port string
		want     bool
	}{
		"http/1.1 grpc content type": {major: 1, ct: "application/grpc", want: false},
		"http/2 grpc":                {major: 2, ct: "application/grpc+proto", want: true},
		"http/2 grpc port name":      {major: 2, port: "grpc-api", want: true},
		"http/2 h2c port name":       {major: 2, port: "h2c", want: true},
		"http/2 plain":               {major: 2, ct: "text/html", port: "http", want: false},
		"http/2 port named grpcish":  {major: 2, port: "grpcx", want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			r.ProtoMajor = tc.major
			r.Header.Set("Content-Type", tc.ct)
			if got := wantsH2C(r, tc.port); got != tc.want {
				t.Errorf("wantsH2C = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRecordCountsByClassAndOutcome(t *testing.T) {
	m := metrics.New()
	target := &registry.Entry{Namespace: "shop", Name: "app"}
	for _, code := range []int{200, 204, 503} {
		h := &Record{Metrics: m, Next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			RequestFrom(r.Context()).Outcome = metrics.OutcomePassed
			w.WriteHeader(code)
		})}
		r, _ := withRequest(httptest.NewRequest("GET", "/", nil), target)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	for class, want := range map[string]float64{"2xx": 2, "5xx": 1} {
		if got := testutil.ToFloat64(m.Responses.WithLabelValues("shop", "app", class, metrics.OutcomePassed)); got != want {
			t.Errorf("responses %s = %v, want %v", class, got, want)
		}
	}
}
