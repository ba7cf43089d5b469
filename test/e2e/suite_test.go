//go:build e2e

// Package e2e proves elasti's user scenarios on a real cluster: the local cluster of
// test/localcluster, with elasti installed from its Helm chart. The suite runs inside the
// cluster's network namespace (make test-e2e puts it there), so it reaches Service and pod IPs
// directly, and nothing it sends can leave the machine.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/testsupport/fakeprom"
	"github.com/elasti-dev/elasti/internal/testsupport/repo"
	"github.com/elasti-dev/elasti/test/localcluster"
)

var (
	k8s        client.Client
	restConfig *rest.Config
	ctx        = context.Background()
	prom       *fakeprom.Server
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "elasti e2e")
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
	// The suite's clients log only their errors, into the spec's output.
	ctrllog.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.Level(zapcore.ErrorLevel)))
	cfg, err := config.GetConfig()
	Expect(err).NotTo(HaveOccurred())
	restConfig = cfg
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	Expect(networkingv1.AddToScheme(scheme)).To(Succeed())
	Expect(securityv1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	// On the node address, which the controller's pods reach.
	prom, err = fakeprom.Start(localcluster.NodeIP + ":0")
	Expect(err).NotTo(HaveOccurred())
	installElasti()
})

// namespaceShare is the resolver's per-namespace hold share in this suite.
const namespaceShare = 150

// installElasti installs (or upgrades) elasti from its chart; the uninstall scenario calls it
// again so that the specs after it find elasti as the suite left it.
func installElasti() {
	GinkgoHelper()
	By("installing elasti from its Helm chart, with the images built from the tree")
	start := time.Now()
	helm("upgrade", "--install", "elasti", repo.Path("charts", "elasti"),
		"--namespace", "elasti-system", "--create-namespace", "--wait", "--timeout", "3m",
		"--set", "image.tag=dev", "--set", "image.pullPolicy=Never",
		// No Envoy can run here: the resolver has no sidecar and replays straight to pod IPs.
		"--set", "resolver.istio.sidecar=false", "--set", "resolver.upstream=pods",
		// The label injection gives a pod with a sidecar: istiod reads it into istio.tlsMode,
		// which tells callers' proxies to use mTLS.
		"--set-string", `resolver.podLabels.security\.istio\.io/tlsMode=istio`,
		// Without a sidecar no one sets x-forwarded-client-cert for the resolver: the
		// AuthorizationPolicy spec writes the header the sidecar would, from any peer.
		"--set-json", `resolver.extraArgs=["--xfcc-trusted-peers=0.0.0.0/0,::/0"]`,
		"--set", "controller.drainDelay=2s", "--set", "controller.logLevel=debug",
		// Small enough that the tenant flood spec can exceed it, above what any other spec holds.
		"--set", fmt.Sprintf("resolver.maxPendingPerNamespace=%d", namespaceShare))
	// helm --wait sees the pods ready, but kube-proxy programs a reinstall's new ClusterIPs a
	// moment later; until it has, a connection to them is refused.
	for _, port := range []string{"elasti-system/elasti-resolver:proxy", "elasti-system/elasti-controller:http-activity"} {
		Eventually(func() ([]string, error) { return localcluster.KubeProxyTargets(port) }).
			WithTimeout(time.Minute).WithPolling(200*time.Millisecond).ShouldNot(BeEmpty(), "kube-proxy never routed %s", port)
	}
	// A controller uninstalled a moment ago could not release its Lease (helm deleted its RBAC
	// while it stopped), so the new one leads only once that Lease expires.
	Eventually(func(g Gomega) {
		var lease coordinationv1.Lease
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "elasti-system", Name: "elasti-controller.elasti.dev"}, &lease)).To(Succeed())
		g.Expect(lease.Spec.HolderIdentity).NotTo(BeNil())
		var pods corev1.PodList
		g.Expect(k8s.List(ctx, &pods, client.InNamespace("elasti-system"), client.MatchingLabels{"app": "elasti-controller"})).To(Succeed())
		holder, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
		g.Expect(pods.Items).To(ContainElement(HaveField("ObjectMeta.Name", holder)), "the Lease is held by %s", *lease.Spec.HolderIdentity)
	}).WithTimeout(time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
	GinkgoWriter.Printf("elasti installed and ready in %s\n", time.Since(start).Round(100*time.Millisecond))
}

// On a failed spec, print what CI cannot ask for afterwards: every ElastiService's status and
// the tail of the controller's log, which runs at debug level here and logs each decision.
var _ = ReportAfterEach(func(r SpecReport) {
	if !r.Failed() {
		return
	}
	var list v1alpha1.ElastiServiceList
	if err := k8s.List(ctx, &list); err == nil {
		for _, es := range list.Items {
			st, _ := yaml.Marshal(es.Status)
			AddReportEntry("ElastiService "+es.Namespace+"/"+es.Name, string(st))
		}
	}
	cs, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return
	}
	pods, err := cs.CoreV1().Pods("elasti-system").List(ctx, metav1.ListOptions{LabelSelector: "app=elasti-controller"})
	if err != nil {
		return
	}
	tail := int64(150)
	for _, pod := range pods.Items {
		raw, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
		if err == nil {
			AddReportEntry("log of "+pod.Name, string(raw))
		}
	}
})

var _ = AfterSuite(func() {
	if prom != nil {
		_ = prom.Close()
	}
})
