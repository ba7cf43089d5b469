//go:build envtest

package sources_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/routesig"
	"github.com/elasti-dev/elasti/internal/testsupport/testenv"
	"github.com/elasti-dev/elasti/resolver/internal/app"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/resolvertest"
	"github.com/elasti-dev/elasti/resolver/internal/sources"
)

var (
	env      *envtest.Environment
	k8s      client.Client
	resolver *resolvertest.Resolver
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
	Expect(securityv1.AddToScheme(scheme)).To(Succeed())
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
	var ctx context.Context
	ctx, cancel = context.WithCancel(context.Background())
	// resolvertest's stand-in activity client: this suite runs no controller.
	resolver = resolvertest.New(app.Options{
		MaxPending: 10, MaxPendingTotal: 1000, HoldTimeout: time.Minute, DeletedGrace: registry.DefaultGrace,
	})
	Expect(resolver.Watch(ctx, mgr.GetCache(), mgr.GetRESTMapper())).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
	DeferCleanup(func() { cancel() })
})
