//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// steadyLoad sends GET /echo to a's Service every interval, each on a fresh connection so that
// kube-proxy chooses anew, from several callers at once, until the returned function is called
// (or for at most max). The function returns every answer.
func steadyLoad(a *app, prefix string, interval, max time.Duration) func() []answer {
	ctx, cancel := context.WithTimeout(context.Background(), max)
	wait := tickLoad(ctx, 4, interval, func(c, i int) (answer, bool) {
		id := fmt.Sprintf("%s-%d-%04d", prefix, c, i)
		r := getOnce(a, id)
		// A connection that was never made sent nothing, and a mesh caller's sidecar retries it
		// (Istio's default retry policy includes connect-failure); so does this caller, once,
		// and says so. On the loaded CI machine about one connect in 2,000 fails with "no route
		// to host" around these transitions.
		var op *net.OpError
		if errors.As(r.err, &op) && op.Op == "dial" {
			GinkgoWriter.Printf("  %s: connect failed (%v); retried once\n", id, op.Err)
			time.Sleep(100 * time.Millisecond)
			r = getOnce(a, id)
		}
		return r, true
	})
	return func() []answer {
		cancel()
		return wait()
	}
}

// expectAllOK fails with a summary unless every answer is 200; the answers' app must have
// executed each once.
func expectAllOK(a *app, what string, answers []answer) {
	GinkgoHelper()
	var bad []answer
	for _, r := range answers {
		if r.err != nil || r.code != 200 {
			bad = append(bad, r)
		}
	}
	for i, r := range bad {
		if i == 5 {
			break
		}
		GinkgoWriter.Printf("  %s at %s: %d %v %q\n", r.id, r.end.Format("15:04:05.000"), r.code, r.err, r.body)
	}
	GinkgoWriter.Printf("%s: %d requests, %d not 200 (%s)\n", what, len(answers), len(bad), summarize(bad))
	Expect(bad).To(BeEmpty(), "%s: %s", what, summarize(answers))
	expectExecutedOnce(a, answers)
}

// Removing elasti from a Service (deleting its ElastiService) is a transition like any other:
// callers must not see it.
var _ = Describe("Removal", Label("removal"), func() {
	remove := func(a *app, what string) {
		GinkgoHelper()
		stop := steadyLoad(a, what, 25*time.Millisecond, 3*time.Minute)
		deleted := time.Now()
		Expect(k8s.Delete(ctx, &v1alpha1.ElastiService{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: a.ns}})).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, &v1alpha1.ElastiService{}))
		}).WithTimeout(2 * time.Minute).WithPolling(100 * time.Millisecond).Should(BeTrue())
		gone := time.Now()
		// kube-proxy and the resolver's registry follow the deletion a moment later: the
		// window that used to get 503.
		time.Sleep(10 * time.Second)
		answers := stop()
		GinkgoWriter.Printf("%s: the ElastiService was gone %s after its deletion\n", what, gone.Sub(deleted).Round(10*time.Millisecond))
		expectAllOK(a, what, answers)
		Expect(a.replicas()).To(Equal(int32(1)))
		Expect(kubeProxyTargets(a.ns + "/shop:http")).NotTo(BeEmpty())
	}

	It("loses no caller when an ElastiService at zero is deleted", func() {
		prom.Active.Store(false)
		a := deployApp(5)
		DeferCleanup(removeApp, a)
		a.toZero()
		remove(a, "delete-at-zero")
	})

	It("loses no caller when an ElastiService in Serve mode is deleted", func() {
		prom.Active.Store(false)
		a := deployApp(300)
		DeferCleanup(removeApp, a)
		Eventually(func(g Gomega) {
			st := a.status()
			g.Expect(st.Mode).To(Equal(v1alpha1.ModeServe))
			g.Expect(st.ReadyEndpoints).To(BeNumerically(">=", 1))
		}).WithTimeout(time.Minute).Should(Succeed())
		remove(a, "delete-serving")
	})
})
