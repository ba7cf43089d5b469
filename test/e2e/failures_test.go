//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/testsupport/repo"
)

const (
	elastiNS         = "elasti-system"
	resolverName     = "elasti-resolver"
	controllerName   = "elasti-controller"
	resolverReplicas = 2
)

// answer is how one request of a burst went.
type answer struct {
	id         string
	code       int
	err        error
	via        string // X-Remote-Addr: with upstream=pods, the replaying resolver's pod IP
	retryAfter string
	body       string
	end        time.Time
}

// burstGET sends n concurrent GET /echo, each on its own connection so that kube-proxy spreads
// them over the resolvers, and returns their answers in order.
func burstGET(a *app, prefix string, n int) []answer {
	out := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			out[i] = getOnce(a, fmt.Sprintf("%s-%03d", prefix, i))
		})
	}
	wg.Wait()
	return out
}

// getOnce sends one GET /echo with request id id on a fresh connection.
func getOnce(a *app, id string) answer {
	c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest(http.MethodGet, a.url+"/echo", nil)
	req.Header.Set("X-Request-Id", id)
	resp, err := a.do(c, req)
	if err != nil {
		return answer{id: id, err: err, end: time.Now()}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return answer{id: id, code: resp.StatusCode, via: resp.Header.Get("X-Remote-Addr"),
		retryAfter: resp.Header.Get("Retry-After"), body: string(body), end: time.Now()}
}

// summarize counts answers by outcome, for failure messages.
func summarize(answers []answer) string {
	by := map[string]int{}
	for _, r := range answers {
		k := strconv.Itoa(r.code)
		if r.err != nil {
			k = r.err.Error()
		}
		by[k]++
	}
	return fmt.Sprint(by)
}

// expectExecutedOnce checks that every answer is 200 and that the target executed each exactly once.
func expectExecutedOnce(a *app, answers []answer) {
	GinkgoHelper()
	for _, r := range answers {
		Expect(r.err).NotTo(HaveOccurred(), "request %s", r.id)
		Expect(r.code).To(Equal(http.StatusOK), "request %s: %s", r.id, r.body)
	}
	seen := a.counts()
	for _, r := range answers {
		Expect(seen).To(HaveKeyWithValue(r.id, 1), "request %s was not executed exactly once", r.id)
	}
}

// resolverPods lists the resolver's running pods that are not being deleted.
func resolverPods() []corev1.Pod {
	GinkgoHelper()
	var pods corev1.PodList
	Expect(k8s.List(ctx, &pods, client.InNamespace(elastiNS), client.MatchingLabels{"app": resolverName})).To(Succeed())
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			out = append(out, p)
		}
	}
	return out
}

// watchWake polls a's Deployment and pods every 50 ms from now on; the returned function says when
// the Deployment was first seen scaled up and a pod first seen Ready (zero if not yet).
func watchWake(a *app) func() (scaled, ready time.Time) {
	var mu sync.Mutex
	var scaled, ready time.Time
	stop := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); {
			d := &appsv1.Deployment{}
			var pods corev1.PodList
			now := time.Now()
			if k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, d) == nil && ptr.Deref(d.Spec.Replicas, 0) > 0 {
				mu.Lock()
				if scaled.IsZero() {
					scaled = now
				}
				mu.Unlock()
			}
			if k8s.List(ctx, &pods, client.InNamespace(a.ns)) == nil {
				for _, p := range pods.Items {
					for _, c := range p.Status.Conditions {
						if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
							mu.Lock()
							if ready.IsZero() {
								ready = now
							}
							mu.Unlock()
						}
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() (time.Time, time.Time) {
		close(stop)
		mu.Lock()
		defer mu.Unlock()
		return scaled, ready
	}
}

// heldOn reads how many requests a resolver pod holds now, from its metrics endpoint.
func heldOn(podIP string) (int, error) {
	f, err := podMetric(podIP, "elasti_resolver_pending_requests")
	return int(f), err
}

// podMetric reads an unlabelled metric from a resolver pod's metrics endpoint.
func podMetric(podIP, name string) (float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(podIP, "9090") + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s on %s", name, podIP)
}

// scaleDeployment sets a Deployment's replicas.
func scaleDeployment(ns, name string, n int32) {
	GinkgoHelper()
	d := &appsv1.Deployment{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(Succeed())
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Replicas = ptr.To(n)
	Expect(k8s.Patch(ctx, d, patch)).To(Succeed())
}

// waitDeploymentReady waits until a Deployment of elasti's has n ready, up-to-date replicas
// and no pod left terminating, so the next scenario starts from the installed state.
func waitDeploymentReady(name string, n int32) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		d := &appsv1.Deployment{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: elastiNS, Name: name}, d)).To(Succeed())
		g.Expect(d.Status.ReadyReplicas).To(Equal(n))
		g.Expect(d.Status.UpdatedReplicas).To(Equal(n))
		var pods corev1.PodList
		g.Expect(k8s.List(ctx, &pods, client.InNamespace(elastiNS), client.MatchingLabels{"app": name})).To(Succeed())
		g.Expect(pods.Items).To(HaveLen(int(n)))
	}).WithTimeout(3 * time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
}

// setReadiness replaces the target's readiness probe. Called at zero, it changes no running pod.
func setReadiness(a *app, path string, initialDelay int32) {
	GinkgoHelper()
	d := &appsv1.Deployment{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, d)).To(Succeed())
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1, InitialDelaySeconds: initialDelay,
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(8080)}}}
	Expect(k8s.Patch(ctx, d, patch)).To(Succeed())
}

// removeApp deletes an app's namespace without waiting for it.
func removeApp(a *app) {
	_ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}})
}

// diagnose prints what callers of the app's public Service reach: kube-proxy's rules for it,
// its EndpointSlices and the pods.
func diagnose(a *app) {
	GinkgoWriter.Printf("kube-proxy sends new connections to %s/shop:http to %v\n", a.ns, kubeProxyTargets(a.ns+"/shop:http"))
	var slices discoveryv1.EndpointSliceList
	_ = k8s.List(ctx, &slices, client.InNamespace(a.ns))
	for _, s := range slices.Items {
		GinkgoWriter.Printf("EndpointSlice %s (service %s, managed by %s):\n", s.Name, s.Labels[discoveryv1.LabelServiceName], s.Labels[discoveryv1.LabelManagedBy])
		for _, ep := range s.Endpoints {
			GinkgoWriter.Printf("  %v ready=%v serving=%v terminating=%v\n", ep.Addresses,
				ptr.Deref(ep.Conditions.Ready, true), ptr.Deref(ep.Conditions.Serving, true), ptr.Deref(ep.Conditions.Terminating, false))
		}
	}
	var pods corev1.PodList
	_ = k8s.List(ctx, &pods, client.InNamespace(a.ns))
	for _, p := range pods.Items {
		GinkgoWriter.Printf("pod %s %s %s deleting=%v\n", p.Name, p.Status.PodIP, p.Status.Phase, p.DeletionTimestamp != nil)
	}
	GinkgoWriter.Printf("ElastiService status: %+v\n", a.status())
}

// elastiSliceAddrs lists the addresses of elasti's EndpointSlices for the app's public Service.
func elastiSliceAddrs(a *app) []string {
	var slices discoveryv1.EndpointSliceList
	if err := k8s.List(ctx, &slices, client.InNamespace(a.ns), client.MatchingLabels{
		discoveryv1.LabelServiceName: "shop", discoveryv1.LabelManagedBy: v1alpha1.EndpointSliceManager}); err != nil {
		return []string{err.Error()}
	}
	var addrs []string
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			addrs = append(addrs, ep.Addresses...)
		}
	}
	return addrs
}

// routesIn checks, in g, that every route to the app points where mode says: its VirtualService
// destination, and elasti's EndpointSlice for the public Service (the resolver's ready pods in
// Proxy, none in Serve).
func routesIn(g Gomega, a *app, mode v1alpha1.Mode) {
	vs := &networkingv1.VirtualService{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, vs)).To(Succeed())
	dest := vs.Spec.Http[0].Route[0].GetDestination()
	addrs := elastiSliceAddrs(a)
	if mode == v1alpha1.ModeServe {
		g.Expect(dest.GetHost()).To(Equal("shop"))
		g.Expect(dest.GetSubset()).To(Equal("v1"))
		g.Expect(vs.Annotations).NotTo(HaveKey(v1alpha1.AnnotationOriginalRoutes))
		g.Expect(addrs).To(BeEmpty(), "elasti's EndpointSlice outlived Proxy mode")
		return
	}
	g.Expect(dest.GetHost()).To(Equal("shop-elasti-proxy." + a.ns + ".svc.cluster.local"))
	resolvers := map[string]bool{}
	for _, p := range resolverPods() {
		resolvers[p.Status.PodIP] = true
	}
	g.Expect(addrs).NotTo(BeEmpty(), "no EndpointSlice sends the Service's callers to the resolver")
	for _, ip := range addrs {
		g.Expect(resolvers).To(HaveKey(ip), "elasti's EndpointSlice names %s, not a live resolver pod", ip)
	}
}

var _ = Describe("Failures", Label("failures"), func() {
	BeforeEach(func() {
		prom.Active.Store(false)
		DeferCleanup(func() { prom.Active.Store(false) })
	})

	It("replays what a deleted resolver pod held during its drain, and what the surviving one holds, each exactly once", func() {
		begin := time.Now()
		a := deployApp(5)
		DeferCleanup(removeApp, a)
		a.toZero()
		// The trigger now says busy, so that Serve, once reached, stays; it is not asked at zero.
		prom.Active.Store(true)
		// A target that takes 10 s to become ready after it starts: the window in which
		// requests are held and a resolver pod is deleted.
		setReadiness(a, "/healthz", 10)
		DeferCleanup(waitDeploymentReady, resolverName, int32(resolverReplicas))

		pods := resolverPods()
		Expect(pods).To(HaveLen(resolverReplicas))
		const n = 40
		var first []answer
		burstDone := make(chan struct{})
		go func() {
			defer close(burstDone)
			first = burstGET(a, "held", n)
		}()

		By("waiting until both resolver pods hold part of the burst")
		held := map[string]int{}
		most := 0 // the most held at once, for the failure message
		failures := InterceptGomegaFailures(func() {
			Eventually(func(g Gomega) {
				select {
				case <-burstDone:
					StopTrying("the burst was answered before it was held: " + summarize(first)).Now()
				default:
				}
				total := 0
				for _, p := range pods {
					h, err := heldOn(p.Status.PodIP)
					g.Expect(err).NotTo(HaveOccurred())
					held[p.Status.PodIP] = h
					total += h
				}
				most = max(most, total)
				g.Expect(total).To(Equal(n), "held per resolver pod %v (at most %d at once); elasti's EndpointSlice names %v", held, most, elastiSliceAddrs(a))
				for ip, h := range held {
					g.Expect(h).To(BeNumerically(">", 0), "resolver %s holds nothing", ip)
				}
			}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		})
		if len(failures) > 0 {
			diagnose(a)
			Fail(failures[0])
		}
		// Holding and waking are concurrent: the controller may scale up a moment after the
		// last request is held.
		Eventually(a.replicas).WithTimeout(10*time.Second).WithPolling(100*time.Millisecond).
			Should(Equal(int32(1)), "the held burst did not wake the target")

		victim, survivor := pods[0], pods[1]
		Expect(a.status().ReadyEndpoints).To(BeZero(), "the target became ready before the delete; the test proves nothing")
		By(fmt.Sprintf("deleting resolver pod %s while it holds %d requests and %s holds %d",
			victim.Name, held[victim.Status.PodIP], survivor.Name, held[survivor.Status.PodIP]))
		deletedAt := time.Now()
		Expect(k8s.Delete(ctx, &victim)).To(Succeed())

		By("sending new requests while the target is still waking")
		time.Sleep(time.Second) // let the endpoints drop the terminating pod
		second := burstGET(a, "after", 20)
		<-burstDone
		GinkgoWriter.Printf("held burst and new requests answered %s after the delete\n", time.Since(deletedAt).Round(100*time.Millisecond))

		expectExecutedOnce(a, append(append([]answer(nil), first...), second...))
		byVictim := 0
		for _, r := range first {
			if r.via == victim.Status.PodIP {
				byVictim++
				Expect(r.end).To(BeTemporally(">", deletedAt))
			}
		}
		GinkgoWriter.Printf("the deleted pod replayed %d of the %d it held, during its drain\n", byVictim, held[victim.Status.PodIP])
		Expect(byVictim).To(Equal(held[victim.Status.PodIP]), "what the deleted resolver held was not replayed by it")

		Eventually(func(g Gomega) {
			st := a.status()
			g.Expect(st.Mode).To(Equal(v1alpha1.ModeServe))
			g.Expect(st.ReadyEndpoints).To(BeNumerically(">=", 1))
			routesIn(g, a, v1alpha1.ModeServe)
		}).WithTimeout(time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("resolver pod deletion scenario took %s\n", time.Since(begin).Round(100*time.Millisecond))
	})

	It("answers a request still held when a stopping resolver's drain runs out with 503 and Retry-After, not a closed connection", func() {
		a := deployApp(5)
		DeferCleanup(removeApp, a)
		a.toZero()
		// Its pods run and never turn ready: the request stays held.
		setReadiness(a, "/never-ready", 0)
		DeferCleanup(setReadiness, a, "/healthz", int32(0))

		By("giving the resolver a short drain")
		DeferCleanup(installElasti) // the suite's values again, without the extra flag
		helm("upgrade", "elasti", repo.Path("charts", "elasti"), "--namespace", elastiNS, "--reuse-values",
			"--set", "resolver.extraArgs={--drain-timeout=3s}", "--wait", "--timeout", "3m")
		waitDeploymentReady(resolverName, resolverReplicas)
		pod := resolverPods()[0]

		type result struct {
			code        int
			retry, body string
			err         error
		}
		done := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, "http://"+net.JoinHostPort(pod.Status.PodIP, "8012")+"/echo", nil)
			req.Host = "shop." + a.ns
			resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
			if err != nil {
				done <- result{err: err}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- result{code: resp.StatusCode, retry: resp.Header.Get("Retry-After"), body: string(body)}
		}()
		Eventually(func() (int, error) { return heldOn(pod.Status.PodIP) }).WithTimeout(30 * time.Second).
			WithPolling(100 * time.Millisecond).Should(BeNumerically(">=", 1))

		By("deleting the resolver pod that holds it")
		deleted := time.Now()
		Expect(k8s.Delete(ctx, &pod)).To(Succeed())
		var r result
		Eventually(done).WithTimeout(time.Minute).Should(Receive(&r))
		GinkgoWriter.Printf("the held request got %d (Retry-After %q) %s after its resolver pod was deleted: %s\n",
			r.code, r.retry, time.Since(deleted).Round(100*time.Millisecond), strings.TrimSpace(r.body))
		Expect(r.err).NotTo(HaveOccurred(), "the caller got no status")
		Expect(r.code).To(Equal(http.StatusServiceUnavailable))
		Expect(r.retry).NotTo(BeEmpty())
		Expect(r.body).To(ContainSubstring("shutting down"))
	})

	It("fails open when every resolver pod is gone: the target comes up and callers go straight to it", func() {
		begin := time.Now()
		a := deployApp(5)
		DeferCleanup(removeApp, a)
		a.toZero()
		Eventually(func(g Gomega) { routesIn(g, a, v1alpha1.ModeProxy) }).WithTimeout(30 * time.Second).Should(Succeed())

		By("scaling the resolver to zero")
		DeferCleanup(func() {
			scaleDeployment(elastiNS, resolverName, resolverReplicas)
			waitDeploymentReady(resolverName, resolverReplicas)
		})
		timeline := watchWake(a)
		scaleDeployment(elastiNS, resolverName, 0)
		gone := time.Now()
		Eventually(func(g Gomega) {
			st := a.status()
			g.Expect(st.Mode).To(Equal(v1alpha1.ModeServe))
			g.Expect(st.ReadyEndpoints).To(BeNumerically(">=", 1))
			g.Expect(a.replicas()).To(Equal(int32(1)))
			g.Expect(conditionStatus(st, v1alpha1.ConditionResolverReady)).To(Equal(metav1.ConditionFalse))
			routesIn(g, a, v1alpha1.ModeServe)
		}).WithTimeout(time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("failed open (Serve, target ready, routes restored) %s after the resolver was scaled to zero\n",
			time.Since(gone).Round(100*time.Millisecond))
		Expect(resolverPods()).To(BeEmpty())
		// kube-proxy programs the target's endpoint about a second after it is ready; until
		// then a new connection is refused (nothing elasti can route to either).
		var ok string
		for i := 0; ok == "" && i < 100; i++ {
			r := getOnce(a, fmt.Sprintf("fail-open-%02d", i))
			if r.err == nil && r.code == http.StatusOK {
				ok = r.id
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		Expect(ok).NotTo(BeEmpty(), "no request reached the target after it failed open")
		first := time.Now()
		scaled, ready := timeline()
		Expect(scaled).NotTo(BeZero())
		Expect(ready).NotTo(BeZero())
		// The target's own start is from its scale-up to its pod's readiness; the rest is
		// elasti's: noticing the resolvers are gone, and routing callers to the pod once ready.
		own := ready.Sub(scaled)
		elasti := first.Sub(gone) - own
		GinkgoWriter.Printf("fail open: first 200 %s after the resolvers went: noticed and scaled up in %s, the target's own start %s, routed in %s; elasti's part %s\n",
			first.Sub(gone).Round(10*time.Millisecond), scaled.Sub(gone).Round(10*time.Millisecond), own.Round(10*time.Millisecond),
			first.Sub(ready).Round(10*time.Millisecond), elasti.Round(10*time.Millisecond))
		Expect(elasti).To(BeNumerically("<=", 3*time.Second), "failing open took more than 3 s beyond the target's own start")
		Expect(a.counts()).To(HaveKeyWithValue(ok, 1))
		GinkgoWriter.Printf("fail-open scenario took %s\n", time.Since(begin).Round(100*time.Millisecond))
	})

	Context("when the controller restarts in the middle of a switch", func() {
		// The leader goes; a standby, or the leader's replacement, takes over from the Lease.
		restartController := func() {
			GinkgoHelper()
			d := &appsv1.Deployment{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: elastiNS, Name: controllerName}, d)).To(Succeed())
			leader, _, _ := leadingPod()
			Expect(k8s.Delete(ctx, leader)).To(Succeed())
			DeferCleanup(waitDeploymentReady, controllerName, ptr.Deref(d.Spec.Replicas, 1))
		}

		It("converges to Serve with ready endpoints when restarted right after a wake", func() {
			begin := time.Now()
			a := deployApp(5)
			DeferCleanup(removeApp, a)
			a.toZero()
			prom.Active.Store(true) // busy once up: Serve is where it must converge
			setReadiness(a, "/healthz", 5)

			var r answer
			done := make(chan struct{})
			go func() { defer close(done); r = getOnce(a, "restart-wake") }()
			if failures := InterceptGomegaFailures(func() {
				Eventually(a.replicas).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Equal(int32(1)))
			}); len(failures) > 0 {
				diagnose(a)
				Fail("the request at zero did not wake the target: " + failures[0])
			}
			st := a.status()
			Expect(st.Mode).To(Equal(v1alpha1.ModeProxy))
			Expect(st.ReadyEndpoints).To(BeZero())
			By("deleting the controller pod once the wake is written, before the target is ready")
			restarted := time.Now()
			restartController()

			<-done
			Expect(r.err).NotTo(HaveOccurred())
			Expect(r.code).To(Equal(http.StatusOK), r.body)
			Eventually(func(g Gomega) {
				st := a.status()
				g.Expect(st.Mode).To(Equal(v1alpha1.ModeServe))
				g.Expect(st.ReadyEndpoints).To(BeNumerically(">=", 1))
				g.Expect(a.replicas()).To(Equal(int32(1)))
				routesIn(g, a, v1alpha1.ModeServe)
			}).WithTimeout(2 * time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
			GinkgoWriter.Printf("converged to Serve %s after the controller pod was deleted\n", time.Since(restarted).Round(100*time.Millisecond))
			Expect(a.counts()).To(HaveKeyWithValue("restart-wake", 1))
			GinkgoWriter.Printf("restart-after-wake scenario took %s\n", time.Since(begin).Round(100*time.Millisecond))
		})

		It("converges to Proxy at zero when restarted right after Proxy is written, and still wakes", func() {
			begin := time.Now()
			a := deployApp(5)
			DeferCleanup(removeApp, a)
			By("waiting for Proxy mode, before the drain delay lets the target go to zero")
			Eventually(func() v1alpha1.Mode { return a.status().Mode }).WithTimeout(time.Minute).WithPolling(50 * time.Millisecond).
				Should(Equal(v1alpha1.ModeProxy))
			Expect(a.replicas()).To(Equal(int32(1)), "the target went to zero before the delete; the test proves nothing")
			restarted := time.Now()
			restartController()

			Eventually(func(g Gomega) {
				g.Expect(a.status().Mode).To(Equal(v1alpha1.ModeProxy))
				g.Expect(a.replicas()).To(BeZero())
				routesIn(g, a, v1alpha1.ModeProxy)
			}).WithTimeout(2 * time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
			GinkgoWriter.Printf("converged to Proxy at zero %s after the controller pod was deleted\n", time.Since(restarted).Round(100*time.Millisecond))

			By("waking through the restarted controller")
			a.toZero()
			r := getOnce(a, "restart-proxy")
			Expect(r.err).NotTo(HaveOccurred())
			Expect(r.code).To(Equal(http.StatusOK), r.body)
			Expect(a.counts()).To(HaveKeyWithValue("restart-proxy", 1))
			GinkgoWriter.Printf("restart-after-proxy scenario took %s\n", time.Since(begin).Round(100*time.Millisecond))
		})
	})
})

// conditionStatus returns the status of an ElastiService condition, or "" if it is not set.
func conditionStatus(st v1alpha1.ElastiServiceStatus, typ string) metav1.ConditionStatus {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

var _ = Describe("Bad input: queue limits", Label("bad-input"), Ordered, func() {
	var a *app
	const maxPending, holdTimeout = 2, 4 * time.Second
	BeforeAll(func() {
		prom.Active.Store(false)
		a = deployApp(5)
		// The resolvers learn the limits while the target goes to zero.
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, es)).To(Succeed())
		patch := client.MergeFrom(es.DeepCopy())
		es.Spec.Queue = &v1alpha1.QueueSettings{MaxPending: ptr.To[int32](maxPending), HoldTimeout: &metav1.Duration{Duration: holdTimeout}}
		Expect(k8s.Patch(ctx, es, patch)).To(Succeed())
		a.toZero()
		// A target that never becomes ready: every held request waits out the hold timeout.
		setReadiness(a, "/never-ready", 0)
		DeferCleanup(func() {
			// Ready again, so that the finalizer does not wait for it when the namespace goes.
			setReadiness(a, "/healthz", 0)
			removeApp(a)
		})
	})

	It("answers 503 with Retry-After once the queue is full", func() {
		const n = 12
		answers := burstGET(a, "full", n)
		full, timedOut := 0, 0
		for _, r := range answers {
			Expect(r.err).NotTo(HaveOccurred(), "request %s", r.id)
			switch r.code {
			case http.StatusServiceUnavailable:
				full++
				Expect(r.retryAfter).NotTo(BeEmpty(), "503 without Retry-After")
				Expect(r.body).To(ContainSubstring("too many requests held"))
			case http.StatusGatewayTimeout:
				timedOut++
			default:
				Fail(fmt.Sprintf("request %s: %d %s", r.id, r.code, r.body))
			}
		}
		GinkgoWriter.Printf("%d requests at once, queue %d per resolver: %d answered 503, %d held until 504\n", n, maxPending, full, timedOut)
		Expect(full).To(BeNumerically(">=", n-maxPending*resolverReplicas))
		Expect(timedOut).To(And(BeNumerically(">=", 1), BeNumerically("<=", maxPending*resolverReplicas)))
	})

	It("answers 504 when the target is not ready within the hold timeout", func() {
		start := time.Now()
		r := getOnce(a, "timeout")
		held := time.Since(start)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusGatewayTimeout), r.body)
		Expect(r.body).To(ContainSubstring("did not become ready within " + holdTimeout.String()))
		GinkgoWriter.Printf("504 after %s (hold timeout %s)\n", held.Round(10*time.Millisecond), holdTimeout)
		Expect(held).To(BeNumerically(">=", holdTimeout))
	})
})
