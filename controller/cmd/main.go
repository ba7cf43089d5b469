// Command elasti-controller reconciles ElastiServices: it switches Services between Serve and
// Proxy mode over Istio routes and EndpointSlices, and scales their targets to zero and back.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"net/http"

	"github.com/go-logr/logr"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	activityv1 "github.com/elasti-dev/elasti/api/activity/v1"
	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/activity"
	"github.com/elasti-dev/elasti/controller/internal/podprobe"
	"github.com/elasti-dev/elasti/controller/internal/reconciler"
	"github.com/elasti-dev/elasti/controller/internal/routekey"
	"github.com/elasti-dev/elasti/controller/internal/scaler"
	"github.com/elasti-dev/elasti/controller/internal/triggers"
	"github.com/elasti-dev/elasti/internal/namespaces"
	"github.com/elasti-dev/elasti/internal/routesig"
	"github.com/elasti-dev/elasti/internal/version"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "elasti-controller:", err)
		os.Exit(1)
	}
}

type options struct {
	metricsAddr, probeAddr, activityAddr string
	leaderElect                          bool
	leaderElectionNamespace              string
	leaseDuration, renewDeadline         time.Duration
	retryPeriod                          time.Duration
	watchNamespaces                      string
	resolverService                      string
	resolverPort                         int
	clusterDomain                        string
	istioRootNamespace                   string
	drainDelay, triggerInterval          time.Duration
	directProbing                        bool
	activityAuth                         string
	activityUsers                        string
	activityIssuer                       string
	activityReviewQPS                    float64
	activityReviewBurst                  int
	triggerAllowedAddresses              string
	concurrency                          int
	qps                                  float64
	burst                                int
	uninstall                            bool
	uninstallTimeout, uninstallSettle    time.Duration
	routeKeySecret                       string
	resolverPrincipal                    string
}

func run() error {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.StringVar(&o.activityAddr, "activity-bind-address", fmt.Sprintf(":%d", activityv1.DefaultPort), "Address where the resolver's activity signals arrive.")
	flag.BoolVar(&o.leaderElect, "leader-elect", true, "Elect a leader, so that only one replica acts.")
	flag.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease; the pod's namespace when empty.")
	// client-go's defaults (15s/10s/2s) leave held requests waiting about 20 s after a leader
	// crashes. A standby takes a Lease it has not seen renewed for LeaseDuration, timed on its
	// own clock, at its next try, every RetryPeriod plus up to 120% jitter: with 4s/3s/1s a
	// crash is taken over in about 5 s (3 to 8.4 s). Clocks may disagree by any offset, since
	// no replica compares its time with another's; LeaseDuration-RenewDeadline (1 s) is the
	// margin in which a leader that could not renew has stopped before a standby may lead.
	// The price: each replica reads the Lease every RetryPeriod and the leader writes it, a few
	// requests a second, and a leader that cannot reach the API server for RenewDeadline stops
	// leading and stands by again (standBy). A graceful stop waits for
	// none of this: LeaderElectionReleaseOnCancel hands the Lease over at once.
	flag.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 4*time.Second, "How long a standby waits, after it last saw the leader renew the Lease, before it takes over.")
	flag.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 3*time.Second, "How long the leader retries renewing the Lease before it stops leading and stands by again; less than the lease duration.")
	flag.DurationVar(&o.retryPeriod, "leader-elect-retry-period", time.Second, "How often each replica tries to acquire or renew the Lease.")
	flag.StringVar(&o.watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to watch; all when empty. With a list, Roles suffice instead of ClusterRoles.")
	flag.StringVar(&o.resolverService, "resolver-service", "elasti-system/elasti-resolver", "namespace/name of the resolver's Service.")
	flag.IntVar(&o.resolverPort, "resolver-port", 8012, "The resolver's HTTP port.")
	flag.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "The cluster's DNS domain.")
	flag.StringVar(&o.resolverPrincipal, "resolver-principal", "", "The resolver's identity as AuthorizationPolicies name it (trust-domain/ns/NAMESPACE/sa/SERVICEACCOUNT); cluster.local/ns/<the resolver's namespace>/sa/elasti-resolver when empty.")
	flag.StringVar(&o.istioRootNamespace, "istio-root-namespace", "istio-system", "Istio's root namespace (meshConfig.rootNamespace), whose DestinationRules apply mesh-wide.")
	flag.DurationVar(&o.drainDelay, "drain-delay", 5*time.Second, "How long Proxy mode stays programmed before a target goes to zero, so that every caller's proxy follows the routes first.")
	flag.BoolVar(&o.directProbing, "direct-probing", true, "Probe a woken target's new pods with their own startup and readiness probes, so that held requests go to a pod as soon as it passes rather than at the kubelet's next periodic probe; ElastiServices opt out with spec.coldStart.readiness: Kubelet. Needs the controller to reach pod IPs.")
	flag.DurationVar(&o.triggerInterval, "trigger-retry-interval", 30*time.Second, "How soon triggers that could not be read are asked again. Triggers are otherwise asked only when a cooldown would expire.")
	flag.StringVar(&o.activityAuth, "activity-auth", "tokenreview", "How activity signals are authenticated: tokenreview, or none (only where a NetworkPolicy guards the port).")
	flag.StringVar(&o.activityUsers, "activity-users", "system:serviceaccount:elasti-system:elasti-resolver", "Comma-separated users whose tokens may send activity signals.")
	flag.StringVar(&o.activityIssuer, "activity-issuer", "", "With tokenreview, the iss claim the resolver's token must carry, checked before any TokenReview; not checked when empty.")
	flag.Float64Var(&o.activityReviewQPS, "activity-review-qps", 5, "Sustained TokenReviews per second, on a client of their own, apart from the reconciler's --kube-api-qps.")
	flag.IntVar(&o.activityReviewBurst, "activity-review-burst", 10, "Burst of TokenReviews.")
	flag.StringVar(&o.triggerAllowedAddresses, "trigger-allowed-addresses", "", "Comma-separated servers that triggers may query: URL prefixes (http://prometheus.monitoring:9090) or host[:port] (prometheus.monitoring, *.monitoring.svc.cluster.local). Any when empty.")
	flag.StringVar(&o.routeKeySecret, "route-key-secret", "", "Name of the Secret, in the resolver's namespace, whose key signs the route headers for the resolver; made with a random key when missing. Default "+routesig.DefaultSecretName+".")
	flag.IntVar(&o.concurrency, "concurrency", 4, "ElastiServices reconciled at once.")
	flag.Float64Var(&o.qps, "kube-api-qps", 100, "Sustained requests per second to the API server.")
	flag.IntVar(&o.burst, "kube-api-burst", 200, "Burst of requests to the API server.")
	flag.BoolVar(&o.uninstall, "uninstall", false, "Delete every ElastiService in the watched namespaces, wait until the running controller has finalized them, and exit. The chart's pre-delete hook runs this.")
	flag.DurationVar(&o.uninstallTimeout, "uninstall-timeout", 4*time.Minute, "With --uninstall, how long to wait for the finalizers before failing.")
	flag.DurationVar(&o.uninstallSettle, "uninstall-settle", 10*time.Second, "With --uninstall, how long to wait after the last ElastiService is gone, so that kube-proxy and sidecars follow the restored routes before helm deletes the resolver.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	if o.uninstall {
		return runUninstall(o, log)
	}
	log.Info("starting elasti-controller", "version", version.Version)
	if o.leaderElect {
		// Checked here, with the flags' names, rather than when the manager starts the election.
		if err := checkLeaderElection(o.leaseDuration, o.renewDeadline, o.retryPeriod); err != nil {
			return err
		}
	}

	resolverNS, resolverName, ok := strings.Cut(o.resolverService, "/")
	if !ok || resolverNS == "" || resolverName == "" {
		return fmt.Errorf("--resolver-service must be namespace/name, got %q", o.resolverService)
	}
	if o.activityAuth != "tokenreview" && o.activityAuth != "none" {
		return fmt.Errorf("--activity-auth must be tokenreview or none, got %q", o.activityAuth)
	}
	allowedTriggers, err := triggers.ParseAllowList(o.triggerAllowedAddresses)
	if err != nil {
		return fmt.Errorf("--trigger-allowed-addresses: %w", err)
	}

	scheme := runtime.NewScheme()
	if o.resolverPrincipal == "" {
		o.resolverPrincipal = "cluster.local/ns/" + resolverNS + "/sa/elasti-resolver"
	}
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, networkingv1.AddToScheme, securityv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}

	cacheOpts, err := cacheOptions(o.watchNamespaces, resolverNS, o.istioRootNamespace)
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	// The route key is read once, straight from the API server (the role grants this one
	// Secret, so a cache could not list Secrets); a changed key takes a restart, which re-signs
	// every rewritten route on its first reconcile.
	if o.routeKeySecret == "" {
		o.routeKeySecret = routesig.DefaultSecretName
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	var signer *routesig.Signer
	keyCtx, keyCancel := context.WithTimeout(context.Background(), time.Minute)
	err = wait.ExponentialBackoffWithContext(keyCtx, wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: 9, Cap: 10 * time.Second},
		func(ctx context.Context) (bool, error) {
			s, err := routekey.Ensure(ctx, direct, types.NamespacedName{Namespace: resolverNS, Name: o.routeKeySecret})
			if err != nil {
				log.Error(err, "reading the route key; retrying")
				return false, nil
			}
			signer = s
			return true, nil
		})
	keyCancel()
	if err != nil {
		return fmt.Errorf("route key Secret %s/%s not available: %w", resolverNS, o.routeKeySecret, err)
	}

	recMetrics := reconciler.NewMetrics()
	metrics.Registry.MustRegister(activity.Collectors()...)
	metrics.Registry.MustRegister(recMetrics.Collectors()...)
	store := activity.NewStore()
	events := make(chan event.GenericEvent, 1024)
	var auth activity.Authenticator
	if o.activityAuth == "tokenreview" {
		// TokenReviews get a client and a rate limit of their own, so that a flood of signals
		// cannot spend the reconciler's.
		reviewCfg := rest.CopyConfig(cfg)
		reviewCfg.QPS, reviewCfg.Burst, reviewCfg.RateLimiter = float32(o.activityReviewQPS), o.activityReviewBurst, nil
		reviews, err := authenticationv1.NewForConfig(reviewCfg)
		if err != nil {
			return fmt.Errorf("creating the TokenReview client: %w", err)
		}
		auth = &activity.TokenReviewer{Reviews: reviews.TokenReviews(), Users: strings.Split(o.activityUsers, ","),
			Issuer: o.activityIssuer, Log: ctrl.Log.WithName("activity")}
	}
	ctx := ctrl.SetupSignalHandler()
	sh := &shared{o: o, cfg: cfg, scheme: scheme, cacheOpts: cacheOpts, store: store, events: events, auth: auth,
		signer: signer, resolverNS: resolverNS, resolverName: resolverName, allowedTriggers: allowedTriggers, log: log, metrics: recMetrics}
	return standBy(ctx, log, func(term int) error { return lead(ctx, term, sh) })
}

// cacheOptions limits the cache to the namespaces of --watch-namespaces and the resolver's own,
// whose EndpointSlices say whether the resolver can take traffic. AuthorizationPolicies are also
// read in Istio's root namespace, whose policies apply to every workload. An empty list watches
// every namespace. Deployments and StatefulSets, which the scaler reads from the cache, are kept
// as their replica counts only.
func cacheOptions(watch, resolverNS, rootNS string) (cache.Options, error) {
	names, err := namespaces.Parse(watch)
	if err != nil {
		return cache.Options{}, fmt.Errorf("--watch-namespaces: %w", err)
	}
	opts := cache.Options{ByObject: map[client.Object]cache.ByObject{
		&appsv1.Deployment{}:  {Transform: scaler.KeepReplicas},
		&appsv1.StatefulSet{}: {Transform: scaler.KeepReplicas},
	}}
	if len(names) == 0 {
		return opts, nil
	}
	opts.DefaultNamespaces = namespaces.Cache(names, resolverNS)
	opts.ByObject[&securityv1.AuthorizationPolicy{}] = cache.ByObject{Namespaces: namespaces.Cache(names, resolverNS, rootNS)}
	return opts, nil
}

// shared is what every term of lead uses: built once per process, and the activity the
// resolver reported outlives a lost Lease.
type shared struct {
	o                        options
	cfg                      *rest.Config
	scheme                   *runtime.Scheme
	cacheOpts                cache.Options
	store                    *activity.Store
	events                   chan event.GenericEvent
	auth                     activity.Authenticator
	signer                   *routesig.Signer
	resolverNS, resolverName string
	allowedTriggers          triggers.AllowList
	metrics                  *reconciler.Metrics
	log                      logr.Logger
}

// lead runs one manager: a candidate for the Lease, then (once elected) the leader, until ctx
// ends or the Lease is lost.
func lead(ctx context.Context, term int, sh *shared) error {
	o, cfg, scheme, log := sh.o, sh.cfg, sh.scheme, sh.log
	store, events, auth, signer, resolverNS, resolverName := sh.store, sh.events, sh.auth, sh.signer, sh.resolverNS, sh.resolverName
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         sh.cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "elasti-controller.elasti.dev",
		LeaderElectionNamespace:       o.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
		GracefulShutdownTimeout:       ptrTo(20 * time.Second),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	istio, err := hasKind(mgr.GetRESTMapper(), networkingv1.SchemeGroupVersion.WithKind("VirtualService").GroupKind())
	if err != nil {
		return err
	}
	if !istio {
		log.Info("Istio's VirtualService kind is not installed; routing non-mesh callers through EndpointSlices only")
	}
	policies, err := hasKind(mgr.GetRESTMapper(), securityv1.SchemeGroupVersion.WithKind("AuthorizationPolicy").GroupKind())
	if err != nil {
		return err
	}

	if err := mgr.Add(&activity.Server{Addr: o.activityAddr, Handler: &activity.Handler{
		Store: store, Auth: auth, Elected: mgr.Elected(), Events: events, Log: ctrl.Log.WithName("activity"),
	}}); err != nil {
		return err
	}

	r := &reconciler.Reconciler{
		Client: mgr.GetClient(),
		Config: reconciler.Config{
			ResolverNamespace:     resolverNS,
			ResolverService:       resolverName,
			ResolverPort:          int32(o.resolverPort),
			ClusterDomain:         o.clusterDomain,
			MeshRootNamespace:     o.istioRootNamespace,
			DrainDelay:            o.drainDelay,
			TriggerInterval:       o.triggerInterval,
			Istio:                 istio,
			RouteSigner:           signer,
			AuthorizationPolicies: policies,
			ResolverPrincipal:     o.resolverPrincipal,
		},
		Scaler:   &scaler.Scaler{Client: mgr.GetClient(), Mapper: mgr.GetRESTMapper(), Cache: mgr.GetClient()},
		Activity: store,
		Recorder: mgr.GetEventRecorder("elasti-controller"),
		Events:   events,
		Triggers: (&triggers.Evaluator{Allowed: sh.allowedTriggers}).Evaluate,
		Metrics:  sh.metrics,
	}
	if o.directProbing {
		r.Prober = &podprobe.Prober{}
	}
	// A standby starts its watches before it leads, so that a new leader reconciles at once
	// instead of first listing every Service and EndpointSlice it watches. It costs the standby
	// the leader's memory.
	if err := r.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: o.concurrency, EnableWarmup: ptrTo(true),
		// A second term builds the same controller again in this process.
		SkipNameValidation: ptrTo(term > 0)}); err != nil {
		return fmt.Errorf("setting up the controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("caches not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// errLeaseLost is how the manager says that its leader lost the Lease.
const errLeaseLost = "leader election lost"

// standBy runs one term of lead after another. A leader that cannot renew the Lease within
// renewDeadline (an API server restarting, say) must stop acting at once, and its manager does;
// but exiting would make the kubelet restart the container with a growing back-off, and a few
// API server restarts in a row would leave both replicas in CrashLoopBackOff with nobody to wake
// a target. So the process stays, and stands by again with a new manager. Its listeners close as
// the old manager stops, so binding them is retried for a moment.
func standBy(ctx context.Context, log logr.Logger, term func(n int) error) error {
	var lost time.Time
	for n := 0; ; n++ {
		err := term(n)
		switch {
		case ctx.Err() != nil || err == nil:
			return err
		case err.Error() == errLeaseLost:
			lost = time.Now()
			log.Info("lost the leader Lease; standing by again")
		case time.Since(lost) < rebindPatience:
			log.Info("standing by again after a lost Lease failed; retrying", "error", err.Error())
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(rebindDelay):
		}
	}
}

// rebindDelay and rebindPatience pace a new term after a lost Lease.
const rebindDelay, rebindPatience = 500 * time.Millisecond, 30 * time.Second

// checkLeaderElection refuses the lease timings that client-go's leader election would refuse
// only once the manager starts.
func checkLeaderElection(lease, renew, retry time.Duration) error {
	switch {
	case retry <= 0:
		return fmt.Errorf("--leader-elect-retry-period must be positive, got %s", retry)
	case renew <= time.Duration(leaderelection.JitterFactor*float64(retry)):
		return fmt.Errorf("--leader-elect-renew-deadline (%s) must be more than %.1f times --leader-elect-retry-period (%s), so that the leader retries a failed renewal before it gives up",
			renew, leaderelection.JitterFactor, retry)
	case lease <= renew:
		return fmt.Errorf("--leader-elect-lease-duration (%s) must be more than --leader-elect-renew-deadline (%s), so that a leader that could not renew stops before a standby takes over",
			lease, renew)
	}
	return nil
}

// hasKind reports whether the API server serves gk.
func hasKind(mapper meta.RESTMapper, gk schema.GroupKind) (bool, error) {
	_, err := mapper.RESTMapping(gk)
	if meta.IsNoMatchError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up %s: %w", gk, err)
	}
	return true, nil
}

func ptrTo[T any](v T) *T { return &v }
