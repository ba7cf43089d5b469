package localcluster

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// KubeProxyTargets lists the addresses that kube-proxy's iptables rules send new connections to
// a Service port to, such as "ns/shop:http". Unlike the Cluster's methods it reads the rules of
// the network namespace it runs in, so it must run as root in the cluster's, as the e2e tier and
// the cold-start benchmark do.
func KubeProxyTargets(servicePort string) ([]string, error) {
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		return nil, fmt.Errorf("iptables-save: %w", err)
	}
	var ips []string
	for line := range strings.Lines(string(out)) {
		// -A KUBE-SVC-... -m comment --comment "ns/shop:http -> 10.244.0.5:8012" -j KUBE-SEP-...
		_, dest, ok := strings.Cut(line, `"`+servicePort+" -> ")
		if !strings.HasPrefix(line, "-A KUBE-SVC-") || !ok {
			continue
		}
		if host, _, err := net.SplitHostPort(strings.SplitN(dest, `"`, 2)[0]); err == nil {
			ips = append(ips, host)
		}
	}
	return ips, nil
}
