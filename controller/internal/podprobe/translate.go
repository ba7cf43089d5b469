package podprobe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// UserAgent is sent by HTTP and gRPC checks unless a probe sets its own, as the kubelet sends
// kube-probe/<major>.<minor>: applications match it to keep probes out of logs and metrics. The
// version is that of the k8s.io/api this is built with, not the node's.
const UserAgent = "kube-probe/1.37"

// defaultTimeout is the API's default for timeoutSeconds. The API server always sets it, but a
// zero would mean no bound at all.
const defaultTimeout = time.Second

// ErrNotProbeable says that elasti cannot tell from outside the node when this pod is ready; the
// caller should wait for the EndpointSlice instead. Errors that match it are *NotProbeableError.
var ErrNotProbeable = errors.New("not probeable")

// ErrNoPodIP says the pod has no IP yet; Translate can succeed once it has one.
var ErrNoPodIP = errors.New("pod has no IP yet")

// NotProbeableError says why a pod is not probeable, for the ElastiService's status.
type NotProbeableError struct {
	Container string // empty when the reason is about the whole pod
	Reason    string
}

func (e *NotProbeableError) Error() string {
	if e.Container == "" {
		return "pod not probeable: " + e.Reason
	}
	return fmt.Sprintf("container %q not probeable: %s", e.Container, e.Reason)
}

// Is makes errors.Is(err, ErrNotProbeable) hold.
func (e *NotProbeableError) Is(target error) bool { return target == ErrNotProbeable }

// kind is the probe a check comes from.
type kind string

const (
	startup   kind = "startup"
	readiness kind = "readiness"
)

// Probe is every check that must pass for a pod to be worth trying: the startup and readiness
// probes of all its containers. Build it with Translate; the zero Probe never passes.
type Probe struct {
	checks []check
}

// check is one probe of one container, aimed at an address.
type check struct {
	container string
	kind      kind
	timeout   time.Duration
	do        prober
}

// prober is one kind of network check. probe opens one connection and returns nil on success.
type prober interface {
	probe(ctx context.Context) error
	String() string
}

// String lists the checks, for logs and status messages.
func (p Probe) String() string {
	parts := make([]string, len(p.checks))
	for i, c := range p.checks {
		parts[i] = fmt.Sprintf("%s %s %s", c.container, c.kind, c.do)
	}
	return strings.Join(parts, "; ")
}

// Translate builds the Probe of a pod from its spec and IP, following the kubelet: a container is
// ready once its startup probe and then its readiness probe pass, a container without them once
// it runs (which the caller reads from the pod's status, not from here), and the pod once all
// its containers and its restartable init containers are ready.
func Translate(pod *corev1.Pod) (Probe, error) {
	if len(pod.Spec.ReadinessGates) > 0 {
		// Another controller sets these conditions; no probe can stand in for it.
		return Probe{}, &NotProbeableError{Reason: "readiness gates"}
	}
	var containers []*corev1.Container
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			containers = append(containers, c)
		}
	}
	for i := range pod.Spec.Containers {
		containers = append(containers, &pod.Spec.Containers[i])
	}

	// Startup checks first: the kubelet runs a container's readiness probe only once it started.
	var starts, readies []check
	for _, c := range containers {
		for _, kp := range []struct {
			kind  kind
			probe *corev1.Probe
		}{{startup, c.StartupProbe}, {readiness, c.ReadinessProbe}} {
			if kp.probe == nil {
				continue
			}
			do, err := translate(c, kp.probe, pod.Status.PodIP)
			if err != nil {
				return Probe{}, err
			}
			timeout := time.Duration(kp.probe.TimeoutSeconds) * time.Second
			if timeout <= 0 {
				timeout = defaultTimeout
			}
			ch := check{container: c.Name, kind: kp.kind, timeout: timeout, do: do}
			if kp.kind == startup {
				starts = append(starts, ch)
			} else {
				readies = append(readies, ch)
			}
		}
	}
	if len(starts)+len(readies) == 0 {
		// The pod is ready as soon as its containers run, and its EndpointSlice says so at once.
		return Probe{}, &NotProbeableError{Reason: "no startup or readiness probe"}
	}
	if pod.Status.PodIP == "" {
		return Probe{}, ErrNoPodIP
	}
	return Probe{checks: append(starts, readies...)}, nil
}

// translate makes the check of one probe of container c.
func translate(c *corev1.Container, p *corev1.Probe, podIP string) (prober, error) {
	switch {
	case p.Exec != nil:
		return nil, &NotProbeableError{Container: c.Name, Reason: "exec probe"}
	case p.HTTPGet != nil:
		return translateHTTP(c, p.HTTPGet, podIP)
	case p.TCPSocket != nil:
		if p.TCPSocket.Host != "" {
			return nil, hostNotProbeable(c, p.TCPSocket.Host)
		}
		port, err := resolvePort(c, p.TCPSocket.Port)
		if err != nil {
			return nil, err
		}
		return tcpSocket{addr: net.JoinHostPort(podIP, strconv.Itoa(port))}, nil
	case p.GRPC != nil:
		port := int(p.GRPC.Port)
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("container %q: gRPC probe port %d out of range", c.Name, port)
		}
		g := grpcHealth{addr: net.JoinHostPort(podIP, strconv.Itoa(port))}
		if p.GRPC.Service != nil {
			g.service = *p.GRPC.Service
		}
		// The API server keeps mode only where the GRPCContainerProbeTLS gate is on.
		g.tls = p.GRPC.Mode != nil && *p.GRPC.Mode == corev1.GRPCProbeModeTLS
		return g, nil
	default:
		return nil, fmt.Errorf("container %q: probe has no handler", c.Name)
	}
}

func translateHTTP(c *corev1.Container, g *corev1.HTTPGetAction, podIP string) (prober, error) {
	if g.Host != "" {
		return nil, hostNotProbeable(c, g.Host)
	}
	port, err := resolvePort(c, g.Port)
	if err != nil {
		return nil, err
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	if scheme != "http" && scheme != "https" {
		return nil, fmt.Errorf("container %q: HTTP probe scheme %q", c.Name, g.Scheme)
	}
	// Like the kubelet, the path may carry a query; one that does not parse is taken as a path.
	u, err := url.Parse(g.Path)
	if err != nil {
		u = &url.URL{Path: g.Path}
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(podIP, strconv.Itoa(port))

	header := http.Header{}
	for _, h := range g.HTTPHeaders {
		header.Add(h.Name, h.Value)
	}
	// The kubelet's defaults, which a probe's own headers replace; an empty Accept removes it.
	if _, ok := header["User-Agent"]; !ok {
		header.Set("User-Agent", UserAgent)
	}
	if _, ok := header["Accept"]; !ok {
		header.Set("Accept", "*/*")
	} else if header.Get("Accept") == "" {
		header.Del("Accept")
	}
	host := header.Get("Host")
	header.Del("Host") // net/http sends Request.Host, never this header

	// The API server keeps protocol only where the H2CContainerProbe gate is on, and allows
	// HTTP2 only with scheme HTTP.
	h2c := g.Protocol != nil && *g.Protocol == corev1.HTTPProtocolHTTP2
	return httpGet{url: u.String(), host: host, header: header, h2c: h2c}, nil
}

// hostNotProbeable refuses a probe's host: the kubelet connects to it from the node, where
// localhost is the node itself; from elsewhere the name may lead elsewhere or nowhere.
func hostNotProbeable(c *corev1.Container, host string) error {
	return &NotProbeableError{Container: c.Name, Reason: fmt.Sprintf("probe host %q", host)}
}

// resolvePort turns a probe port, a number or the name of one of the container's ports, into a
// number, as the kubelet does.
func resolvePort(c *corev1.Container, port intstr.IntOrString) (int, error) {
	n := 0
	switch port.Type {
	case intstr.Int:
		n = int(port.IntVal)
	case intstr.String:
		found := false
		for _, cp := range c.Ports {
			if cp.Name == port.StrVal {
				n, found = int(cp.ContainerPort), true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("container %q: probe port %q is not a port of the container", c.Name, port.StrVal)
		}
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("container %q: probe port %s out of range", c.Name, port.String())
	}
	return n, nil
}
