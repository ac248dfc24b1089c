package nodes

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Paths of one node's files, all under its directory BaseDir/NAME.
type nodePaths struct {
	dir           string
	containerdCfg string
	containerd    string // root
	state         string // containerd's state
	socket        string
	runcRoot      string
	cniConfDir    string
	cniDataDir    string // host-local leases
	kubeletRoot   string
	podLogs       string
	volumePlugins string
	kubeletCfg    string
	kubeconfig    string // the kubelet's own, or where TLS bootstrap writes it
	proxyCfg      string
	pki           string
}

func pathsOf(name string) nodePaths {
	d := filepath.Join(BaseDir, name)
	return nodePaths{
		dir:           d,
		containerdCfg: filepath.Join(d, "containerd.toml"),
		containerd:    filepath.Join(d, "containerd"),
		state:         filepath.Join(d, "run"),
		socket:        filepath.Join(d, "run", "containerd.sock"),
		runcRoot:      filepath.Join(d, "run", "runc"),
		cniConfDir:    filepath.Join(d, "cni", "net.d"),
		cniDataDir:    filepath.Join(d, "cni", "leases"),
		kubeletRoot:   filepath.Join(d, "kubelet"),
		podLogs:       filepath.Join(d, "pod-logs"),
		volumePlugins: filepath.Join(d, "volume-plugins"),
		kubeletCfg:    filepath.Join(d, "kubelet.yaml"),
		kubeconfig:    filepath.Join(d, "kubelet.kubeconfig"),
		proxyCfg:      filepath.Join(d, "kube-proxy.yaml"),
		pki:           filepath.Join(d, "pki"),
	}
}

// containerdConfig is containerd 2.x's configuration (version 3) for one
// node. restrict_oom_score_adj: this kind of VM withholds
// CAP_SYS_RESOURCE, without which every sandbox fails ("can't get final
// child's PID from pipe"). netns_mounts_under_state_dir keeps the pods'
// network namespace mounts in the node's directory instead of the host's
// /run/netns. NRI is off: its socket would be shared by all nodes.
func containerdConfig(p nodePaths) string {
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = %[5]q

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  Root = %[6]q
  SystemdCgroup = false

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = %[7]q
`, p.containerd, p.state, p.socket, p.socket+".ttrpc", SandboxImage, p.runcRoot, p.cniConfDir)
}

// kubeletConfig is the KubeletConfiguration of one node. failCgroupV1:
// this kind of machine has cgroup v1, which kubelets refuse by default
// since 1.35. cgroupRoot is the node's own. kubeletCgroups is left out (not
// applied on v1).
func kubeletConfig(p nodePaths, name, ip, clientCAFile string, serverTLSBootstrap bool) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: /%[1]s
enforceNodeAllocatable: ["pods"]
containerRuntimeEndpoint: unix://%[2]s
address: %[3]s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[4]q}
authorization: {mode: Webhook}
podLogsDir: %[5]q
volumePluginDir: %[6]q
resolvConf: ""
rotateCertificates: true
serverTLSBootstrap: %[7]t
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, cgroupName(name), p.socket, ip, clientCAFile, p.podLogs, p.volumePlugins, serverTLSBootstrap)
}

// kubeProxyConfig is kube-proxy's configuration in a node namespace: no
// conntrack sysctls (not namespaced, and read-only there), iptables mode.
func kubeProxyConfig(name, kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %[1]q}
hostnameOverride: %[2]q
mode: iptables
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, kubeconfig, name)
}

// cniConfig is a node's CNI network: a bridge inside the node namespace
// that is the pods' gateway, host-local addresses out of the node's pod
// CIDR, no masquerading (pods keep their addresses across nodes).
func cniConfig(name, podCIDR, dataDir, bridge string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       cniNetwork(name),
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": podCIDR}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": dataDir,
				},
			},
		},
	}, "", "  ")
}

// cniNetwork names a node's network; libcni caches results under it.
func cniNetwork(name string) string { return Prefix + "-" + name }

// cgroupName is the node's cgroup root (without the leading slash).
func cgroupName(name string) string { return Prefix + "-" + name }

// netnsName is the node's network namespace.
func netnsName(name string) string { return Prefix + "-" + name }

// kubeconfig renders a kubeconfig for server with a client certificate.
func kubeconfig(server, caFile, certFile, keyFile string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: %q
    certificate-authority: %q
users:
- name: user
  user:
    client-certificate: %q
    client-key: %q
contexts:
- name: default
  context: {cluster: cluster, user: user}
current-context: default
`, server, caFile, certFile, keyFile)
}

func writeFile(path, data string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(data), 0o600)
}
