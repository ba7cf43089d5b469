//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/test/localcluster"
)

// realProm is Debian's Prometheus, started by a spec inside the cluster's network namespace on
// the node address, which the controller's pod reaches, and ended by its PID.
type realProm struct {
	cmd *exec.Cmd
	URL string
}

// startPrometheus scrapes the sample app's pods in namespace ns every second.
//
// Debian builds its prometheus without Kubernetes service discovery (kubernetes_sd_configs is an
// unknown field there), so the spec discovers the pods for it: an HTTP service-discovery
// endpoint that lists the namespace's running pods from the API server on every refresh, which
// is what kubernetes_sd_configs with role pod would find. Prometheus asks it every second, so a
// pod that a wake-up starts is scraped as soon as it runs.
func startPrometheus(ns string) *realProm {
	GinkgoHelper()
	dir, err := os.MkdirTemp("", "elasti-prometheus-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	sd := startPodDiscovery(ns)
	lis, err := net.Listen("tcp", localcluster.NodeIP+":0")
	Expect(err).NotTo(HaveOccurred())
	addr := lis.Addr().String()
	Expect(lis.Close()).To(Succeed())

	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: sampleapp
  http_sd_configs:
  - {url: %q, refresh_interval: 1s}
`, sd)
	Expect(os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644)).To(Succeed())
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	Expect(err).NotTo(HaveOccurred())
	p := &realProm{URL: "http://" + addr, cmd: exec.Command("prometheus",
		"--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	Expect(p.cmd.Start()).To(Succeed(), "Debian's prometheus (make cluster-packages installs it)")
	DeferCleanup(func() {
		p.stop()
		logf.Close()
	})
	Eventually(func() (int, error) {
		resp, err := http.Get(p.URL + "/-/ready")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(Equal(http.StatusOK))
	return p
}

// startPodDiscovery serves Prometheus's HTTP service discovery: one target per running pod of
// namespace ns with a container port named http, labelled with its namespace and pod.
func startPodDiscovery(ns string) (url string) {
	GinkgoHelper()
	lis, err := net.Listen("tcp", localcluster.NodeIP+":0")
	Expect(err).NotTo(HaveOccurred())
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var pods corev1.PodList
		if err := k8s.List(r.Context(), &pods, client.InNamespace(ns)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		groups := []group{}
		for _, pod := range pods.Items {
			if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
				continue
			}
			for _, c := range pod.Spec.Containers {
				for _, port := range c.Ports {
					if port.Name == "http" {
						groups = append(groups, group{Targets: []string{net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port.ContainerPort)))},
							Labels: map[string]string{"namespace": pod.Namespace, "pod": pod.Name}})
					}
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(groups)
	})}
	go func() { _ = srv.Serve(lis) }()
	DeferCleanup(srv.Close)
	return "http://" + lis.Addr().String() + "/targets"
}

// stop ends the Prometheus this spec started, by its PID, and waits for it.
func (p *realProm) stop() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// value runs an instant query and returns its single number; ok is false for an empty result.
func (p *realProm) value(q string) (v float64, ok bool, err error) {
	resp, err := http.Get(p.URL + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, false, err
	}
	if body.Status != "success" {
		return 0, false, fmt.Errorf("query %q: status %s", q, body.Status)
	}
	if len(body.Data.Result) == 0 {
		return 0, false, nil
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	v, err = strconv.ParseFloat(s, 64)
	return v, err == nil, err
}

// condition returns the ElastiService's condition of type typ, or nil.
func (a *app) condition(typ string) *metav1.Condition {
	st := a.status()
	return meta.FindStatusCondition(st.Conditions, typ)
}

var _ = Describe("Scale-down policy with a real Prometheus", Ordered, Label("scale-down", "prometheus"), func() {
	const cooldown = 15 * time.Second
	var (
		a     *app
		p     *realProm
		query string
		stop  func() time.Time // stops the steady traffic and returns when its last request ended
	)

	BeforeAll(func() {
		begin := time.Now()
		a = deployApp(3600) // nothing happens until the trigger below is in place
		DeferCleanup(func() { _ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}}) })
		p = startPrometheus(a.ns)
		// Only the callers' requests: the kubelet's readiness probes hit /healthz every second.
		query = fmt.Sprintf(`sum(rate(sampleapp_requests_total{namespace=%q,handler="echo"}[10s]))`, a.ns)

		By("sending steady low traffic, 1 request a second, until Prometheus sees it")
		done := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var last time.Time
		var failures []error
		wg.Go(func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for i := 0; i < 600; i++ { // bounded: 10 minutes at most
				select {
				case <-done:
					return
				case <-tick.C:
				}
				err := a.get("/echo")
				mu.Lock()
				last = time.Now()
				if err != nil {
					failures = append(failures, err)
				}
				mu.Unlock()
			}
		})
		stop = func() time.Time {
			close(done)
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			Expect(failures).To(BeEmpty())
			return last
		}
		DeferCleanup(func() {
			select {
			case <-done:
			default:
				close(done)
				wg.Wait()
			}
		})
		Eventually(func() (float64, error) {
			v, _, err := p.value(query)
			return v, err
		}).WithTimeout(time.Minute).WithPolling(500 * time.Millisecond).Should(BeNumerically(">", 0))

		By(fmt.Sprintf("making the ElastiService's trigger that query, with a cooldown of %s", cooldown))
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, es)).To(Succeed())
		// Older than the cooldown, the ElastiService is idle by everything but the trigger, so
		// the controller asks Prometheus as soon as it sees the trigger: traffic that began a
		// moment ago, after the window's latest aligned step, must already count.
		idleSince := es.CreationTimestamp.Time
		if t := es.Status.LastActivityTime; t != nil && t.After(idleSince) {
			idleSince = t.Time
		}
		time.Sleep(time.Until(idleSince.Add(cooldown + time.Second)))
		before := es.DeepCopy()
		es.Spec.CooldownPeriod = int32(cooldown / time.Second)
		es.Spec.Triggers = []v1alpha1.Trigger{{Type: v1alpha1.TriggerPrometheus,
			Metadata: v1alpha1.TriggerMetadata{ServerAddress: p.URL, Query: query, Threshold: "0"}}}
		// A merge patch: the controller writes the status meanwhile, and an Update would conflict.
		Expect(k8s.Patch(ctx, es, client.MergeFrom(before))).To(Succeed())
		GinkgoWriter.Printf("Prometheus scraping and the trigger in place in %s\n", time.Since(begin).Round(100*time.Millisecond))
	})

	It("never scales down under steady low traffic", func() {
		// The ElastiService is older than the cooldown, so the controller asks Prometheus at once
		// and then every time the cooldown would expire: at least twice in this window.
		Consistently(func(g Gomega) {
			st := a.status()
			g.Expect(st.Mode).To(Equal(v1alpha1.ModeServe))
			g.Expect(st.LastScaledToZeroTime).To(BeNil())
			g.Expect(a.replicas()).To(Equal(int32(1)))
		}).WithTimeout(2*cooldown + 5*time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
		c := a.condition(v1alpha1.ConditionTriggersHealthy)
		Expect(c).NotTo(BeNil(), "the controller never asked Prometheus")
		Expect(c.Status).To(Equal(metav1.ConditionTrue))
		Expect(c.Reason).To(Equal("Active"), "Prometheus did not report the traffic: %s", c.Message)
		GinkgoWriter.Printf("after %s of 1 req/s: Serve, 1 replica, TriggersHealthy %s: %s\n", 2*cooldown+5*time.Second, c.Reason, c.Message)
	})

	It("scales down once traffic stops, and only after the cooldown", func() {
		last := stop()
		Eventually(a.replicas).WithTimeout(2 * time.Minute).WithPolling(250 * time.Millisecond).Should(BeZero())
		var st v1alpha1.ElastiServiceStatus
		Eventually(func(g Gomega) {
			st = a.status()
			g.Expect(st.Mode).To(Equal(v1alpha1.ModeProxy))
			g.Expect(st.LastScaledToZeroTime).NotTo(BeNil())
			g.Expect(st.LastActivityTime).NotTo(BeNil())
		}).WithTimeout(10 * time.Second).Should(Succeed())
		zero, activity := st.LastScaledToZeroTime.Time, st.LastActivityTime.Time
		GinkgoWriter.Printf("last request %s, lastActivityTime %s, lastScaledToZeroTime %s: zero %s after the last request\n",
			last.Format(time.TimeOnly), activity.Format(time.TimeOnly), zero.Format(time.TimeOnly), zero.Sub(last).Round(100*time.Millisecond))
		// Status times are whole seconds, hence the second of slack. These are lower bounds: a
		// slow machine only makes the gaps longer.
		Expect(zero).To(BeTemporally(">=", last.Add(cooldown-time.Second)), "scaled to zero before the cooldown after the last request")
		Expect(zero.Sub(activity)).To(BeNumerically(">=", cooldown-time.Second), "lastScaledToZeroTime is less than a cooldown after lastActivityTime")
		c := a.condition(v1alpha1.ConditionTriggersHealthy)
		Expect(c.Reason).To(Equal("Idle"), c.Message)
	})

	It("never scales down while Prometheus is unreachable, and says so in TriggersHealthy", func() {
		a.toZero()                           // the pod gone, and new connections reaching the resolver
		Expect(a.get("/echo")).To(Succeed()) // held at zero, and wakes the target
		Eventually(func() v1alpha1.Mode { return a.status().Mode }).WithTimeout(time.Minute).Should(Equal(v1alpha1.ModeServe))
		p.stop()
		stopped := time.Now()
		Eventually(func(g Gomega) {
			c := a.condition(v1alpha1.ConditionTriggersHealthy)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal("QueryFailed"))
			g.Expect(c.Message).To(And(ContainSubstring("query failed"), Not(ContainSubstring(p.URL)), ContainSubstring("will not scale to zero")))
		}).WithTimeout(cooldown + time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("TriggersHealthy False %s after Prometheus stopped: %s\n", time.Since(stopped).Round(100*time.Millisecond),
			a.condition(v1alpha1.ConditionTriggersHealthy).Message)
		Consistently(func(g Gomega) {
			g.Expect(a.status().Mode).To(Equal(v1alpha1.ModeServe))
			g.Expect(a.replicas()).To(Equal(int32(1)))
		}).WithTimeout(cooldown + 5*time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	})
})
