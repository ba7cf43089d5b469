package podprobe

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// newPod is a running pod at 127.0.0.1, where the tests' servers listen.
func newPod(containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "app-1"},
		Spec:       corev1.PodSpec{Containers: containers},
		Status:     corev1.PodStatus{PodIP: "127.0.0.1"},
	}
}

func httpProbe(port intstr.IntOrString, path string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: port, Path: path}}}
}

func tcpProbe(port intstr.IntOrString) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}}
}

func grpcProbe(port int32, service *string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: port, Service: service}}}
}

func execProbe() *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
}

// portOf is the port of a host:port address or URL host.
func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

// statusServer answers every request with the status it holds and counts the requests.
type statusServer struct {
	*httptest.Server
	status atomic.Int32
	hits   atomic.Int32
}

func newStatusServer(t *testing.T, status int) *statusServer {
	t.Helper()
	s := &statusServer{}
	s.status.Store(int32(status))
	s.start(t, func(int32) int { return int(s.status.Load()) })
	return s
}

// newSequenceServer answers request number hit, from 1, with status(hit).
func newSequenceServer(t *testing.T, status func(hit int32) int) *statusServer {
	t.Helper()
	s := &statusServer{}
	s.start(t, status)
	return s
}

func (s *statusServer) start(t *testing.T, status func(hit int32) int) {
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status(s.hits.Add(1)))
	}))
	t.Cleanup(s.Close)
}

// port is the server's port as a probe port.
func (s *statusServer) port(t *testing.T) intstr.IntOrString {
	return intstr.FromInt32(portOf(t, s.Listener.Addr().String()))
}

// hangingServer never answers: a request ends when its client gives up.
func hangingServer(t *testing.T) intstr.IntOrString {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // before Close, which waits for handlers
	return intstr.FromInt32(portOf(t, srv.Listener.Addr().String()))
}

// closedPort is a loopback port with nothing listening on it.
func closedPort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := portOf(t, l.Addr().String())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// mustTranslate is Translate that fails the test on an error.
func mustTranslate(t *testing.T, pod *corev1.Pod) Probe {
	t.Helper()
	p, err := Translate(pod)
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	return p
}
