package localcluster

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeConfigs writes containerd's, the CNI plugin's, kubelet's, kube-proxy's, CoreDNS's and
// istiod's configuration under Dir/run.
func writeConfigs(o Options) error {
	r := o.run()
	files := map[string]string{
		// restrict_oom_score_adj: this VM lacks CAP_SYS_RESOURCE, so containerd must not ask for
		// negative OOM scores, or every sandbox fails to start.
		"containerd/config.toml": fmt.Sprintf(`version = 2
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"
[grpc]
  address = "%[2]s"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "%[1]s/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "%[1]s/cni/net.d"
`, r, o.sock()),
		"cni/net.d/10-bridge.conflist": fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "elasti-pods", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "%s/cni/ipam", "ranges": [[{"subnet": "%s"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
`, r, PodCIDR),
		"resolv.conf": "nameserver " + NodeIP + "\n",
		// failCgroupV1: false keeps kubelet >= 1.35 running on this cgroup v1 host. The cgroup
		// root and pod log directory are the cluster's own, since a kubelet removes pods' cgroups
		// and log directories that it does not know.
		"kubelet/config.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: %[2]s/ca.crt}}
authorization: {mode: Webhook}
tlsCertFile: %[2]s/kubelet.crt
tlsPrivateKeyFile: %[2]s/kubelet.key
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%[3]s
failSwapOn: false
failCgroupV1: false
cgroupRoot: %[5]s
podLogsDir: %[4]s/pod-logs
resolvConf: %[4]s/resolv.conf
clusterDomain: cluster.local
clusterDNS: [%[1]s]
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
serializeImagePulls: false
maxPods: 60
`, NodeIP, o.pki(), o.sock(), r, o.cgroupRoot()),
		"kube-proxy.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %s}
mode: iptables
clusterCIDR: 10.244.0.0/16
hostnameOverride: %s
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0}
nodePortAddresses: ["127.0.0.0/8"]
`, o.Kubeconfig(), nodeName),
		// Cluster DNS on the node address; names outside the cluster get NXDOMAIN, never an
		// upstream.
		"coredns/Corefile": fmt.Sprintf(`cluster.local:53 in-addr.arpa:53 {
    bind %[1]s
    kubernetes cluster.local in-addr.arpa {
        kubeconfig %[2]s local
        pods insecure
    }
    cache 5
    errors
}
.:53 {
    bind %[1]s
    template ANY ANY { rcode NXDOMAIN }
}
`, NodeIP, o.Kubeconfig()),
		"istiod/mesh": `defaultConfig:
  discoveryAddress: 127.0.0.1:15012
rootNamespace: istio-system
trustDomain: cluster.local
`,
		"istiod/meshNetworks": "networks: {}\n",
	}
	for name, content := range files {
		path := filepath.Join(r, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
