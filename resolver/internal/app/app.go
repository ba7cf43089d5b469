package app

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/elasti-dev/elasti/internal/routesig"
	"github.com/elasti-dev/elasti/resolver/internal/activity"
	"github.com/elasti-dev/elasti/resolver/internal/handler"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
	"github.com/elasti-dev/elasti/resolver/internal/proxy"
	"github.com/elasti-dev/elasti/resolver/internal/readiness"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/sources"
	"github.com/elasti-dev/elasti/resolver/internal/throttler"
)

// The hold limits that resolver/cmd's flags default to; the bench measures with them too.
const (
	DefaultMaxPending             = 5000
	DefaultMaxPendingTotal        = 20000
	DefaultMaxPendingPerNamespace = 5000
	DefaultMaxPendingLimit        = 5000
)

// Options configure New. A zero value is zero, not a default: resolver/cmd sets every field
// from its flags, whose help says what each means.
type Options struct {
	// Domain is the cluster's DNS domain.
	Domain string
	// Upstream is where replays go: handler.UpstreamService or handler.UpstreamPods.
	Upstream string
	// MaxPending bounds the requests held per target unless spec.queue.maxPending says
	// otherwise; MaxPendingLimit caps what that may ask for (0: no cap).
	MaxPending, MaxPendingLimit int
	// MaxPendingTotal bounds the requests held across all targets, MaxPendingPerNamespace
	// those for the targets of one namespace (0: MaxPendingTotal).
	MaxPendingTotal, MaxPendingPerNamespace int
	// HoldTimeout is how long a request is held unless spec.queue.holdTimeout says otherwise.
	HoldTimeout time.Duration
	// DeletedGrace is how long a deleted ElastiService's requests are still forwarded to its
	// public Service; 0 answers them 404.
	DeletedGrace time.Duration
	// MaxHeldBody is how much of a held request's body is read while it waits; MinBodyRate
	// (bytes/s after BodyGrace, 0: none) bounds a body streamed to the target.
	MaxHeldBody, MinBodyRate int64
	// ColdStartHeader adds X-Elasti-Cold-Start to the answers of held requests.
	ColdStartHeader bool
	BodyGrace       time.Duration
	// Admit, if set, says whether there is memory for one more held request.
	Admit func() bool
	// TrustedPeers are the addresses whose x-forwarded-client-cert names the caller.
	TrustedPeers []netip.Prefix
	// Proxy configures the reverse proxy. New counts its upstream errors, after Proxy.OnError,
	// and logs through Log when Proxy.Log is unset.
	Proxy proxy.Options
	// Activity configures the activity client to the controller; New sets its Signals and,
	// when unset, its Log. Unused when ActivityClient is set.
	Activity activity.Options
	// ActivityClient, if set, stands in for the activity client: the tests and the bench have
	// no controller to wake.
	ActivityClient ActivityClient
	// Metrics, if nil, are new ones; register Resolver.Metrics.Collectors to expose them.
	Metrics *metrics.Metrics
	Log     logr.Logger
}

// ActivityClient is the activity client as the resolver uses it: the chain's signals, and
// Forget for a target that is gone.
type ActivityClient interface {
	handler.Activity
	Forget(key types.NamespacedName)
}

// Resolver is the wired resolver. Its caches are fed by Watch in the cluster; tests and the
// bench call their Upsert, Update and Delete methods directly.
type Resolver struct {
	// Handler is the request path (handler.Build); serve it with handler.NewServer.
	Handler   http.Handler
	Registry  *registry.Registry
	Readiness *readiness.Cache
	// Throttler holds requests until their target's Readiness turns ready; Drain it when the
	// drain timeout runs out.
	Throttler *throttler.Throttler
	RouteKey  *routesig.Key
	Policies  *sources.Policies
	Metrics   *metrics.Metrics
	log       logr.Logger
}

// New wires a Resolver. ctx ends the activity client's signal loops.
func New(ctx context.Context, o Options) *Resolver {
	r := &Resolver{Metrics: o.Metrics, RouteKey: &routesig.Key{}, Policies: sources.NewPolicies(), log: o.Log}
	if r.Metrics == nil {
		r.Metrics = metrics.New()
	}
	// The throttler reads the readiness cache, which tells the throttler of each change: each
	// needs the other. The throttler's source reads r.Readiness, set just below, before any
	// event or request can arrive.
	r.Throttler = throttler.New(readinessOf{r}, throttler.Options{MaxTotal: o.MaxPendingTotal, NamespaceShare: o.MaxPendingPerNamespace})
	r.Readiness = readiness.New(r.Throttler)
	client := o.ActivityClient
	if client == nil {
		w := o.Activity
		w.Signals = r.Metrics.ActivitySignals
		if w.Log.GetSink() == nil {
			w.Log = o.Log.WithName("activity")
		}
		client = activity.New(ctx, w)
	}
	r.Registry = registry.New(registry.Options{Domain: o.Domain, Grace: o.DeletedGrace,
		Forget: forgetter{thr: r.Throttler, activity: client, metrics: r.Metrics, key: r.RouteKey}})

	po := o.Proxy
	if po.Log.GetSink() == nil {
		po.Log = o.Log.WithName("proxy")
	}
	onError := po.OnError
	po.OnError = func(req *http.Request, err error) {
		if onError != nil {
			onError(req, err)
		}
		if hr := handler.RequestFrom(req.Context()); hr != nil {
			r.Metrics.UpstreamError.WithLabelValues(hr.Entry.Namespace, hr.Entry.Name).Inc()
		}
	}
	r.Handler = handler.Build(handler.Config{
		Proxy: proxy.New(po), Registry: r.Registry, Signatures: r.RouteKey, Throttler: r.Throttler, Activity: client,
		Endpoints: r.Readiness, Upstream: o.Upstream, Domain: o.Domain, MaxPending: o.MaxPending,
		MaxPendingLimit: o.MaxPendingLimit, HoldTimeout: o.HoldTimeout, Admit: o.Admit,
		MaxHeldBody: o.MaxHeldBody, MinBodyRate: o.MinBodyRate, BodyGrace: o.BodyGrace, ColdStartHeader: o.ColdStartHeader, Metrics: r.Metrics,
		Policies: r.Policies, Callers: &handler.Callers{TrustedPeers: o.TrustedPeers},
	})
	return r
}

// Watch feeds the Resolver's caches from c's informers (sources.Register); mapper says whether
// Istio's AuthorizationPolicy kind exists. Call it before c starts.
func (r *Resolver) Watch(ctx context.Context, c cache.Cache, mapper meta.RESTMapper) error {
	return sources.Register(ctx, c, mapper, sources.Sinks{
		Registry: r.Registry, Readiness: r.Readiness, RouteKey: r.RouteKey, Policies: r.Policies, Log: r.log,
	})
}

// readinessOf is the throttler's source: the Resolver's readiness cache.
type readinessOf struct{ r *Resolver }

func (s readinessOf) Ready(key types.NamespacedName) bool { return s.r.Readiness.Ready(key) }

// forgetter releases the throttler entry, activity state and metric series of a deleted target,
// and the series its tombstone added once that expires.
type forgetter struct {
	thr      *throttler.Throttler
	activity ActivityClient
	metrics  *metrics.Metrics
	key      *routesig.Key
}

func (f forgetter) Forget(t *registry.Entry) {
	if !t.Gone {
		f.thr.Forget(t.Backend)
		f.activity.Forget(types.NamespacedName{Namespace: t.Namespace, Name: t.Name})
	}
	f.key.Forget(t.Key()) // a tombstone that verifies again caches it again, until it expires
	f.metrics.Forget(t.Namespace, t.Name)
}
