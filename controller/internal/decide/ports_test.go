package decide

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestPortProtocol(t *testing.T) {
	tests := map[string]struct {
		port     corev1.ServicePort
		protocol string
		why      string
		http     bool
	}{
		"http name":                  {port: corev1.ServicePort{Name: "http", Port: 80}, protocol: "HTTP", why: "name prefix", http: true},
		"http prefix":                {port: corev1.ServicePort{Name: "http-web", Port: 80}, protocol: "HTTP", why: "name prefix", http: true},
		"name case":                  {port: corev1.ServicePort{Name: "HTTP2-api", Port: 80}, protocol: "HTTP2", why: "name prefix", http: true},
		"grpc":                       {port: corev1.ServicePort{Name: "grpc", Port: 9090}, protocol: "GRPC", why: "name prefix", http: true},
		"grpc-web before the dash":   {port: corev1.ServicePort{Name: "grpc-web-ui", Port: 9090}, protocol: "GRPC-Web", why: "name prefix", http: true},
		"http_proxy":                 {port: corev1.ServicePort{Name: "http_proxy", Port: 3128}, protocol: "HTTP_PROXY", why: "name prefix", http: true},
		"tcp prefix":                 {port: corev1.ServicePort{Name: "tcp-db", Port: 5432}, protocol: "TCP", why: "name prefix"},
		"tls":                        {port: corev1.ServicePort{Name: "tls", Port: 443}, protocol: "TLS", why: "name prefix"},
		"https":                      {port: corev1.ServicePort{Name: "https", Port: 443}, protocol: "HTTPS", why: "name prefix"},
		"mongo":                      {port: corev1.ServicePort{Name: "mongo-main", Port: 27018}, protocol: "Mongo", why: "name prefix"},
		"redis":                      {port: corev1.ServicePort{Name: "redis", Port: 6379}, protocol: "Redis", why: "name prefix"},
		"mysql":                      {port: corev1.ServicePort{Name: "mysql", Port: 3307}, protocol: "MySQL", why: "name prefix"},
		"udp name on a tcp port":     {port: corev1.ServicePort{Name: "udp-dns", Port: 5353}, protocol: "UDP", why: "name prefix"},
		"unnamed is sniffed":         {port: corev1.ServicePort{Port: 8080}, http: true},
		"unknown name is sniffed":    {port: corev1.ServicePort{Name: "web", Port: 8080}, http: true},
		"name without dash unknown":  {port: corev1.ServicePort{Name: "httpx", Port: 8080}, http: true},
		"well-known port, no name":   {port: corev1.ServicePort{Port: 3306}, protocol: "TCP", why: "well-known port 3306 with no protocol named"},
		"well-known port named http": {port: corev1.ServicePort{Name: "http", Port: 3306}, protocol: "HTTP", why: "name prefix", http: true},
		"udp protocol":               {port: corev1.ServicePort{Name: "http", Port: 53, Protocol: corev1.ProtocolUDP}, protocol: "UDP", why: "protocol"},
		"sctp protocol":              {port: corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolSCTP}, protocol: "SCTP", why: "protocol"},
		"appProtocol wins over the name": {
			port:     corev1.ServicePort{Name: "http", Port: 80, AppProtocol: ptr.To("tcp")},
			protocol: "TCP", why: `appProtocol "tcp"`,
		},
		"appProtocol http on a tcp name": {
			port:     corev1.ServicePort{Name: "tcp-web", Port: 80, AppProtocol: ptr.To("http")},
			protocol: "HTTP", why: `appProtocol "http"`, http: true,
		},
		"appProtocol grpc":                {port: corev1.ServicePort{Name: "x", Port: 9090, AppProtocol: ptr.To("grpc")}, protocol: "GRPC", why: `appProtocol "grpc"`, http: true},
		"appProtocol h2c":                 {port: corev1.ServicePort{Name: "x", Port: 80, AppProtocol: ptr.To("kubernetes.io/h2c")}, protocol: "HTTP2", why: `appProtocol "kubernetes.io/h2c"`, http: true},
		"appProtocol ws":                  {port: corev1.ServicePort{Name: "x", Port: 80, AppProtocol: ptr.To("kubernetes.io/ws")}, protocol: "HTTP", why: `appProtocol "kubernetes.io/ws"`, http: true},
		"appProtocol wss":                 {port: corev1.ServicePort{Name: "x", Port: 443, AppProtocol: ptr.To("kubernetes.io/wss")}, protocol: "HTTPS", why: `appProtocol "kubernetes.io/wss"`},
		"appProtocol bare h2c is sniffed": {port: corev1.ServicePort{Name: "http", Port: 80, AppProtocol: ptr.To("h2c")}, http: true},
		"appProtocol unknown on a well-known port": {
			port:     corev1.ServicePort{Name: "http", Port: 27017, AppProtocol: ptr.To("example.com/db")},
			protocol: "TCP", why: "well-known port 27017 with no protocol named",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			protocol, why, http := PortProtocol(tt.port)
			if protocol != tt.protocol || why != tt.why || http != tt.http {
				t.Errorf("PortProtocol = %q, %q, %v; want %q, %q, %v", protocol, why, http, tt.protocol, tt.why, tt.http)
			}
		})
	}
}

func TestNonHTTPPorts(t *testing.T) {
	http := corev1.ServicePort{Name: "http", Port: 80}
	db := corev1.ServicePort{Name: "tcp-db", Port: 5432}
	sniffed := corev1.ServicePort{Name: "cache", Port: 9000}
	tests := map[string]struct {
		ports []corev1.ServicePort
		l4    []L4Route
		want  []string
	}{
		"all HTTP":           {ports: []corev1.ServicePort{http, sniffed}},
		"a TCP port by name": {ports: []corev1.ServicePort{http, db}, want: []string{`port 5432 "tcp-db" is TCP (name prefix)`}},
		"a tcp route to a sniffed port": {
			ports: []corev1.ServicePort{http, sniffed},
			l4:    []L4Route{{VirtualService: "shop/cache", Kind: "tcp", Port: 9000}},
			want:  []string{`port 9000 "cache" is TCP (tcp route of VirtualService shop/cache)`},
		},
		"a tls route with no port is every port": {
			ports: []corev1.ServicePort{http, sniffed},
			l4:    []L4Route{{VirtualService: "shop/tls", Kind: "tls"}},
			want: []string{`port 80 "http" is TLS (tls route of VirtualService shop/tls)`,
				`port 9000 "cache" is TLS (tls route of VirtualService shop/tls)`},
		},
		"a route to a port the Service lacks": {
			ports: []corev1.ServicePort{http},
			l4:    []L4Route{{VirtualService: "shop/x", Kind: "tcp", Port: 5432}},
		},
		"the port's own protocol first": {
			ports: []corev1.ServicePort{db},
			l4:    []L4Route{{VirtualService: "shop/x", Kind: "tls", Port: 5432}},
			want:  []string{`port 5432 "tcp-db" is TCP (name prefix)`},
		},
		"unnamed": {
			ports: []corev1.ServicePort{{Port: 53, Protocol: corev1.ProtocolUDP}},
			want:  []string{`port 53 is UDP (protocol)`},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, p := range NonHTTPPorts(tt.ports, tt.l4) {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("NonHTTPPorts = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPortsMessage(t *testing.T) {
	one := []NonHTTPPort{{Port: 5432, Name: "tcp-db", Protocol: "TCP", Why: "name prefix"}}
	if got, want := PortsMessage(one), `port 5432 "tcp-db" is TCP (name prefix); elasti can hold only HTTP requests, so the target is kept awake`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	two := []NonHTTPPort{one[0], {Port: 6379, Name: "redis", Protocol: "Redis", Why: "name prefix"}}
	if got, want := PortsMessage(two), `port 5432 "tcp-db" is TCP (name prefix), and 1 more; elasti can hold only HTTP requests, so the target is kept awake`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
