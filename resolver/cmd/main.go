// Command elasti-resolver holds requests for Services scaled to zero, wakes them through the
// controller, and replays each request once its target is ready.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/rlimit"
	"github.com/elasti-dev/elasti/internal/routesig"
	"github.com/elasti-dev/elasti/internal/version"
	"github.com/elasti-dev/elasti/resolver/internal/app"
	"github.com/elasti-dev/elasti/resolver/internal/handler"
	"github.com/elasti-dev/elasti/resolver/internal/memory"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/sources"
)

// drainGrace is how long past --drain-timeout the 503s to held requests, and replays already
// under way, may take before run returns.
const drainGrace = 2 * time.Second

// options are the flags: those of the resolver's parts bind straight into app.Options.
type options struct {
	app                            app.Options
	listen, metricsAddr, probeAddr string
	shutdownDelay, drainTimeout    time.Duration
	idleTimeout                    time.Duration
	watchNS, routeKeySecret        string
	memoryLimit                    uint64
	rootNS, trustedPeers           string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "elasti-resolver:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	flag.StringVar(&o.listen, "listen", ":8012", "Address of the proxy listener (HTTP/1.1 and h2c).")
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":9090", "Address of the metrics endpoint; 0 disables it.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	flag.StringVar(&o.app.Activity.ControllerURL, "controller-url", "http://elasti-controller.elasti-system.svc:8013", "Base URL of the controller's activity endpoint.")
	flag.DurationVar(&o.app.Activity.KeepAlive, "activity-keepalive", 20*time.Second, "Time between keepalives to the controller, which keep a connection on its leader and the token reviewed, so a wake's first signal waits for neither; 0 sends none. Keep it under half a minute, when a token's review is renewed.")
	flag.StringVar(&o.app.Activity.TokenFile, "token-file", "/var/run/secrets/elasti/token", "Projected service account token sent to the controller; re-read when it changes.")
	flag.IntVar(&o.app.MaxPending, "max-pending-per-target", app.DefaultMaxPending, "Requests held per target unless spec.queue.maxPending says otherwise.")
	flag.IntVar(&o.app.MaxPendingTotal, "max-pending-total", app.DefaultMaxPendingTotal, "Requests held across all targets.")
	flag.IntVar(&o.app.MaxPendingPerNamespace, "max-pending-per-namespace", app.DefaultMaxPendingPerNamespace, "Requests held for the targets of one namespace, so that no tenant can take every slot; 0 means --max-pending-total.")
	flag.IntVar(&o.app.MaxPendingLimit, "max-pending-limit", app.DefaultMaxPendingLimit, "The most a spec.queue.maxPending may ask for; larger values are cut to it. 0 means no limit.")
	flag.Uint64Var(&o.memoryLimit, "memory-limit", envBytes("ELASTI_MEMORY_LIMIT"), "The container's memory limit in bytes (the chart passes limits.memory): the Go runtime aims at 90% of it, and new holds are refused (503) above 80%. 0 turns both off.")
	flag.DurationVar(&o.app.HoldTimeout, "hold-timeout", 2*time.Minute, "How long a request is held unless spec.queue.holdTimeout says otherwise.")
	flag.StringVar(&o.app.Upstream, "upstream", handler.UpstreamService, "Where replays go: service (the private Service, through the mesh) or pods (a ready pod IP).")
	flag.IntVar(&o.app.Proxy.MaxConnsPerHost, "max-conns-per-upstream", 100, "Connections to one upstream address at most, so a wake-up burst queues here rather than at the first pod (upgraded WebSockets do not count); 0 means no bound.")
	flag.StringVar(&o.app.Domain, "cluster-domain", "cluster.local", "Cluster DNS domain.")
	flag.DurationVar(&o.shutdownDelay, "shutdown-delay", 5*time.Second, "After SIGTERM, how long to keep accepting connections while endpoints drop this pod.")
	flag.DurationVar(&o.drainTimeout, "drain-timeout", 2*time.Minute,
		"After the shutdown delay, how long held and in-flight requests may finish; then requests still held are answered 503 with Retry-After, and the rest get "+drainGrace.String()+" more.")
	flag.DurationVar(&o.idleTimeout, "idle-timeout", 65*time.Minute, "Keep-alive idle timeout; longer than Envoy's 1h so the caller always closes first.")
	flag.DurationVar(&o.app.DeletedGrace, "deleted-grace", registry.DefaultGrace,
		"How long a deleted ElastiService's requests (on connections kube-proxy pinned to the resolver) are still forwarded to its public Service; 0 answers them 404.")
	flag.StringVar(&o.watchNS, "watch-namespaces", "", "Comma-separated namespaces to serve; empty serves all.")
	flag.DurationVar(&o.app.Proxy.ConnWait, "upstream-conn-wait", 30*time.Second, "How long a request waits for one of the --max-conns-per-upstream connections before it gets 503 with Retry-After; 0 waits as long as the caller.")
	flag.BoolVar(&o.app.ColdStartHeader, "cold-start-header", false, "Add X-Elasti-Cold-Start, the time a request waited in the resolver, to the answers of held requests.")
	flag.Int64Var(&o.app.MaxHeldBody, "max-held-body", 64<<10, "Bytes of a held request's body read while it waits, so a caller that leaves is noticed and the replay never waits on the caller; larger bodies stream the rest.")
	flag.Int64Var(&o.app.MinBodyRate, "min-body-rate", 1024, "Bytes per second a body streamed to a target must average after --body-grace, so a trickling caller cannot keep one of its connections busy; 0 disables it.")
	flag.DurationVar(&o.app.BodyGrace, "body-grace", 10*time.Second, "How long a streamed body may stall, and before its rate is checked.")
	flag.StringVar(&o.routeKeySecret, "route-key-secret", defaultRouteKeySecret(),
		"namespace/name of the Secret whose key signs the route headers (the controller creates it); without it no X-Elasti-* header is believed.")
	flag.StringVar(&o.rootNS, "istio-root-namespace", "istio-system", "Istio's root namespace (meshConfig.rootNamespace), whose AuthorizationPolicies apply to every workload.")
	flag.StringVar(&o.trustedPeers, "xfcc-trusted-peers", "",
		"Comma-separated addresses or CIDRs whose x-forwarded-client-cert header names the caller: the resolver's own sidecar (127.0.0.6/32,::6/128 for Istio). Empty believes no one, and AuthorizationPolicy rules on the caller's identity then match no caller.")
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zopts)))
	log := ctrl.Log.WithName("resolver")
	if o.app.Upstream != handler.UpstreamService && o.app.Upstream != handler.UpstreamPods {
		return fmt.Errorf("--upstream must be service or pods, not %q", o.app.Upstream)
	}
	trusted, err := parsePrefixes(o.trustedPeers)
	if err != nil {
		return fmt.Errorf("--xfcc-trusted-peers: %w", err)
	}
	o.app.TrustedPeers = trusted
	rlimit.RaiseNoFile() // every held request is a socket
	sig := ctrl.SetupSignalHandler()

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := securityv1.AddToScheme(scheme); err != nil {
		return err
	}
	keyNS, keyName, ok := strings.Cut(o.routeKeySecret, "/")
	if !ok || keyNS == "" || keyName == "" {
		return fmt.Errorf("--route-key-secret must be namespace/name, not %q", o.routeKeySecret)
	}
	cacheOpts, err := sources.CacheOptions(o.watchNS, types.NamespacedName{Namespace: keyNS, Name: keyName}, o.rootNS)
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.probeAddr,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	// The manager (caches, probes, metrics) outlives the proxy's drain: held requests need
	// readiness events until the last one is replayed.
	mgrCtx, stopMgr := context.WithCancel(context.Background())
	defer stopMgr()

	_, gomemlimit := os.LookupEnv("GOMEMLIMIT")
	memLimit := memory.SetLimit(o.memoryLimit, 0.9, gomemlimit)
	guard := memory.NewGuard(o.memoryLimit, 0.8)
	go guard.Run(mgrCtx, 100*time.Millisecond)
	o.app.Admit, o.app.Log = guard.Admit, log
	resolver := app.New(mgrCtx, o.app)
	ctrlmetrics.Registry.MustRegister(resolver.Metrics.Collectors()...)
	if err := resolver.Watch(mgrCtx, mgr.GetCache(), mgr.GetRESTMapper()); err != nil {
		return err
	}

	var draining, synced atomic.Bool
	if err := mgr.AddHealthzCheck("ping", func(*http.Request) error { return nil }); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("caches", func(*http.Request) error {
		switch {
		case draining.Load():
			return errors.New("draining")
		case !synced.Load():
			return errors.New("caches not synced")
		}
		return nil
	}); err != nil {
		return err
	}

	srv := handler.NewServer(o.listen, resolver.Handler, o.idleTimeout)

	var mgrErr error
	mgrDone := make(chan struct{})
	go func() { mgrErr = mgr.Start(mgrCtx); close(mgrDone) }()
	// Listen only once the caches have synced: before that every host would look unknown, and
	// a caller let into the backlog would hang until then.
	syncCtx, syncDone := context.WithCancel(mgrCtx)
	defer context.AfterFunc(sig, syncDone)()
	go func() { <-mgrDone; syncDone() }()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		select {
		case <-mgrDone:
			return fmt.Errorf("manager stopped before its caches synced: %w", mgrErr)
		default:
			return errors.New("stopped before the caches synced")
		}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.listen, err)
	}
	synced.Store(true)
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	log.Info("resolver serving", "version", version.Version, "listen", o.listen, "upstream", o.app.Upstream, "elastiservices", resolver.Registry.Len(),
		"memoryLimit", o.memoryLimit, "gomemlimit", memLimit)

	select {
	case <-sig.Done():
	case <-mgrDone:
		return fmt.Errorf("manager stopped: %w", mgrErr)
	case err := <-srvErr:
		return fmt.Errorf("proxy listener stopped: %w", err)
	}

	// Fail readiness first and keep serving while endpoints and sidecars drop this pod, then
	// stop accepting; Shutdown waits for held requests to be replayed or to time out. Until
	// then each response closes its connection, so keep-alive callers reconnect to another
	// replica instead of racing the close of an idle connection here.
	draining.Store(true)
	srv.SetKeepAlivesEnabled(false)
	log.Info("draining", "delay", o.shutdownDelay, "held", resolver.Throttler.Total())
	time.Sleep(o.shutdownDelay)
	// Requests still held at the drain timeout are answered 503 rather than cut by the exit;
	// those answers, and replays already under way, get drainGrace more.
	expired := time.AfterFunc(o.drainTimeout, func() {
		log.Info("drain timeout: answering held requests 503", "held", resolver.Throttler.Total())
		resolver.Throttler.Drain()
	})
	defer expired.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout+drainGrace)
	defer cancel()
	err = srv.Shutdown(ctx)
	log.Info("proxy stopped", "held", resolver.Throttler.Total(), "error", err)
	stopMgr()
	<-mgrDone
	if err == nil {
		err = mgrErr
	}
	return err
}

// parsePrefixes parses a comma-separated list of addresses and CIDRs.
func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// envBytes reads a byte count from the environment variable name; 0 when unset or not a number.
func envBytes(name string) uint64 {
	n, _ := strconv.ParseUint(os.Getenv(name), 10, 64)
	return n
}

// defaultRouteKeySecret is the route key's Secret in this pod's namespace (POD_NAMESPACE, set by
// the chart), else in elasti-system.
func defaultRouteKeySecret() string {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "elasti-system"
	}
	return ns + "/" + routesig.DefaultSecretName
}
