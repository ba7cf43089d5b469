//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/routesig"
	"github.com/elasti-dev/elasti/internal/testsupport/workload"
)

// slowHold is the hold timeout of the slow-body spec's target.
const slowHold = 20 * time.Second

// sampleMemory polls each resolver pod's resident memory until the returned function is
// called, which returns the peak of each by pod name.
func sampleMemory(pods []corev1.Pod) func() map[string]float64 {
	var mu sync.Mutex
	peak := map[string]float64{}
	stop, done := make(chan struct{}), make(chan struct{})
	read := func() {
		for _, p := range pods {
			if f, err := podMetric(p.Status.PodIP, "process_resident_memory_bytes"); err == nil {
				mu.Lock()
				peak[p.Name] = max(peak[p.Name], f)
				mu.Unlock()
			}
		}
	}
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); {
			read()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() map[string]float64 {
		close(stop)
		<-done
		read()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// memoryLimit is the resolver container's memory limit in bytes, and its restarts.
func memoryLimit(p corev1.Pod) (limit float64, restarts int32) {
	for _, c := range p.Spec.Containers {
		if c.Name == "resolver" {
			limit = c.Resources.Limits.Memory().AsApproximateFloat64()
		}
	}
	for _, c := range p.Status.ContainerStatuses {
		restarts += c.RestartCount
	}
	return limit, restarts
}

// The resolver is shared by every team: these specs play a client of one tenant that tries to
// reach, wake or starve another's Service through it.
var _ = Describe("Tenant isolation", Label("tenancy"), Ordered, func() {
	var a, b, loud, quiet, slow *app
	var resolver string
	BeforeAll(func() {
		prom.Active.Store(false)
		a, b, loud, quiet, slow = deployApp(5), deployApp(5), deployApp(5), deployApp(5), deployApp(5)
		// The slow-body spec waits for a hold to time out: keep that short.
		es := &v1alpha1.ElastiService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: slow.ns, Name: "shop"}, es)).To(Succeed())
		patch := client.MergeFrom(es.DeepCopy())
		es.Spec.Queue = &v1alpha1.QueueSettings{HoldTimeout: &metav1.Duration{Duration: slowHold}}
		Expect(k8s.Patch(ctx, es, patch)).To(Succeed())
		for _, x := range []*app{a, b, loud, quiet, slow} {
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

	It("ignores a forged X-Elasti-Service: it neither reaches nor wakes another tenant's Service", func() {
		forged := map[string]string{v1alpha1.HeaderElastiService: b.ns + "/shop", v1alpha1.HeaderPort: "80", v1alpha1.HeaderSubset: "v1"}
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
		Expect(set).To(HaveKeyWithValue(v1alpha1.HeaderElastiService, b.ns+"/shop"))
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

	It("keeps another tenant's held requests whole while one tenant floods past its namespace's share, within the resolver's memory limit", func() {
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
		pods := resolverPods()
		restarts, limits := map[string]int32{}, map[string]float64{}
		for _, p := range pods {
			limits[p.Name], restarts[p.Name] = memoryLimit(p)
			Expect(limits[p.Name]).To(BeNumerically(">", 0), "resolver %s has no memory limit", p.Name)
		}
		// make soak runs more rounds, each from zero again.
		rounds := 1
		if v := os.Getenv("E2E_SOAK_ROUNDS"); v != "" {
			n, err := strconv.Atoi(v)
			Expect(err).NotTo(HaveOccurred(), "E2E_SOAK_ROUNDS")
			rounds = n
		}
		for round := range rounds {
			if round > 0 {
				loud.toZero()
				quiet.toZero()
			}
			peak := sampleMemory(pods)
			start := time.Now()
			floods, quiets := make(chan result, floodN), make(chan result, quietN)
			fp, qp := fmt.Sprintf("flood%d", round), fmt.Sprintf("quiet%d", round)
			fire(loud, fp, floodN, floods)
			fire(quiet, qp, quietN, quiets)
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
			rss := peak()
			GinkgoWriter.Printf("round %d: flood of %d: %v in %s; the quiet tenant's %d: all 200; resolver peak RSS %v\n",
				round+1, floodN, codes, time.Since(start).Round(10*time.Millisecond), quietN, rss)
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
				Expect(qc).To(HaveKeyWithValue(fmt.Sprintf("%s-%03d", qp, i), 1))
			}
			for _, p := range pods {
				Expect(rss).To(HaveKey(p.Name), "no memory sample from %s", p.Name)
				Expect(rss[p.Name]).To(BeNumerically("<", limits[p.Name]), "%s above its memory limit", p.Name)
			}
		}
		for _, p := range resolverPods() {
			_, n := memoryLimit(p)
			Expect(restarts).To(HaveKeyWithValue(p.Name, n), "resolver %s restarted (or is new) during the flood", p.Name)
		}
	})

	It("never sends a short host to another namespace after the namespace that claimed it deleted its ElastiService", func() {
		// a claims the bare name "web" alone; then a gives it up and b takes it. Within the
		// resolver's grace "web" is ambiguous, and b's pods never see a request meant for a's.
		web := map[string]string{}
		for _, ns := range []string{a.ns, b.ns} {
			Expect(k8s.Create(ctx, workload.SampleApp(ns, "web", map[string]string{"app": "web"}))).To(Succeed())
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "web"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
			}}
			Expect(k8s.Create(ctx, svc)).To(Succeed())
			web[ns] = "http://" + svc.Spec.ClusterIP
		}
		webES := func(ns string) *v1alpha1.ElastiService { return workload.ElastiService(ns, "web", prom.URL, 300) }
		webCounts := func(ns string) map[string]int {
			GinkgoHelper()
			code, body := send(web[ns]+"/counts", "web."+ns, nil)
			Expect(code).To(Equal(http.StatusOK), "%s", body)
			m := map[string]int{}
			Expect(json.Unmarshal([]byte(body), &m)).To(Succeed())
			return m
		}
		DeferCleanup(func() {
			for _, ns := range []string{a.ns, b.ns} {
				_ = k8s.Delete(ctx, webES(ns))
			}
		})
		// kube-proxy programs a new Service's address a moment after its pods are ready, and the
		// resolver may reach them sooner: the ledgers are read at those addresses.
		for _, ns := range []string{a.ns, b.ns} {
			Eventually(func() error {
				req, _ := http.NewRequest(http.MethodGet, web[ns]+"/healthz", nil)
				req.Host = "web." + ns
				resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s: %d", web[ns], resp.StatusCode)
				}
				return nil
			}).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
		}
		Expect(k8s.Create(ctx, webES(a.ns))).To(Succeed())
		Eventually(func() int {
			code, _ := send(resolver+"/echo", "web", map[string]string{"X-Request-Id": "web-a"})
			return code
		}).WithTimeout(time.Minute).WithPolling(500*time.Millisecond).Should(Equal(http.StatusOK), "the resolver never served the bare host web")
		Expect(webCounts(a.ns)).To(HaveKey("web-a"))

		Expect(k8s.Delete(ctx, webES(a.ns))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "web"}, &v1alpha1.ElastiService{}))
		}).WithTimeout(time.Minute).Should(BeTrue())
		Expect(k8s.Create(ctx, webES(b.ns))).To(Succeed())
		// Both resolver replicas know b's web once each answers its full name.
		fresh := map[string]string{"Connection": "close"}
		Eventually(func() int {
			ok := 0
			for range 10 {
				if code, _ := send(resolver+"/healthz", "web."+b.ns, fresh); code == http.StatusOK {
					ok++
				}
			}
			return ok
		}).WithTimeout(time.Minute).WithPolling(500 * time.Millisecond).Should(Equal(10))
		for i := range 10 {
			id := fmt.Sprintf("web-short-%d", i)
			code, body := send(resolver+"/echo", "web", map[string]string{"X-Request-Id": id, "Connection": "close"})
			Expect(code).To(Equal(http.StatusMisdirectedRequest), "bare host web after a gave it up: %s", body)
		}
		counts := webCounts(b.ns)
		for i := range 10 {
			Expect(counts).NotTo(HaveKey(fmt.Sprintf("web-short-%d", i)), "a request for a's web reached b's")
		}
	})

	It("ends a held request whose body trickles, and a replay whose body stalls, while the target serves others", func() {
		host := "shop." + slow.ns
		type answer struct {
			code int
			err  error
			took time.Duration
		}
		// rawPost sends a POST's head and first bytes, then trickles one byte per interval (none
		// when interval is 0) until the resolver answers or the bound passes.
		rawPost := func(id string, length, first int, interval time.Duration) <-chan answer {
			out := make(chan answer, 1)
			c, err := net.DialTimeout("tcp", slow.url[len("http://"):]+":80", 10*time.Second)
			Expect(err).NotTo(HaveOccurred())
			start := time.Now()
			_ = c.SetDeadline(start.Add(slowHold + time.Minute))
			_, err = fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: %s\r\nX-Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s",
				host, id, length, strings.Repeat("x", first))
			Expect(err).NotTo(HaveOccurred())
			done := make(chan struct{})
			if interval > 0 {
				go func() {
					t := time.NewTicker(interval)
					defer t.Stop()
					for sent := first; sent < length-1; sent++ {
						select {
						case <-done:
							return
						case <-t.C:
							if _, err := c.Write([]byte("x")); err != nil {
								return
							}
						}
					}
				}()
			}
			go func() {
				defer c.Close()
				defer close(done)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					out <- answer{err: err, took: time.Since(start)}
					return
				}
				resp.Body.Close()
				out <- answer{code: resp.StatusCode, took: time.Since(start)}
			}()
			return out
		}
		slow.toZero()
		// Small enough to be held whole: it must arrive within the hold timeout.
		trickle := rawPost("trickle-1", 4096, 16, 250*time.Millisecond)
		Eventually(slow.replicas).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(BeNumerically(">=", 1),
			"the held request did not wake the target")
		// Busy from now on, so that the target and its ledger stay up for the whole spec.
		prom.Active.Store(true)
		DeferCleanup(prom.Active.Store, false)
		Eventually(func() error { return slow.get("/healthz") }).WithTimeout(time.Minute).Should(Succeed())
		// Larger than the held-body limit: its rest streams at the replay, and then stalls.
		stall := rawPost("stall-1", 1<<20, 70<<10, 0)
		// Meanwhile the target answers everyone else.
		for i := range 20 {
			req, _ := http.NewRequest(http.MethodPost, slow.url+"/echo", strings.NewReader("ok"))
			req.Header.Set("X-Request-Id", fmt.Sprintf("slow-ok-%d", i))
			resp, err := slow.do(slow.client, req)
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(http.StatusOK))
		}
		t := <-trickle
		Expect(t.err).NotTo(HaveOccurred(), "the trickling caller got no status")
		Expect(t.code).To(Equal(http.StatusRequestTimeout))
		Expect(t.took).To(BeNumerically("<", slowHold+10*time.Second))
		s := <-stall
		Expect(s.took).To(BeNumerically("<", slowHold+time.Minute), "the stalled replay was never ended")
		Expect(s.err).NotTo(HaveOccurred(), "the stalled caller got no status")
		Expect(s.code).To(Equal(http.StatusRequestTimeout))
		GinkgoWriter.Printf("trickled body: %d after %s; stalled body: %d %v after %s\n",
			t.code, t.took.Round(100*time.Millisecond), s.code, s.err, s.took.Round(100*time.Millisecond))
		counts := slow.counts()
		Expect(counts).NotTo(HaveKey("trickle-1"), "a body that never arrived was replayed")
		for i := range 20 {
			Expect(counts).To(HaveKeyWithValue(fmt.Sprintf("slow-ok-%d", i), 1))
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
