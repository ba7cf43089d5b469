//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/testsupport/workload"
	"github.com/elasti-dev/elasti/test/localcluster"
)

// app is the sample workload with its Service, a DestinationRule with a subset, a VirtualService
// that routes to it, and an ElastiService.
type app struct {
	// client is this app's callers' connection pool, kept apart from other scenarios'.
	client *http.Client
	ns     string
	url    string // the public Service's ClusterIP URL
	vs     *apinetworking.VirtualService
}

func deployApp(cooldown int32) *app {
	GinkgoHelper()
	a := &app{ns: fmt.Sprintf("e2e-%05d", rand.IntN(100000)), client: &http.Client{Timeout: 2 * time.Minute,
		// A connection that kube-proxy sent to a gone pod hangs; fail it fast, not after 2 min.
		Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}}}
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}})).To(Succeed())
	labels := map[string]string{"app": "shop", "version": "v1"}
	Expect(k8s.Create(ctx, workload.SampleApp(a.ns, "shop", labels))).To(Succeed())
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: a.ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "shop"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
			{Name: "grpc", Port: 9090, TargetPort: intstr.FromString("grpc"), AppProtocol: ptr.To("kubernetes.io/h2c")},
		}},
	}
	Expect(k8s.Create(ctx, svc)).To(Succeed())
	a.url = "http://" + svc.Spec.ClusterIP

	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: a.ns}}
	dr.Spec.Host = "shop"
	dr.Spec.Subsets = []*apinetworking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}
	Expect(k8s.Create(ctx, dr)).To(Succeed())
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: a.ns}}
	vs.Spec.Hosts = []string{"shop"}
	vs.Spec.Http = []*apinetworking.HTTPRoute{{Route: []*apinetworking.HTTPRouteDestination{
		{Destination: &apinetworking.Destination{Host: "shop", Subset: "v1", Port: &apinetworking.PortSelector{Number: 80}}, Weight: 100},
	}}}
	Expect(k8s.Create(ctx, vs)).To(Succeed())
	a.vs = vs.Spec.DeepCopy()

	Eventually(func() error { return a.get("/healthz") }).WithTimeout(time.Minute).Should(Succeed())

	es := workload.ElastiService(a.ns, "shop", prom.URL, cooldown)
	es.Spec.ProbeResponses = []v1alpha1.ProbeResponse{{Path: "/probe", Body: "canned\n"}}
	Expect(k8s.Create(ctx, es)).To(Succeed())
	return a
}

// do sends req with the Host that an in-cluster caller of http://shop.<ns>/ sends: the resolver
// finds the target by it, and refuses hosts it does not know.
func (a *app) do(c *http.Client, req *http.Request) (*http.Response, error) {
	req.Host = "shop." + a.ns
	return c.Do(req)
}

func (a *app) get(path string) error {
	req, _ := http.NewRequest(http.MethodGet, a.url+path, nil)
	resp, err := a.do(a.client, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d", path, resp.StatusCode)
	}
	return nil
}

// counts reads the sample app's exactly-once ledger through the public Service.
func (a *app) counts() map[string]int {
	GinkgoHelper()
	req, _ := http.NewRequest(http.MethodGet, a.url+"/counts", nil)
	resp, err := a.do(a.client, req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	m := map[string]int{}
	Expect(json.NewDecoder(resp.Body).Decode(&m)).To(Succeed())
	return m
}

func (a *app) replicas() int32 {
	d := &appsv1.Deployment{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, d)).To(Succeed())
	return *d.Spec.Replicas
}

func (a *app) status() v1alpha1.ElastiServiceStatus {
	es := &v1alpha1.ElastiService{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, es)).To(Succeed())
	return es.Status
}

func (a *app) toZero() {
	GinkgoHelper()
	start := time.Now()
	Eventually(a.replicas).WithTimeout(2 * time.Minute).WithPolling(200 * time.Millisecond).Should(BeZero())
	Expect(a.status().Mode).To(Equal(v1alpha1.ModeProxy))
	// The pod is gone, so the next request must be held and replayed.
	Eventually(func() int {
		var pods corev1.PodList
		Expect(k8s.List(ctx, &pods, client.InNamespace(a.ns))).To(Succeed())
		return len(pods.Items)
	}).WithTimeout(time.Minute).Should(BeZero())
	// kube-proxy programs the pod's removal up to about 3 s after it is told, and the pod may be
	// gone before that: a new connection sent to it meanwhile is lost in the bridge and hangs.
	// Wait until kube-proxy sends the Service's callers only to the resolver's pods.
	gone := time.Now()
	var stale []string
	Eventually(func(g Gomega) {
		var pods corev1.PodList
		g.Expect(k8s.List(ctx, &pods, client.InNamespace("elasti-system"), client.MatchingLabels{"app": "elasti-resolver"})).To(Succeed())
		resolvers := map[string]bool{}
		for _, p := range pods.Items {
			resolvers[p.Status.PodIP] = true
		}
		targets := kubeProxyTargets(a.ns + "/shop:http")
		g.Expect(targets).NotTo(BeEmpty())
		for _, ip := range targets {
			if !resolvers[ip] && !slices.Contains(stale, ip) {
				stale = append(stale, ip)
			}
			g.Expect(resolvers).To(HaveKey(ip), "kube-proxy still sends %s/shop to %s", a.ns, ip)
		}
	}).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	if len(stale) > 0 {
		GinkgoWriter.Printf("kube-proxy sent new connections to the gone pod %v for %s after it was gone\n", stale, time.Since(gone).Round(100*time.Millisecond))
	}
	// A probe on a fresh connection, which the resolver answers itself, must not wake the target.
	fresh := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	Eventually(func() error {
		req, _ := http.NewRequest(http.MethodGet, a.url+"/probe", nil)
		resp, err := a.do(fresh, req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}).WithTimeout(30 * time.Second).Should(Succeed())
	Expect(a.replicas()).To(BeZero(), "the probe woke the target")
	GinkgoWriter.Printf("at zero %s after the wait began\n", time.Since(start).Round(100*time.Millisecond))
}

// kubeProxyTargets lists the pod IPs that kube-proxy sends a Service port's new connections to,
// such as "ns/shop:http". The suite runs as root in the cluster's network namespace.
func kubeProxyTargets(servicePort string) []string {
	GinkgoHelper()
	ips, err := localcluster.KubeProxyTargets(servicePort)
	Expect(err).NotTo(HaveOccurred())
	return ips
}

var _ = Describe("Cold start", Ordered, func() {
	var a *app
	BeforeAll(func() {
		prom.Active.Store(false)
		a = deployApp(5)
		a.toZero()
	})

	It("answers a probe without waking the target", func() {
		req, _ := http.NewRequest(http.MethodGet, a.url+"/probe", nil)
		resp, err := a.do(a.client, req)
		Expect(err).NotTo(HaveOccurred())
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(string(body)).To(Equal("canned\n"))
		Consistently(a.replicas).WithTimeout(3 * time.Second).Should(BeZero())
	})

	It("answers 100 concurrent requests at zero with 200, each executed exactly once", func() {
		const n = 100
		body := bytes.Repeat([]byte("x"), 1<<20)
		start := time.Now()
		var wg sync.WaitGroup
		codes := make([]int, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				method, payload := http.MethodGet, io.Reader(nil)
				if i%2 == 1 {
					method, payload = http.MethodPost, bytes.NewReader(body)
				}
				req, _ := http.NewRequest(method, a.url+"/echo", payload)
				req.Header.Set("X-Request-Id", fmt.Sprintf("cold-%03d", i))
				c := &http.Client{Timeout: 2 * time.Minute}
				resp, err := a.do(c, req)
				if err != nil {
					errs[i] = err
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				codes[i] = resp.StatusCode
				if method == http.MethodPost && !strings.HasPrefix(string(got), fmt.Sprintf("POST %d ", len(body))) {
					errs[i] = fmt.Errorf("POST echoed %q", got)
				}
			})
		}
		wg.Wait()
		GinkgoWriter.Printf("100 requests at zero answered in %s\n", time.Since(start).Round(10*time.Millisecond))
		for i := range n {
			Expect(errs[i]).NotTo(HaveOccurred(), "request %d", i)
			Expect(codes[i]).To(Equal(http.StatusOK), "request %d", i)
		}
		seen := a.counts()
		for i := range n {
			Expect(seen).To(HaveKeyWithValue(fmt.Sprintf("cold-%03d", i), 1), "request %d was not executed exactly once", i)
		}
		Eventually(func() v1alpha1.Mode { return a.status().Mode }).WithTimeout(time.Minute).Should(Equal(v1alpha1.ModeServe))
	})

	It("streams a response with no Content-Length, SSE and a WebSocket echo from zero", func() {
		a.toZero()
		var wg sync.WaitGroup
		wg.Go(func() {
			defer GinkgoRecover()
			req, _ := http.NewRequest(http.MethodGet, a.url+"/stream", nil)
			resp, err := a.do(a.client, req)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			Expect(resp.ContentLength).To(Equal(int64(-1)))
			b, _ := io.ReadAll(resp.Body)
			Expect(strings.Count(string(b), "chunk ")).To(Equal(5))
		})
		wg.Go(func() {
			defer GinkgoRecover()
			req, _ := http.NewRequest(http.MethodGet, a.url+"/sse", nil)
			resp, err := a.do(a.client, req)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			Expect(resp.Header.Get("Content-Type")).To(HavePrefix("text/event-stream"))
			s := bufio.NewScanner(resp.Body)
			events := 0
			for s.Scan() {
				if strings.HasPrefix(s.Text(), "data: ") {
					events++
				}
			}
			Expect(events).To(Equal(3))
		})
		wg.Go(func() {
			defer GinkgoRecover()
			conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(a.url, "http")+"/ws",
				&websocket.DialOptions{Host: "shop." + a.ns})
			Expect(err).NotTo(HaveOccurred())
			defer conn.CloseNow()
			Expect(conn.Write(ctx, websocket.MessageText, []byte("hello"))).To(Succeed())
			_, msg, err := conn.Read(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(msg)).To(Equal("hello"))
		})
		wg.Wait()
	})
})

var _ = Describe("Bad input", func() {
	It("answers an unknown host with 404 and forwards nothing", func() {
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "elasti-system", Name: "elasti-resolver"}, svc)).To(Succeed())
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:8012/", svc.Spec.ClusterIP), nil)
		req.Host = "example.com"
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		Expect(err).NotTo(HaveOccurred())
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusNotFound), "%s", body)
		Expect(string(body)).To(ContainSubstring("example.com"), "the 404 names the unknown host")
	})

	It("rejects an invalid ElastiService with a message that names the field", func() {
		err := k8s.Create(ctx, &v1alpha1.ElastiService{
			ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "default"},
			Spec: v1alpha1.ElastiServiceSpec{Service: "x", CooldownPeriod: -1,
				ScaleTargetRef: v1alpha1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "x"},
				Triggers:       []v1alpha1.Trigger{{Type: "prometheus", Metadata: v1alpha1.TriggerMetadata{ServerAddress: "http://p"}}}},
		})
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.cooldownPeriod"))
	})
})

var _ = Describe("Clean-up", func() {
	It("restores the routes and the replicas when the ElastiService is deleted at zero", func() {
		prom.Active.Store(false)
		a := deployApp(5)
		a.toZero()
		Expect(k8s.Delete(ctx, &v1alpha1.ElastiService{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: a.ns}})).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, &v1alpha1.ElastiService{}))
		}).WithTimeout(2 * time.Minute).Should(BeTrue())
		Expect(a.replicas()).To(Equal(int32(1)))
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "shop"}, vs)).To(Succeed())
		Expect(vs.Spec.Http[0].Route[0].GetDestination().GetHost()).To(Equal("shop"))
		Expect(vs.Spec.Http[0].Route[0].GetDestination().GetSubset()).To(Equal("v1"))
		Expect(vs.Annotations).NotTo(HaveKey(v1alpha1.AnnotationOriginalRoutes))
		Eventually(func() error { return a.get("/healthz") }).WithTimeout(time.Minute).Should(Succeed())
	})
})
