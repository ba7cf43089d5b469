//go:build e2e

// Package e2e proves elasti's user scenarios on a real cluster: the local cluster of
// test/localcluster, with elasti installed from its Helm chart. The suite runs inside the
// cluster's network namespace (make test-e2e puts it there), so it reaches Service and pod IPs
// directly, and nothing it sends can leave the machine.
package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/test/internal/fixture"
)

var (
	k8s  client.Client
	ctx  = context.Background()
	prom *fakeProm
	repo = repoRoot()
)

func repoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "elasti e2e")
}

// fakeProm answers elasti's trigger queries from the node address, which pods reach. Scenarios
// that need a real Prometheus use Debian's; the ones here only need to say "active" or "idle".
type fakeProm struct {
	*fixture.Prom
	active *atomic.Bool
}

func startFakeProm() *fakeProm {
	p, err := fixture.StartProm(fixture.NodeIP + ":0")
	Expect(err).NotTo(HaveOccurred())
	return &fakeProm{Prom: p, active: &p.Active}
}

func helm(args ...string) string {
	GinkgoHelper()
	bin := os.Getenv("HELM")
	Expect(bin).NotTo(BeEmpty(), "HELM must name the pinned helm binary (make test-e2e sets it)")
	out, err := exec.Command(bin, args...).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "helm %v: %s", args, out)
	return string(out)
}

var _ = BeforeSuite(func() {
	cfg, err := config.GetConfig()
	Expect(err).NotTo(HaveOccurred())
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	Expect(networkingv1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	prom = startFakeProm()
	installElasti()
})

// installElasti installs (or upgrades) elasti from its chart; the uninstall scenario calls it
// again so that the specs after it find elasti as the suite left it.
func installElasti() {
	GinkgoHelper()
	By("installing elasti from its Helm chart, with the images built from the tree")
	start := time.Now()
	helm("upgrade", "--install", "elasti", filepath.Join(repo, "charts", "elasti"),
		"--namespace", "elasti-system", "--create-namespace", "--wait", "--timeout", "3m",
		"--set", "image.tag=dev", "--set", "image.pullPolicy=Never",
		// No Envoy can run here: the resolver has no sidecar and replays straight to pod IPs.
		"--set", "resolver.istio.sidecar=false", "--set", "resolver.upstream=pods",
		"--set", "controller.drainDelay=2s", "--set", "controller.logLevel=debug")
	GinkgoWriter.Printf("elasti installed and ready in %s\n", time.Since(start).Round(100*time.Millisecond))
}

var _ = AfterSuite(func() {
	if prom != nil {
		_ = prom.Close()
	}
})
