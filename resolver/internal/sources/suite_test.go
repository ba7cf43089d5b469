//go:build envtest

package sources_test

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/routesig"
	"github.com/elasti-dev/elasti/internal/testsupport/testenv"
	"github.com/elasti-dev/elasti/resolver/internal/readiness"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/resolvertest"
	"github.com/elasti-dev/elasti/resolver/internal/sources"
	"github.com/elasti-dev/elasti/resolver/internal/throttler"
)

var (
	env      *envtest.Environment
	k8s      client.Client
	reg      *registry.Registry
	ready    *readiness.Cache
	thr      *throttler.Throttler
	routeKey *routesig.Key
	cancel   context.CancelFunc
)

// keyNamespace is where the suite's resolver looks for the route key.
const keyNamespace = "elasti-system"

func TestSources(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Resolver registry and readiness from the API server (envtest)")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	e, restCfg, err := testenv.Start()
	env = e
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })

	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(restCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	cacheOpts, err := sources.CacheOptions("", types.NamespacedName{Namespace: keyNamespace, Name: routesig.DefaultSecretName}, "istio-system")
	Expect(err).NotTo(HaveOccurred())
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	// A deleted target's waiters are released, as the resolver's main does.
	r := resolvertest.New(resolvertest.Options{MaxTotal: 1000, ReleaseDeleted: true})
	reg, ready, thr = r.Registry, r.Ready, r.Throttler
	var ctx context.Context
	ctx, cancel = context.WithCancel(context.Background())
	routeKey = &routesig.Key{}
	Expect(sources.Register(ctx, mgr.GetCache(), reg, ready, sources.RouteKeyHandler(routeKey, logr.Discard()))).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
	DeferCleanup(func() { cancel() })
})
