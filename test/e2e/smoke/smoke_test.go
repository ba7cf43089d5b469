//go:build e2e

// Package smoke proves the local-cluster harness on its own, without elasti: it starts a cluster
// through localcluster.Start (or attaches to a running one), runs the sample app behind a
// Service, scales it from zero, reaches it by ClusterIP from inside the cluster's network
// namespace, and reads a VirtualService's route back from istiod over xDS.
//
//	go test -tags e2e ./test/e2e/smoke -ginkgo.label-filter=smoke
//
// By default it uses its own namespace and state directory (elasti-smoke, .cache/cluster-smoke),
// so it can run beside a cluster started by make cluster-up. ELASTI_CLUSTER_ATTACH=1 attaches to
// that cluster instead.
package smoke

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/elasti-dev/elasti/internal/testsupport/repo"
	"github.com/elasti-dev/elasti/test/localcluster"
)

var (
	cluster *localcluster.Cluster
	started bool
)

func TestSmoke(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "local cluster smoke")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	root := repo.Root()
	o := localcluster.Options{
		Dir:    filepath.Join(root, ".cache", "cluster-smoke"),
		BinDir: filepath.Join(root, ".cache", "cluster", "bin"),
		Netns:  "elasti-smoke",
		Images: []string{filepath.Join(root, "dist", "images", "sampleapp.tar"), filepath.Join(root, "dist", "images", "pause.tar")},
		Log:    GinkgoWriter,
		Repo:   root,
	}
	var err error
	if os.Getenv("ELASTI_CLUSTER_ATTACH") != "" {
		o.Dir, o.Netns = filepath.Join(root, ".cache", "cluster"), "elasti"
		cluster, err = localcluster.Attach(o)
		Expect(err).NotTo(HaveOccurred())
		return
	}
	o.IstioCRDs, err = repo.IstioCRDs()
	Expect(err).NotTo(HaveOccurred())
	start := time.Now()
	cluster, err = localcluster.Start(ctx, o)
	Expect(err).NotTo(HaveOccurred())
	started = true
	fmt.Fprintf(GinkgoWriter, "cluster up in %s\n", time.Since(start).Round(100*time.Millisecond))
}, NodeTimeout(5*time.Minute))

// Ginkgo runs AfterSuite on failure and on Ctrl-C, so the cluster never outlives the run.
var _ = AfterSuite(func() {
	if started {
		start := time.Now()
		Expect(cluster.Down()).To(Succeed())
		fmt.Fprintf(GinkgoWriter, "cluster down in %s\n", time.Since(start).Round(100*time.Millisecond))
	}
})

const workload = `apiVersion: v1
kind: Namespace
metadata: {name: smoke}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: target, namespace: smoke}
spec:
  replicas: 0
  selector: {matchLabels: {app: target}}
  template:
    metadata: {labels: {app: target, version: v1}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: docker.io/elasti/sampleapp:dev
        imagePullPolicy: Never
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: target, namespace: smoke}
spec:
  selector: {app: target}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: stand-in, namespace: smoke}
spec:
  ports: [{name: http, port: 8012}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: target, namespace: smoke}
spec:
  host: target.smoke.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: target, namespace: smoke}
spec:
  hosts: [target.smoke.svc.cluster.local]
  http:
  - route:
    - destination: {host: target.smoke.svc.cluster.local, subset: v1, port: {number: 80}}
`

var _ = Describe("local cluster", Ordered, Label("smoke"), func() {
	BeforeAll(func(ctx SpecContext) {
		f := filepath.Join(GinkgoT().TempDir(), "workload.yaml")
		Expect(os.WriteFile(f, []byte(workload), 0o644)).To(Succeed())
		Expect(cluster.Kubectl(ctx, "apply", "-f", f)).Error().NotTo(HaveOccurred())
	})

	It("serves the sample app through its ClusterIP after a scale from zero", func(ctx SpecContext) {
		ip, err := cluster.Kubectl(ctx, "-n", "smoke", "get", "service", "target", "-o", "jsonpath={.spec.clusterIP}")
		Expect(err).NotTo(HaveOccurred())
		start := time.Now()
		Expect(cluster.Kubectl(ctx, "-n", "smoke", "scale", "deployment", "target", "--replicas=1")).Error().NotTo(HaveOccurred())

		hc := cluster.HTTPClient()
		hc.Timeout = 2 * time.Second
		get := func(url, id string) (int, string, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return 0, "", err
			}
			req.Header.Set("X-Request-Id", id)
			resp, err := hc.Do(req)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b), err
		}
		// kube-proxy programs a new endpoint about a second after the pod is ready: poll.
		Eventually(func() (int, error) {
			code, _, err := get("http://"+ip+"/echo", "")
			return code, err
		}).WithContext(ctx).WithTimeout(90 * time.Second).WithPolling(200 * time.Millisecond).Should(Equal(http.StatusOK))
		fmt.Fprintf(GinkgoWriter, "scale 0->1 until 200 through the ClusterIP: %s\n", time.Since(start).Round(10*time.Millisecond))

		// One request by DNS name, then the app's ledger must show it exactly once.
		id := fmt.Sprintf("smoke-%d", time.Now().UnixNano())
		code, _, err := get("http://target.smoke.svc.cluster.local/echo", id)
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusOK))
		_, body, err := get("http://"+ip+"/counts", "")
		Expect(err).NotTo(HaveOccurred())
		var counts map[string]int
		Expect(json.Unmarshal([]byte(body), &counts)).To(Succeed())
		Expect(counts).To(HaveKeyWithValue(id, 1))
	}, SpecTimeout(2*time.Minute))

	It("reads a VirtualService's route back from istiod over xDS", func(ctx SpecContext) {
		const host = "target.smoke.svc.cluster.local"
		clusters := func() ([]string, error) {
			out, err := cluster.XDSRoutes(ctx, "smoke", "80", host)
			if err != nil {
				return nil, err
			}
			return routeClusters(out)
		}
		Eventually(clusters).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).
			Should(ContainElement("outbound|80|v1|" + host))

		patch := `[{"op":"replace","path":"/spec/http/0/route/0/destination","value":{"host":"stand-in.smoke.svc.cluster.local","port":{"number":8012}}}]`
		Expect(cluster.Kubectl(ctx, "-n", "smoke", "patch", "virtualservice", "target", "--type=json", "-p", patch)).Error().NotTo(HaveOccurred())
		Eventually(clusters).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).
			Should(And(ContainElement("outbound|8012||stand-in.smoke.svc.cluster.local"), Not(ContainElement("outbound|80|v1|"+host))))
	}, SpecTimeout(2*time.Minute))
})

// routeClusters lists every cluster that xdsprobe's JSON routes to.
func routeClusters(probeJSON string) ([]string, error) {
	var rcs []struct {
		VirtualHosts []struct {
			Routes []struct {
				Clusters []struct{ Name string } `json:"clusters"`
			} `json:"routes"`
		} `json:"virtualHosts"`
	}
	if err := json.Unmarshal([]byte(probeJSON), &rcs); err != nil {
		return nil, err
	}
	var out []string
	for _, rc := range rcs {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				for _, c := range r.Clusters {
					out = append(out, c.Name)
				}
			}
		}
	}
	return out, nil
}
