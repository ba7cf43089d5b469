//go:build envtest

package reconciler_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/controller/internal/activity"
	"github.com/elasti-dev/elasti/controller/internal/podprobe"
	"github.com/elasti-dev/elasti/controller/internal/reconciler"
	"github.com/elasti-dev/elasti/controller/internal/scaler"
	"github.com/elasti-dev/elasti/internal/testsupport/fakeprom"
	"github.com/elasti-dev/elasti/internal/testsupport/repo"
	"github.com/elasti-dev/elasti/internal/testsupport/testenv"
)

const (
	resolverNS  = "elasti-system"
	resolverSvc = "elasti-resolver"
	drainDelay  = time.Second
	// resolverPrincipal is the identity the chart's resolver ServiceAccount gets.
	resolverPrincipal = "cluster.local/ns/" + resolverNS + "/sa/elasti-resolver"
)

var (
	env       *envtest.Environment
	adminCfg  *rest.Config
	k8s       client.Client
	store     *activity.Store
	events    chan event.GenericEvent
	prom      *fakeprom.Server
	cancel    context.CancelFunc
	testCtx   context.Context
	mgrScheme = runtime.NewScheme()
)

func TestReconciler(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ElastiService reconciler (envtest)")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	// KEDA's ScaledObject CRD, so that the hand-off to KEDA meets the real schema and the
	// controller's RBAC for it.
	keda, err := repo.KEDACRDs()
	Expect(err).NotTo(HaveOccurred())
	env, adminCfg, err = testenv.Start(keda)
	Expect(err).NotTo(HaveOccurred())

	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, networkingv1.AddToScheme, securityv1.AddToScheme} {
		Expect(add(mgrScheme)).To(Succeed())
	}
	k8s, err = client.New(adminCfg, client.Options{Scheme: mgrScheme})
	Expect(err).NotTo(HaveOccurred())
	testCtx, cancel = context.WithCancel(context.Background())

	// The controller runs as its ServiceAccount, with the generated RBAC and the chart's
	// admission policy, so that every spec also shows they admit what it does.
	Expect(k8s.Create(testCtx, &corev1.Namespace{ObjectMeta: objMeta(resolverNS, "")})).To(Succeed())
	Expect(testenv.InstallController(testCtx, adminCfg, resolverNS)).To(Succeed())
	mgr, err := ctrl.NewManager(testenv.AsController(adminCfg, resolverNS), ctrl.Options{
		Scheme:  mgrScheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	Expect(err).NotTo(HaveOccurred())
	store = activity.NewStore()
	events = make(chan event.GenericEvent, 64)
	r := &reconciler.Reconciler{
		Client: mgr.GetClient(),
		Config: reconciler.Config{
			ResolverNamespace:     resolverNS,
			ResolverService:       resolverSvc,
			ResolverPort:          8012,
			ClusterDomain:         "cluster.local",
			DrainDelay:            drainDelay,
			TriggerInterval:       500 * time.Millisecond,
			Istio:                 true,
			AuthorizationPolicies: true,
			ResolverPrincipal:     resolverPrincipal,
		},
		Scaler:   &scaler.Scaler{Client: mgr.GetClient(), Mapper: mgr.GetRESTMapper()},
		Activity: store,
		Recorder: mgr.GetEventRecorder("elasti-controller"),
		Events:   events,
		Prober:   &podprobe.Prober{},
	}
	Expect(r.SetupWithManager(testCtx, mgr, controller.Options{MaxConcurrentReconciles: 4})).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(testCtx)).To(Succeed())
	}()

	prom, err = fakeprom.Start("127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	setResolverReady(true)
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
	if prom != nil {
		_ = prom.Close()
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})
