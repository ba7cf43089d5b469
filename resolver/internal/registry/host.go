package registry

import (
	"net"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// HostName is what a Host header says about a Service: its name, and optionally its namespace
// and port (0 when absent).
type HostName struct {
	Service   string
	Namespace string
	Port      int32
}

// ParseHost reads a Host or :authority value of the forms svc, svc.ns, svc.ns.svc and
// svc.ns.svc.<domain>, each with an optional :port. Anything else, such as an IP address or an
// external name, is not a Service host and gives ok=false.
func ParseHost(host, domain string) (h HostName, ok bool) {
	if host == "" || len(host) > 253+6 {
		return HostName{}, false
	}
	name := host
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		if strings.Contains(host, "]") || strings.Count(host, ":") > 1 {
			return HostName{}, false // an IPv6 literal is never a Service name
		}
		var port string
		var err error
		if name, port, err = net.SplitHostPort(host); err != nil {
			return HostName{}, false
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return HostName{}, false
		}
		h.Port = int32(p)
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	// The labels are cut one at a time rather than split, which would allocate on every request.
	svc, rest, dotted := strings.Cut(name, ".")
	switch {
	case !dotted:
	case !strings.Contains(rest, "."):
		h.Namespace = rest
	default:
		ns, tail, _ := strings.Cut(rest, ".")
		label, domainPart, more := strings.Cut(tail, ".")
		if label != "svc" || more && domainPart != strings.ToLower(domain) {
			return HostName{}, false
		}
		h.Namespace = ns
	}
	h.Service = svc
	if !isLabel(h.Service) || h.Service[0] < 'a' || h.Service[0] > 'z' {
		return HostName{}, false // a Service name starts with a letter
	}
	if h.Namespace != "" && !isLabel(h.Namespace) {
		return HostName{}, false
	}
	return h, true
}

// isLabel reports whether s is a lower-case DNS label (RFC 1123). It is on every request's
// path, so it does not use a regular expression.
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// ParseKey reads an X-Elasti-Service value, "namespace/name".
func ParseKey(v string) (namespace, name string, ok bool) {
	namespace, name, found := strings.Cut(v, "/")
	if !found || len(validation.IsDNS1123Label(namespace)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return "", "", false
	}
	return namespace, name, true
}
