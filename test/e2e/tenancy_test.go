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
	var a, b *app
	var resolver string
	BeforeAll(func() {
		prom.active.Store(false)
		a, b = deployApp(5), deployApp(5)
		a.toZero()
		b.toZero()
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
