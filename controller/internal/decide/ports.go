package decide

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// A Service port carries HTTP, in Istio's eyes, by these rules (istio pkg/config/kube
// ConvertProtocol): UDP is UDP; else appProtocol names the protocol when set, else the port
// name's prefix before the first '-' does; a name Istio does not know is sniffed, except on a few
// well-known database and mail ports, which are TCP. The resolver holds only HTTP, and its slice
// maps every port to its HTTP listener, so any other port would be reset at zero.

// L4Route is a tcp or tls route of a VirtualService whose destination is the target Service.
type L4Route struct {
	// VirtualService is "namespace/name".
	VirtualService string
	// Kind is "tcp" or "tls".
	Kind string
	// Port is the Service port the route is for; 0 when the route names none, which is taken
	// to mean every port.
	Port uint32
}

// NonHTTPPort is a Service port whose traffic elasti cannot hold.
type NonHTTPPort struct {
	Port int32
	Name string
	// Protocol is what the port carries, such as TCP, TLS or UDP; Why says what tells.
	Protocol, Why string
}

func (p NonHTTPPort) String() string {
	port := fmt.Sprintf("port %d", p.Port)
	if p.Name != "" {
		port += fmt.Sprintf(" %q", p.Name)
	}
	return fmt.Sprintf("%s is %s (%s)", port, p.Protocol, p.Why)
}

// PortsMessage says why an ElastiService with the non-HTTP ports ports (at least one) keeps its
// target awake.
func PortsMessage(ports []NonHTTPPort) string {
	first := ports[0].String()
	if len(ports) > 1 {
		first += fmt.Sprintf(", and %d more", len(ports)-1)
	}
	return first + "; elasti can hold only HTTP requests, so the target is kept awake"
}

// wellKnownTCP are the ports Istio takes for TCP when their protocol is not named: sniffing
// would break protocols in which the server speaks first.
var wellKnownTCP = map[int32]bool{25: true, 53: true, 3306: true, 27017: true}

// Protocols Istio reads from a port name's prefix or an appProtocol, and whether each is HTTP.
var protocols = map[string]struct {
	name string
	http bool
}{
	"http": {"HTTP", true}, "http2": {"HTTP2", true}, "http_proxy": {"HTTP_PROXY", true},
	"grpc": {"GRPC", true}, "grpc-web": {"GRPC-Web", true},
	"tcp": {"TCP", false}, "udp": {"UDP", false}, "https": {"HTTPS", false}, "tls": {"TLS", false},
	"mongo": {"Mongo", false}, "redis": {"Redis", false}, "mysql": {"MySQL", false},
}

// PortProtocol returns what Istio takes p to carry and what says so; protocol is empty when
// Istio sniffs it (an unnamed port, or a name it does not know), and http is true for HTTP and
// for sniffed ports.
func PortProtocol(p corev1.ServicePort) (protocol, why string, http bool) {
	switch p.Protocol {
	case corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return string(p.Protocol), "protocol", false
	}
	name, why := p.Name, "name prefix"
	if p.AppProtocol != nil {
		name, why = *p.AppProtocol, fmt.Sprintf("appProtocol %q", *p.AppProtocol)
		// Kubernetes' own appProtocol values.
		switch name {
		case "kubernetes.io/h2c":
			return "HTTP2", why, true
		case "kubernetes.io/ws":
			return "HTTP", why, true
		case "kubernetes.io/wss":
			return "HTTPS", why, false
		}
	}
	prefix := strings.ToLower(name)
	if !strings.HasPrefix(prefix, "grpc-web") {
		prefix, _, _ = strings.Cut(prefix, "-")
	} else {
		prefix = "grpc-web"
	}
	if proto, ok := protocols[prefix]; ok {
		return proto.name, why, proto.http
	}
	if wellKnownTCP[p.Port] {
		return "TCP", fmt.Sprintf("well-known port %d with no protocol named", p.Port), false
	}
	return "", "", true
}

// NonHTTPPorts lists the ports of a Service, in its order, that elasti cannot hold: those Istio
// does not treat as HTTP (or sniffed), and those a tcp or tls route of a VirtualService sends
// somewhere, since their callers speak TCP or TLS whatever the port's name says.
func NonHTTPPorts(ports []corev1.ServicePort, l4 []L4Route) []NonHTTPPort {
	var out []NonHTTPPort
	for _, p := range ports {
		if proto, why, http := PortProtocol(p); !http {
			out = append(out, NonHTTPPort{Port: p.Port, Name: p.Name, Protocol: proto, Why: why})
			continue
		}
		for _, r := range l4 {
			if r.Port == 0 || r.Port == uint32(p.Port) {
				out = append(out, NonHTTPPort{Port: p.Port, Name: p.Name, Protocol: strings.ToUpper(r.Kind),
					Why: fmt.Sprintf("%s route of VirtualService %s", r.Kind, r.VirtualService)})
				break
			}
		}
	}
	return out
}
