//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/proto"
	apisecurity "istio.io/api/security/v1beta1"
	apitype "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// xdsRBACChain is an inbound filter chain as xdsprobe prints it, with its HTTP connection
// manager's x-forwarded-client-cert settings and RBAC filters.
type xdsRBACChain struct {
	Match             string
	ForwardClientCert string
	ClientCertURI     bool
	RBAC              []struct {
		Action   string
		Policies map[string]string
	}
}

// The caller the sidecar would name in x-forwarded-client-cert. The suite's resolver has no
// sidecar, and believes the header from any peer (installElasti): the test writes what the
// resolver's sidecar would.
func clientCert(principal string) string {
	return `By=spiffe://cluster.local/ns/elasti-system/sa/elasti-resolver;Hash=0f;Subject="";URI=spiffe://` + principal
}

var _ = Describe("AuthorizationPolicies on the target", Label("istio", "authz"), func() {
	It("refuses the callers the target's policies refuse before it holds or wakes, replays the others once, and istiod lets the replays in by elasti's policy", func(sctx SpecContext) {
		begin := time.Now()
		prom.Active.Store(false)
		a := deployApp(3)
		DeferCleanup(func() { _ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}}) })
		const frontend, intruder = "cluster.local/ns/frontend/sa/frontend", "cluster.local/ns/intruder/sa/default"

		By("an ALLOW policy for the frontend's principal, and a DENY policy on /admin")
		shopPods := &apitype.WorkloadSelector{MatchLabels: map[string]string{"app": "shop"}}
		for name, spec := range map[string]*apisecurity.AuthorizationPolicy{
			"frontend-only": {Selector: shopPods, Rules: []*apisecurity.Rule{{From: []*apisecurity.Rule_From{{
				Source: &apisecurity.Source{Principals: []string{frontend}}}}}}},
			"no-admin": {Selector: shopPods, Action: apisecurity.AuthorizationPolicy_DENY, Rules: []*apisecurity.Rule{{
				To: []*apisecurity.Rule_To{{Operation: &apisecurity.Operation{Paths: []string{"/admin*"}}}}}}},
		} {
			ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, Name: name}}
			proto.Merge(&ap.Spec, spec)
			Expect(k8s.Create(ctx, ap)).To(Succeed())
		}
		Eventually(func() []string { return a.status().AuthorizationPolicies }).WithTimeout(30 * time.Second).
			Should(Equal([]string{a.ns + "/frontend-only", a.ns + "/no-admin"}))

		By("istiod, asked as the target's pod, lets the resolver's principal through the ALLOW filter and keeps the DENY filter")
		var pods corev1.PodList
		Expect(k8s.List(ctx, &pods, client.InNamespace(a.ns), client.MatchingLabels{"app": "shop"})).To(Succeed())
		Expect(pods.Items).NotTo(BeEmpty())
		Eventually(func(g Gomega) {
			chains := inboundChains(g, asPod(pods.Items[0]), "port 8080")
			allow, deny := map[string]string{}, map[string]string{}
			for _, c := range chains {
				for _, r := range c.RBAC {
					for name, ids := range r.Policies {
						if r.Action == "DENY" {
							deny[name] = ids
						} else {
							allow[name] = ids
						}
					}
				}
			}
			g.Expect(allow).To(HaveKeyWithValue(ContainSubstring("policy[shop-elasti-resolver]"), ContainSubstring("/ns/elasti-system/sa/elasti-resolver")))
			g.Expect(allow).To(HaveKeyWithValue(ContainSubstring("policy[frontend-only]"), ContainSubstring("/ns/frontend/sa/frontend")))
			g.Expect(deny).To(HaveKey(ContainSubstring("policy[no-admin]")))
		}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

		By("istiod, asked as a resolver pod, makes its sidecar set the caller's certificate URI in x-forwarded-client-cert on every HTTP chain of its port")
		var resolvers corev1.PodList
		Expect(k8s.List(ctx, &resolvers, client.InNamespace("elasti-system"), client.MatchingLabels{"app": "elasti-resolver"})).To(Succeed())
		Eventually(func(g Gomega) {
			n := 0
			for _, c := range inboundChains(g, asPod(resolvers.Items[0]), "port 8012 ") {
				if c.ForwardClientCert == "" {
					continue // a TCP chain: no HTTP connection manager
				}
				n++
				g.Expect(c.ForwardClientCert).To(BeElementOf("APPEND_FORWARD", "SANITIZE_SET"), "chain %s", c.Match)
				g.Expect(c.ClientCertURI).To(BeTrue(), "chain %s", c.Match)
			}
			g.Expect(n).To(BeNumerically(">", 0), "no HTTP chain for port 8012")
		}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

		a.toZero()

		call := func(method, path, principal, id string) (int, string) {
			GinkgoHelper()
			req, _ := http.NewRequestWithContext(sctx, method, a.url+path, strings.NewReader("authz"))
			if principal != "" {
				req.Header.Set("X-Forwarded-Client-Cert", clientCert(principal))
			}
			req.Header.Set("X-Request-Id", id)
			resp, err := a.do(a.client, req)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		By("refusing, at zero, another principal, a caller without a certificate, and the frontend on /admin, without waking the target")
		for i, c := range []struct{ path, principal string }{
			{"/echo", intruder}, {"/echo", intruder}, {"/echo", ""}, {"/admin/echo", frontend}, {"/echo", intruder},
		} {
			code, body := call(http.MethodPost, c.path, c.principal, "refused-"+string(rune('a'+i)))
			Expect(code).To(Equal(http.StatusForbidden), "%s as %q", c.path, c.principal)
			Expect(body).To(Equal("RBAC: access denied"))
		}
		Consistently(a.replicas).WithTimeout(3*time.Second).WithPolling(200*time.Millisecond).Should(BeZero(), "a refused caller woke the target")

		By("holding the frontend's request, waking the target, and replaying it once")
		start := time.Now()
		code, body := call(http.MethodPost, "/echo", frontend, "allowed")
		Expect(code).To(Equal(http.StatusOK), body)
		GinkgoWriter.Printf("the frontend's request at zero answered in %s\n", time.Since(start).Round(10*time.Millisecond))
		// As the frontend: until kube-proxy follows the switch back to Serve, /counts may reach
		// the resolver, which checks it like any other request.
		code, body = call(http.MethodGet, "/counts", frontend, "counts")
		Expect(code).To(Equal(http.StatusOK), body)
		counts := map[string]int{}
		Expect(json.Unmarshal([]byte(body), &counts)).To(Succeed())
		Expect(counts).To(HaveKeyWithValue("allowed", 1))
		for id := range counts {
			Expect(id).NotTo(HavePrefix("refused-"), "a refused request reached the target")
		}
		GinkgoWriter.Printf("authorization scenario took %s\n", time.Since(begin).Round(100*time.Millisecond))
	}, SpecTimeout(4*time.Minute))
})

// inboundChains asks istiod for the inbound listener of the pod that args describe, and returns
// its chains whose match contains match.
func inboundChains(g Gomega, args []string, match string) []xdsRBACChain {
	ls, err := probeXDS[[]struct{ Chains []xdsRBACChain }](ctx, append(args, "-kind", "lds", "-match", "virtualInbound")...)
	g.Expect(err).NotTo(HaveOccurred())
	var out []xdsRBACChain
	for _, l := range ls {
		for _, c := range l.Chains {
			if strings.Contains(c.Match+" ", match) {
				out = append(out, c)
			}
		}
	}
	g.Expect(out).NotTo(BeEmpty(), "no inbound chain matching %q", match)
	return out
}
