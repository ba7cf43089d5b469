//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// Load across the switch.
//
// How the cycles are driven. In Serve mode callers reach the target's pod straight through
// kube-proxy, and elasti hears of their traffic only from the triggers. The fake Prometheus says
// idle throughout: it stands for traffic the trigger's metric does not count. So each time the
// cooldown expires, the controller switches to Proxy (adds the resolver's pods to the Service's
// endpoints) while the load keeps flowing. The load runs on a fixed set of kept-alive
// connections that kube-proxy pinned to the pod, so no request reaches the resolver during the
// drain delay, and the controller scales the target to zero. The pod drains like a well-behaved
// server (SHUTDOWN_DELAY: it answers with Connection: close for a few seconds before it exits),
// the callers reconnect and now reach the resolver, which holds them and wakes the target, then
// replays them once a pod is ready; the controller switches back to Serve, and the resolver
// answers the callers still connected to it with Connection: close. Every step of
// serve -> proxy -> zero -> wake -> serve has requests in flight. A request that reaches the
// resolver while the target is still up counts as activity and sends the controller back to
// Serve without going to zero: such an aborted cycle is reported and not counted.
const (
	loadWorkers  = 5
	loadInterval = 100 * time.Millisecond // per worker: 50 requests a second in all
	loadCycles   = 5
	loadMaxTime  = 3 * time.Minute
)

// sample is one request of the load.
type sample struct {
	id         string
	start, end time.Time
	code       int
	err        error
	conn       net.Conn // identity of the connection, from httptrace
	reused     bool
	viaRes     bool // the pod saw the resolver's address as the caller
	closeAsked bool // the response said Connection: close
}

// statusEvent is the ElastiService's status as a watch delivered it, with the local time.
type statusEvent struct {
	at       time.Time
	mode     v1alpha1.Mode
	toZero   time.Time
	scaledUp time.Time
}

// cycle is one observed serve -> proxy -> zero -> wake -> serve.
type cycle struct {
	proxy, zero, woken, serve time.Time
}

// watchStatus records every status the API server reports for the ElastiService until ctx ends.
func watchStatus(ctx context.Context, ns, name string) (events func() []statusEvent) {
	GinkgoHelper()
	cfg, err := config.GetConfig()
	Expect(err).NotTo(HaveOccurred())
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: k8s.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	var mu sync.Mutex
	var log []statusEvent
	go func() {
		defer GinkgoRecover()
		for ctx.Err() == nil {
			w, err := wc.Watch(ctx, &v1alpha1.ElastiServiceList{}, client.InNamespace(ns))
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				es, ok := ev.Object.(*v1alpha1.ElastiService)
				if !ok || es.Name != name {
					continue
				}
				mu.Lock()
				log = append(log, statusEvent{at: time.Now(), mode: es.Status.Mode,
					toZero: timeOf(es.Status.LastScaledToZeroTime), scaledUp: timeOf(es.Status.LastScaledUpTime)})
				mu.Unlock()
			}
			w.Stop()
		}
	}()
	return func() []statusEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]statusEvent(nil), log...)
	}
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// cycles finds the full cycles in a status log, and counts the Proxy periods that went back to
// Serve without reaching zero.
func cycles(log []statusEvent) (full []cycle, aborted int) {
	var cur *cycle
	var prev statusEvent
	for i, ev := range log {
		if i == 0 {
			prev = ev
			continue
		}
		switch {
		case ev.mode == v1alpha1.ModeProxy && prev.mode == v1alpha1.ModeServe:
			cur = &cycle{proxy: ev.at}
		case cur == nil:
		case cur.zero.IsZero() && ev.toZero.After(prev.toZero):
			cur.zero = ev.at
		case !cur.zero.IsZero() && cur.woken.IsZero() && ev.scaledUp.After(prev.scaledUp):
			cur.woken = ev.at
		}
		if cur != nil && ev.mode == v1alpha1.ModeServe && prev.mode == v1alpha1.ModeProxy {
			if cur.woken.IsZero() {
				aborted++
			} else {
				cur.serve = ev.at
				full = append(full, *cur)
			}
			cur = nil
		}
		prev = ev
	}
	return full, aborted
}

var _ = Describe("Load across the switch", Label("load"), func() {
	It("serves continuous load through 5 cycles to zero and back with no error, no duplicate, and kept-alive connections reused across the switches", func(sctx SpecContext) {
		begin := time.Now()
		prom.Active.Store(false)
		a := deployApp(3600) // no cycle until the load runs
		DeferCleanup(func() { _ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}}) })

		By("giving the target a ledger that outlives its pods, and a graceful shutdown")
		ledger := withLedger(a)

		resolverIPs := map[string]bool{}
		var pods corev1.PodList
		Expect(k8s.List(ctx, &pods, client.InNamespace("elasti-system"), client.MatchingLabels{"app": "elasti-resolver"})).To(Succeed())
		for _, p := range pods.Items {
			resolverIPs[p.Status.PodIP] = true
		}
		Expect(resolverIPs).NotTo(BeEmpty())

		wctx, stopWatch := context.WithCancel(sctx)
		defer stopWatch()
		statusLog := watchStatus(wctx, a.ns, "shop")

		By(fmt.Sprintf("sending %d req/s on %d kept-alive connections until %d cycles are done", int(loadWorkers*time.Second/loadInterval), loadWorkers, loadCycles))
		hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
			MaxIdleConnsPerHost: loadWorkers, IdleConnTimeout: 5 * time.Minute}}
		defer hc.CloseIdleConnections()
		lctx, stopLoad := context.WithTimeout(sctx, loadMaxTime)
		defer stopLoad()
		waitLoad := tickLoad(lctx, loadWorkers, loadInterval, func(w, seq int) (sample, bool) {
			return send(hc, a, fmt.Sprintf("load-%d-%05d", w, seq), resolverIPs), true
		})
		loadStart := time.Now()
		// Only now may the target go idle; the first cycle starts after this cooldown.
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, es)).To(Succeed())
		es.Spec.CooldownPeriod = 5
		Expect(k8s.Update(ctx, es)).To(Succeed())

		// Stop a little after the last cycle's switch back to Serve, so that requests on
		// connections the resolver holds are seen after it.
		Eventually(func() int {
			full, _ := cycles(statusLog())
			if len(full) >= loadCycles && time.Since(full[loadCycles-1].serve) > 2*time.Second {
				return len(full)
			}
			return 0
		}).WithContext(lctx).WithTimeout(loadMaxTime).WithPolling(250 * time.Millisecond).Should(BeNumerically(">=", loadCycles))
		stopLoad()
		samples := waitLoad()
		stopWatch()
		loadTime := time.Since(loadStart)

		full, aborted := cycles(statusLog())
		GinkgoWriter.Printf("load: %d requests in %s (%.1f/s), %d full cycles, %d aborted (the resolver saw traffic while the target was up)\n",
			len(samples), loadTime.Round(100*time.Millisecond), float64(len(samples))/loadTime.Seconds(), len(full), aborted)
		for i, cy := range full {
			GinkgoWriter.Printf("  cycle %d: proxy +%s, zero +%s, woken +%s, serve +%s (serve to serve %s)\n", i+1,
				cy.proxy.Sub(loadStart).Round(100*time.Millisecond), cy.zero.Sub(cy.proxy).Round(100*time.Millisecond),
				cy.woken.Sub(cy.proxy).Round(100*time.Millisecond), cy.serve.Sub(cy.proxy).Round(100*time.Millisecond),
				func() time.Duration {
					if i == 0 {
						return 0
					}
					return cy.serve.Sub(full[i-1].serve).Round(100 * time.Millisecond)
				}())
		}

		By("every request answered 2xx")
		var failed []string
		var slowest time.Duration
		for _, s := range samples {
			if s.err != nil || s.code/100 != 2 {
				failed = append(failed, fmt.Sprintf("%s at +%s: %d %v", s.id, s.start.Sub(loadStart).Round(time.Millisecond), s.code, s.err))
			}
			slowest = max(slowest, s.end.Sub(s.start))
		}
		GinkgoWriter.Printf("  slowest response %s (held while the target woke)\n", slowest.Round(10*time.Millisecond))
		Expect(failed).To(BeEmpty(), "%d of %d requests failed", len(failed), len(samples))

		By("every request executed exactly once, by the ledger the pods appended to")
		executed := readLedger(ledger)
		var dup, missing []string
		for _, s := range samples {
			switch n := executed[s.id]; {
			case n > 1:
				dup = append(dup, fmt.Sprintf("%s x%d", s.id, n))
			case n == 0:
				missing = append(missing, s.id)
			}
		}
		Expect(dup).To(BeEmpty(), "requests executed more than once")
		Expect(missing).To(BeEmpty(), "requests answered 2xx but never executed")
		Expect(executed).To(HaveLen(len(samples)), "the ledger holds ids nobody sent")

		By("kept-alive connections reused across every switch")
		Expect(len(full)).To(BeNumerically(">=", loadCycles))
		type connUse struct {
			first  time.Time
			viaRes bool
		}
		conns := map[net.Conn]*connUse{}
		reused, closes := 0, 0
		for _, s := range samples {
			if s.reused {
				reused++
			}
			if s.closeAsked {
				closes++
			}
			if conns[s.conn] == nil {
				conns[s.conn] = &connUse{first: s.start, viaRes: s.viaRes}
			}
		}
		GinkgoWriter.Printf("  %d connections for %d requests; %d requests on a reused connection; %d answers asked the caller to reconnect\n",
			len(conns), len(samples), reused, closes)
		for i, cy := range full {
			// Into Proxy: connections to the pod, opened in Serve, keep serving after the switch.
			// Back to Serve: connections opened to the resolver while the target was away
			// still answer after the switch (the resolver then asks the caller to reconnect).
			// A request is after the switch back to Serve if it started after the watch saw
			// it, or if the resolver answered it with Connection: close, which it does only
			// once it has seen Serve itself (its watch may be a little ahead of this one).
			intoProxy, toResolver, backToServe := map[net.Conn]bool{}, map[net.Conn]bool{}, map[net.Conn]bool{}
			for _, s := range samples {
				u := conns[s.conn]
				if u.viaRes && u.first.After(cy.proxy) && u.first.Before(cy.serve) {
					toResolver[s.conn] = true
				}
				if !s.reused || s.err != nil || s.code/100 != 2 {
					continue
				}
				// Until the switch back, not only until zero: the watch may deliver the switch to
				// Proxy late, even together with zero, and a pod told to stop still answers on its
				// connections for its shutdown delay.
				if u.first.Before(cy.proxy) && s.start.After(cy.proxy) && s.start.Before(cy.serve) && !u.viaRes {
					intoProxy[s.conn] = true
				}
				if toResolver[s.conn] && (s.start.After(cy.serve) || s.closeAsked) {
					backToServe[s.conn] = true
				}
			}
			GinkgoWriter.Printf("  cycle %d: %d connections reused into Proxy; %d opened to the resolver, %d of them reused after the switch back to Serve\n",
				i+1, len(intoProxy), len(toResolver), len(backToServe))
			Expect(intoProxy).NotTo(BeEmpty(), "cycle %d: no kept-alive connection served across the switch to Proxy; requests by connection: %s",
				i+1, connTimeline(samples, cy))
			Expect(backToServe).NotTo(BeEmpty(), "cycle %d: no connection opened to the resolver served after the switch back to Serve", i+1)
		}
		GinkgoWriter.Printf("load scenario took %s\n", time.Since(begin).Round(100*time.Millisecond))
	}, SpecTimeout(5*time.Minute))
})

// connTimeline describes, for the connections used in cy, each one's requests (start relative to
// the switch to Proxy, status, reused, via the resolver), for a failure message.
func connTimeline(samples []sample, cy cycle) string {
	var b strings.Builder
	byConn := map[net.Conn][]string{}
	var order []net.Conn
	for _, s := range samples {
		if s.start.Before(cy.proxy.Add(-3*time.Second)) || s.start.After(cy.serve) {
			continue
		}
		if byConn[s.conn] == nil {
			order = append(order, s.conn)
		}
		byConn[s.conn] = append(byConn[s.conn], fmt.Sprintf("%+.1fs:%d:r=%t:res=%t", s.start.Sub(cy.proxy).Seconds(), s.code, s.reused, s.viaRes))
	}
	for i, c := range order {
		reqs := byConn[c]
		if len(reqs) > 6 {
			reqs = append(reqs[:3], append([]string{"..."}, reqs[len(reqs)-3:]...)...)
		}
		fmt.Fprintf(&b, "\n  conn %d: %s", i+1, strings.Join(reqs, " "))
	}
	fmt.Fprintf(&b, "\n  zero at %+.1fs, serve at %+.1fs", cy.zero.Sub(cy.proxy).Seconds(), cy.serve.Sub(cy.proxy).Seconds())
	return b.String()
}

// tickLoad starts workers that each call fire(worker, seq) every interval until ctx ends; the
// returned function waits for them and returns what fire returned with true.
func tickLoad[T any](ctx context.Context, workers int, interval time.Duration, fire func(w, seq int) (T, bool)) func() []T {
	var mu sync.Mutex
	var out []T
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if r, ok := fire(w, seq); ok {
					mu.Lock()
					out = append(out, r)
					mu.Unlock()
				}
			}
		})
	}
	return func() []T {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return out
	}
}

// withLedger gives a's pods a ledger of executed request ids in a host directory, so that it
// outlives them, and a graceful shutdown; it returns the ledger's path on the host.
func withLedger(a *app) string {
	GinkgoHelper()
	ledger, err := os.MkdirTemp("", "elasti-ledger-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, ledger)
	Expect(os.Chmod(ledger, 0o777)).To(Succeed()) // the app runs as uid 65532
	d := &appsv1.Deployment{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, d)).To(Succeed())
	spec := &d.Spec.Template.Spec
	spec.TerminationGracePeriodSeconds = ptr.To[int64](15)
	spec.Volumes = []corev1.Volume{{Name: "ledger", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: ledger, Type: ptr.To(corev1.HostPathDirectory)}}}}
	c := &spec.Containers[0]
	c.Env = []corev1.EnvVar{{Name: "LEDGER", Value: "/ledger/ids"}, {Name: "SHUTDOWN_DELAY", Value: "5s"}}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "ledger", MountPath: "/ledger"}}
	Expect(k8s.Update(ctx, d)).To(Succeed())
	// Each probe on a fresh connection with a short timeout: a SYN sent while kube-proxy
	// still pointed at the old pod is retransmitted to it, by conntrack, until it times out.
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	Eventually(func(g Gomega) {
		var pods corev1.PodList
		g.Expect(k8s.List(ctx, &pods, client.InNamespace(a.ns))).To(Succeed())
		g.Expect(pods.Items).To(HaveLen(1))
		g.Expect(pods.Items[0].Spec.Volumes).To(ContainElement(HaveField("Name", "ledger")))
		req, _ := http.NewRequest(http.MethodGet, a.url+"/healthz", nil)
		resp, err := a.do(probe, req)
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
	}).WithTimeout(time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
	return filepath.Join(ledger, "ids")
}

// send POSTs one request of the load (POST, so that the client never retries it by itself and a
// failure shows) and records how it went.
func send(hc *http.Client, a *app, id string, resolverIPs map[string]bool) sample {
	s := sample{id: id, start: time.Now()}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { s.conn, s.reused = info.Conn, info.Reused }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
		http.MethodPost, a.url+"/echo", strings.NewReader("load"))
	req.Header.Set("X-Request-Id", id)
	resp, err := a.do(hc, req)
	if err != nil {
		s.err, s.end = err, time.Now()
		return s
	}
	_, s.err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.end, s.code, s.closeAsked = time.Now(), resp.StatusCode, resp.Close
	s.viaRes = resolverIPs[resp.Header.Get("X-Remote-Addr")]
	return s
}

// readLedger counts the request ids the sample app appended to its ledger.
func readLedger(path string) map[string]int {
	GinkgoHelper()
	f, err := os.Open(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out[sc.Text()]++
	}
	Expect(sc.Err()).NotTo(HaveOccurred())
	return out
}
