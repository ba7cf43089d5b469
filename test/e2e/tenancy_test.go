//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/routesig"
)

// The resolver is shared by every team: these specs play a client of one tenant that tries to
// reach, wake or starve another's Service through it.
var _ = Describe("Tenant isolation", Label("tenancy"), Ordered, func() {
	var a, b, loud, quiet *app
	var resolver string
	BeforeAll(func() {
		prom.active.Store(false)
		a, b, loud, quiet = deployApp(5), deployApp(5), deployApp(5), deployApp(5)
		for _, x := range []*app{a, b, loud, quiet} {
			x.toZero()
		}
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "elasti-system", Name: "elasti-resolver"}, svc)).To(Succeed())
		resolver = "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "8012")
	})

	send := func(url, host string, header map[string]string) (int, string) {
		GinkgoHelper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Host = host
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{Timeout: 90 * time.Second}).Do(req)
		Expect(err).NotTo(HaveOccurred())
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}

	It("never replays a held request whose caller left", func() {
		// The whole request is sent and the connection closed at once: the resolver holds it
		// (and wakes the target), and must notice that nobody waits for the answer.
		c, err := net.DialTimeout("tcp", a.url[len("http://"):]+":80", 10*time.Second)
		Expect(err).NotTo(HaveOccurred())
		_, err = fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: shop.%s\r\nX-Request-Id: gone-1\r\nContent-Length: 4\r\n\r\nbody", a.ns)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Close()).To(Succeed())
		Eventually(a.replicas).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(BeNumerically(">=", 1),
			"the held request did not wake the target")
		Eventually(func() error { return a.get("/healthz") }).WithTimeout(time.Minute).Should(Succeed())
		// A replay would have reached the app before a request sent after the wake is answered.
		Expect(a.get("/healthz")).To(Succeed())
		Expect(a.counts()).NotTo(HaveKey("gone-1"), "the request of a caller that left was replayed")
	})

	It("ignores a forged X-Elasti-Target: it neither reaches nor wakes another tenant's Service", func() {
		forged := map[string]string{v1alpha1.HeaderTarget: b.ns + "/shop", v1alpha1.HeaderPort: "80", v1alpha1.HeaderSubset: "v1"}
		code, body := send(resolver+"/healthz", "evil.example", forged)
		Expect(code).To(Equal(http.StatusNotFound), "%s", body)
		Expect(body).To(ContainSubstring("no ElastiService serves host"))
		// Through tenant a's own Service, the forgery is ignored and the Host decides: a wakes,
		// and b stays at zero.
		code, body = send(a.url+"/healthz", "shop."+a.ns, forged)
		Expect(code).To(Equal(http.StatusOK), "%s", body)
		Consistently(b.replicas).WithTimeout(5*time.Second).WithPolling(250*time.Millisecond).Should(BeZero(),
			"a forged header woke tenant b")
		Expect(a.replicas()).To(BeNumerically(">=", 1))
	})

	It("believes the headers its own route rewrite signed, from the route key the controller made", func() {
		// The rewritten VirtualService carries the signed headers a caller's sidecar would add.
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: b.ns, Name: "shop"}, vs)).To(Succeed())
		set := vs.Spec.Http[0].Route[0].GetHeaders().GetRequest().GetSet()
		Expect(set).To(HaveKeyWithValue(v1alpha1.HeaderTarget, b.ns+"/shop"))
		Expect(set).To(HaveKey(v1alpha1.HeaderSignature))
		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "elasti-system", Name: routesig.DefaultSecretName}, secret)).To(Succeed())
		Expect(secret.Data[routesig.SecretKey]).To(HaveLen(routesig.KeySize))

		start := time.Now()
		code, body := send(resolver+"/healthz", "shop.example.com", set)
		Expect(code).To(Equal(http.StatusOK), "a request with the route's own signed headers: %s", body)
		GinkgoWriter.Printf("a signed request for an external host woke %s/shop and was answered in %s\n", b.ns, time.Since(start).Round(10*time.Millisecond))
		// The same signature with another subset is a forgery.
		forged := map[string]string{}
		for k, v := range set {
			forged[k] = v
		}
		forged[v1alpha1.HeaderSubset] = "internal-admin"
		code, body = send(resolver+"/healthz", "shop.example.com", forged)
		Expect(code).To(Equal(http.StatusNotFound), "%s", body)
		Expect(body).To(ContainSubstring("no ElastiService serves host"))
	})

	It("refuses a port the target's Service does not expose", func() {
		code, body := send(resolver+"/healthz", fmt.Sprintf("shop.%s:6379", a.ns), nil)
		Expect(code).To(Equal(http.StatusNotFound), "%s", body)
		Expect(body).To(ContainSubstring("no port 6379"))
	})

	It("keeps another tenant's held requests whole while one tenant floods past its namespace's share", func() {
		const floodN, quietN = 450, 40
		type result struct {
			id    string
			code  int
			retry string
			err   error
		}
		fire := func(x *app, prefix string, n int, out chan<- result) {
			for i := range n {
				go func() {
					id := fmt.Sprintf("%s-%03d", prefix, i)
					req, _ := http.NewRequest(http.MethodGet, x.url+"/echo", nil)
					req.Header.Set("X-Request-Id", id)
					// A connection each, so kube-proxy spreads them over both resolver replicas.
					c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
					resp, err := x.do(c, req)
					if err != nil {
						out <- result{id: id, err: err}
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					out <- result{id: id, code: resp.StatusCode, retry: resp.Header.Get("Retry-After")}
				}()
			}
		}
		start := time.Now()
		floods, quiets := make(chan result, floodN), make(chan result, quietN)
		fire(loud, "flood", floodN, floods)
		fire(quiet, "quiet", quietN, quiets)
		codes := map[int]int{}
		var refused, served []string
		for range floodN {
			r := <-floods
			Expect(r.err).NotTo(HaveOccurred(), "flood request %s", r.id)
			codes[r.code]++
			switch r.code {
			case http.StatusOK:
				served = append(served, r.id)
			case http.StatusServiceUnavailable:
				Expect(r.retry).NotTo(BeEmpty(), "a 503 without Retry-After")
				refused = append(refused, r.id)
			default:
				Fail(fmt.Sprintf("flood request %s: status %d", r.id, r.code))
			}
		}
		for range quietN {
			r := <-quiets
			Expect(r.err).NotTo(HaveOccurred(), "quiet request %s", r.id)
			Expect(r.code).To(Equal(http.StatusOK), "quiet request %s", r.id)
		}
		GinkgoWriter.Printf("flood of %d: %v in %s; the quiet tenant's %d: all 200\n", floodN, codes, time.Since(start).Round(10*time.Millisecond), quietN)
		// Two resolver replicas hold at most their share each; the rest of the flood is refused.
		Expect(len(refused)).To(BeNumerically(">=", floodN-2*namespaceShare))
		counts := loud.counts()
		for _, id := range served {
			Expect(counts).To(HaveKeyWithValue(id, 1), "flood request %s", id)
		}
		for _, id := range refused {
			Expect(counts).NotTo(HaveKey(id), "a refused request reached the app")
		}
		qc := quiet.counts()
		for i := range quietN {
			Expect(qc).To(HaveKeyWithValue(fmt.Sprintf("quiet-%03d", i), 1))
		}
	})

	It("refuses CONNECT", func() {
		c, err := net.DialTimeout("tcp", resolver[len("http://"):], 10*time.Second)
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = fmt.Fprintf(c, "CONNECT shop.%s:80 HTTP/1.1\r\nHost: shop.%s:80\r\n\r\n", a.ns, a.ns)
		Expect(err).NotTo(HaveOccurred())
		line := make([]byte, 12)
		_, err = io.ReadFull(c, line)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(line)).To(Equal("HTTP/1.1 405"))
	})
})
