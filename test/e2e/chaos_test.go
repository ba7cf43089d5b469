//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/testsupport/repo"
	"github.com/elasti-dev/elasti/test/localcluster"
)

// The chaos soak (make chaos, not part of make test): steady load through cycles to zero and
// back while the parts of elasti and of Kubernetes that it leans on are restarted at random.
var _ = Describe("Chaos", Label("chaos"), func() {
	It("answers every request 2xx, once, while resolvers, the leader, the API server and kube-proxy restart", func(sctx SpecContext) {
		if os.Getenv("E2E_CHAOS") == "" {
			Skip("make chaos runs this soak (E2E_CHAOS=1)")
		}
		duration := 5 * time.Minute
		if v := os.Getenv("E2E_CHAOS_DURATION"); v != "" {
			d, err := time.ParseDuration(v)
			Expect(err).NotTo(HaveOccurred(), "E2E_CHAOS_DURATION")
			duration = d
		}
		dir := os.Getenv("E2E_CLUSTER_DIR")
		if dir == "" {
			dir = repo.Path(".cache", "cluster")
		}
		cluster, err := localcluster.Attach(localcluster.Options{Dir: dir, Netns: envOr("E2E_CLUSTER_NETNS", "elasti")})
		Expect(err).NotTo(HaveOccurred())

		prom.Active.Store(false)
		a := deployApp(3600) // no cycle until the load runs
		DeferCleanup(removeApp, a)
		ledger := withLedger(a)
		wctx, stopWatch := context.WithCancel(sctx)
		defer stopWatch()
		statusLog := watchStatus(wctx, a.ns, "shop")

		// 20 requests a second in bursts of 10 s, half on two kept-alive connections, half each
		// on a new one; the 15 s between bursts let the target go to zero, so that each burst
		// begins with a cold start.
		const workers, interval = 4, 200 * time.Millisecond
		const burst, pause = 10 * time.Second, 15 * time.Second
		var start time.Time
		on := func() bool { return time.Since(start)%(burst+pause) < burst }
		kept := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 10 * time.Minute}}
		fresh := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
		lctx, stopLoad := context.WithTimeout(sctx, duration+time.Minute)
		defer stopLoad()
		start = time.Now()
		waitLoad := tickLoad(lctx, workers, interval, func(w, seq int) (sample, bool) {
			if !on() {
				return sample{}, false
			}
			hc := kept
			if w%2 == 1 {
				hc = fresh
			}
			return send(hc, a, fmt.Sprintf("chaos-%d-%06d", w, seq), nil), true
		})
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, es)).To(Succeed())
		es.Spec.CooldownPeriod = 5
		Expect(k8s.Update(ctx, es)).To(Succeed())

		By(fmt.Sprintf("restarting parts at random for %s", duration))
		type action struct {
			at   time.Duration
			what string
			took time.Duration
		}
		var actions []action
		kinds := []string{"resolver pod", "leading controller", "kube-apiserver", "kube-proxy"}
		deadline := start.Add(duration)
		for i := 0; i < 100 && time.Now().Add(10*time.Second).Before(deadline); i++ {
			time.Sleep(time.Duration(8+rand.IntN(12)) * time.Second)
			what := kinds[rand.IntN(len(kinds))]
			t0 := time.Now()
			switch what {
			case "resolver pod":
				// One at a time, as the PodDisruptionBudget allows, and never the last.
				waitDeploymentReady(resolverName, resolverReplicas)
				pods := resolverPods()
				p := pods[rand.IntN(len(pods))]
				Expect(k8s.Delete(ctx, &p)).To(Succeed())
			case "leading controller":
				leader, _, _ := leadingPod()
				if rand.IntN(2) == 0 {
					what += " (killed)"
					killContainer(leader, "controller")
				}
				Expect(client.IgnoreNotFound(k8s.Delete(ctx, leader))).To(Succeed())
			default:
				Expect(cluster.Restart(sctx, what)).To(Succeed())
			}
			actions = append(actions, action{at: t0.Sub(start), what: what, took: time.Since(t0)})
		}
		time.Sleep(time.Until(deadline))
		stopLoad()
		samples := waitLoad()
		stopWatch()
		elapsed := time.Since(start)

		full, aborted := cycles(statusLog())
		codes := map[string]int{}
		ends := map[int][]time.Time{} // 2xx answers by burst
		var slowest time.Duration
		for _, s := range samples {
			switch {
			case s.err != nil:
				codes["error"]++
			case s.code/100 == 2:
				b := int(s.start.Sub(start) / (burst + pause))
				ends[b] = append(ends[b], s.end)
			default:
				codes[fmt.Sprint(s.code)]++
			}
			slowest = max(slowest, s.end.Sub(s.start))
		}
		// The longest wait for an answer within a burst: at its start, the cold start.
		var gap time.Duration
		for b, e := range ends {
			sort.Slice(e, func(i, j int) bool { return e[i].Before(e[j]) })
			gap = max(gap, e[0].Sub(start.Add(time.Duration(b)*(burst+pause))))
			for i := 1; i < len(e); i++ {
				gap = max(gap, e[i].Sub(e[i-1]))
			}
		}
		executed := readLedger(ledger)
		var dup, missing []string
		for _, s := range samples {
			if s.err != nil || s.code/100 != 2 {
				continue
			}
			switch n := executed[s.id]; {
			case n > 1:
				dup = append(dup, fmt.Sprintf("%s x%d", s.id, n))
			case n == 0:
				missing = append(missing, s.id)
			}
		}
		GinkgoWriter.Printf("chaos: %d requests in %s, %d full cycles to zero and back (%d aborted), %d restarts\n",
			len(samples), elapsed.Round(time.Second), len(full), aborted, len(actions))
		Expect(full).NotTo(BeEmpty(), "the target never went to zero and back under the load")
		for _, x := range actions {
			GinkgoWriter.Printf("  +%s %s (%s)\n", x.at.Round(time.Second), x.what, x.took.Round(100*time.Millisecond))
		}
		GinkgoWriter.Printf("chaos: non-2xx by code %v; %d executed twice or more, %d answered 2xx but never executed; longest time without an answer within a burst %s; slowest request %s\n",
			codes, len(dup), len(missing), gap.Round(10*time.Millisecond), slowest.Round(10*time.Millisecond))
		for _, s := range samples {
			if s.err != nil || s.code/100 != 2 {
				GinkgoWriter.Printf("  %s at +%s: %d %v\n", s.id, s.start.Sub(start).Round(time.Millisecond), s.code, s.err)
			}
		}
		// A leader that lost its Lease to an API server restart stands by again in its process:
		// only the kills restarted a controller container.
		var restarts, kills int32
		var pods corev1.PodList
		Expect(k8s.List(ctx, &pods, client.InNamespace(elastiNS), client.MatchingLabels{"app": controllerName})).To(Succeed())
		for _, p := range pods.Items {
			for _, c := range p.Status.ContainerStatuses {
				restarts += c.RestartCount
			}
		}
		for _, x := range actions {
			if strings.HasSuffix(x.what, "(killed)") {
				kills++
			}
		}
		GinkgoWriter.Printf("chaos: controller containers restarted %d times, %d of them killed on purpose\n", restarts, kills)
		Expect(codes).To(BeEmpty(), "requests not answered 2xx")
		Expect(restarts).To(BeNumerically("<=", kills), "a controller restarted on its own")
		Expect(dup).To(BeEmpty(), "requests executed more than once")
		Expect(missing).To(BeEmpty(), "requests answered 2xx but never executed")
	}, SpecTimeout(2*time.Hour))
})

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
