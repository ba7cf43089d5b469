//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// leaseName is the controller's leader election Lease, in its namespace.
const leaseName = "elasti-controller.elasti.dev"

// controllerLease reads the leader election Lease.
func controllerLease(g Gomega) *coordinationv1.Lease {
	var l coordinationv1.Lease
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: elastiNS, Name: leaseName}, &l)).To(Succeed())
	return &l
}

// leadingPod waits until the Lease is held by a running controller pod, and returns that pod,
// the holder identity (controller-runtime's "<pod>_<uuid>") and the other controller pods.
func leadingPod() (leader *corev1.Pod, identity string, standbys []corev1.Pod) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		identity = ptr.Deref(controllerLease(g).Spec.HolderIdentity, "")
		g.Expect(identity).NotTo(BeEmpty(), "nobody holds the Lease")
		name, _, _ := strings.Cut(identity, "_")
		var pods corev1.PodList
		g.Expect(k8s.List(ctx, &pods, client.InNamespace(elastiNS), client.MatchingLabels{"app": controllerName})).To(Succeed())
		leader, standbys = nil, nil
		for i := range pods.Items {
			p := &pods.Items[i]
			switch {
			case p.DeletionTimestamp != nil:
			case p.Name == name:
				leader = p
			default:
				standbys = append(standbys, *p)
			}
		}
		g.Expect(leader).NotTo(BeNil(), "the Lease is held by %s, which is no running controller pod", identity)
	}).WithTimeout(time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
	return leader, identity, standbys
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// killContainer sends SIGKILL to every process of one of a pod's containers, as a crash or an
// OOM kill would: nothing runs the controller's shutdown, so its Lease is not released. The
// suite runs as root in the host's PID namespace (make test-e2e enters only the cluster's
// network namespace), and every process of a container is in a cgroup named after its ID.
func killContainer(pod *corev1.Pod, container string) {
	GinkgoHelper()
	var id string
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container {
			_, id, _ = strings.Cut(cs.ContainerID, "://")
		}
	}
	Expect(id).NotTo(BeEmpty(), "pod %s reports no ID for container %s", pod.Name, container)
	entries, err := os.ReadDir("/proc")
	Expect(err).NotTo(HaveOccurred())
	var killed []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile("/proc/" + e.Name() + "/cgroup")
		if err != nil || !strings.Contains(string(cg), id) {
			continue // gone meanwhile, or another container's
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	Expect(killed).NotTo(BeEmpty(), "no process in the cgroup of container %s (pod %s)", id, pod.Name)
	// The shim reaps them at once; until then the old leader could still answer a signal.
	Eventually(func() []int {
		var left []int
		for _, pid := range killed {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
				left = append(left, pid)
			}
		}
		return left
	}).WithTimeout(5 * time.Second).WithPolling(10 * time.Millisecond).Should(BeEmpty())
}

// The controller is no single point of failure: with two replicas, requests held at zero while
// the leader goes are answered once the standby takes the Lease and the resolver's activity signal
// reaches it. The leader goes first and the burst follows at once, so that the requests are
// held while no replica leads: a leader still alive when they came would wake the target
// itself. After a crash that is certain, and checked; after a deletion the old process may
// live a moment, so that entry measures the handover more than it proves the hold.
var _ = Describe("Controller failover", Label("failover"), func() {
	BeforeEach(func() {
		prom.Active.Store(false)
		DeferCleanup(func() { prom.Active.Store(false) })
	})

	DescribeTable("answers a burst held while the leading controller goes, each request exactly once",
		func(crash bool) {
			begin := time.Now()
			a := deployApp(5)
			DeferCleanup(removeApp, a)

			d := &appsv1.Deployment{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: elastiNS, Name: controllerName}, d)).To(Succeed())
			// The chart's default is two; an install with one gets a standby for this spec.
			replicas := ptr.Deref(d.Spec.Replicas, 1)
			if replicas < 2 {
				By(fmt.Sprintf("scaling the controller from %d to 2 replicas", replicas))
				scaleDeployment(elastiNS, controllerName, 2)
			}
			// The next spec finds the controller as installed: the deleted pod replaced, every
			// replica ready, and the Lease held by a live pod.
			DeferCleanup(func() {
				if replicas < 2 {
					waitDeploymentReady(controllerName, 2)
					scaleDeployment(elastiNS, controllerName, replicas)
				}
				waitDeploymentReady(controllerName, replicas)
				leadingPod()
			})
			waitDeploymentReady(controllerName, max(replicas, 2))
			a.toZero()

			leader, identity, standbys := leadingPod()
			Expect(standbys).NotTo(BeEmpty())
			for i := range standbys {
				// Ready does not wait for the Lease, so a rollout can proceed past a standby.
				Expect(podReady(&standbys[i])).To(BeTrue(), "standby %s is not Ready", standbys[i].Name)
			}
			Expect(a.replicas()).To(BeZero())

			how := "deleted with zero grace"
			if crash {
				how = "killed with SIGKILL and deleted with zero grace"
			}
			By(fmt.Sprintf("%s: the leader %s, with %d standby", how, leader.Name, len(standbys)))
			gone := time.Now()
			if crash {
				killContainer(leader, "controller")
			}
			// Zero grace removes the pod at once, as when its node is lost; the kubelet still
			// sends SIGTERM, and a live process releases the Lease if it stops in time.
			Expect(k8s.Delete(ctx, leader, client.GracePeriodSeconds(0))).To(Succeed())

			const n = 50
			burst := make(chan []answer, 1)
			go func() { burst <- burstGET(a, "failover", n) }()

			var newIdentity string
			var acquired time.Time
			Eventually(func(g Gomega) {
				l := controllerLease(g)
				newIdentity = ptr.Deref(l.Spec.HolderIdentity, "")
				// A released Lease has no holder until a standby takes it.
				g.Expect(newIdentity).NotTo(BeEmpty())
				g.Expect(newIdentity).NotTo(Equal(identity))
				g.Expect(l.Spec.AcquireTime).NotTo(BeNil())
				acquired = l.Spec.AcquireTime.Time
			}).WithTimeout(time.Minute).WithPolling(50 * time.Millisecond).Should(Succeed())
			newLeader := time.Since(gone)

			var answers []answer
			Eventually(burst).WithTimeout(3 * time.Minute).Should(Receive(&answers))
			var first, last time.Time
			for _, r := range answers {
				if r.err != nil || r.code != http.StatusOK {
					continue
				}
				if first.IsZero() || r.end.Before(first) {
					first = r.end
				}
				if r.end.After(last) {
					last = r.end
				}
			}
			GinkgoWriter.Printf("controller failover (%s): %s leads %s after the leader went (acquired %s after); first of %d held answered 200 after %s, all after %s\n",
				how, newIdentity, newLeader.Round(10*time.Millisecond), acquired.Sub(gone).Round(10*time.Millisecond), n,
				first.Sub(gone).Round(10*time.Millisecond), last.Sub(gone).Round(10*time.Millisecond))
			if failures := InterceptGomegaFailures(func() { expectExecutedOnce(a, answers) }); len(failures) > 0 {
				diagnose(a)
				Fail(failures[0] + "; answers: " + summarize(answers))
			}
			// After a crash at most 8.4 s with the chart's timings (docs/operations.md), and room
			// for a loaded machine; client-go's defaults (15 s lease) take at least 13 s.
			Expect(newLeader).To(BeNumerically("<", 12*time.Second), "a new leader took %s", newLeader)
			if crash {
				// Nothing was left to wake the target before the new leader: the burst waited
				// for it, and the signal reached it.
				Expect(first).To(BeTemporally(">", acquired), "a request was answered before the new leader acquired the Lease")
			}
			GinkgoWriter.Printf("failover scenario (%s) took %s\n", how, time.Since(begin).Round(100*time.Millisecond))
		},
		Entry("a crash", Label("crash"), true),
		Entry("a deletion", false),
	)
})
