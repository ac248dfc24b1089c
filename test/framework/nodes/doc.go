// Package nodes runs real Kubernetes nodes on this machine for tests: each
// node is a kubelet, containerd 2.x and kube-proxy in a network namespace
// of its own, beside a control plane started by test/framework, with
// kube-scheduler added. The programs come from hack/install-node-bins.sh
// (kubelet, kube-proxy, kube-scheduler, containerd, its shim, ctr into
// bin/) and hack/install-deps.sh (runc, the CNI plugins, iptables,
// conntrack); a missing one is an error naming the script.
//
// # Address plan
//
// Packets go only to documentation ranges (and loopback):
//
//	198.51.100.0/25    the node network: the host bridge srnbr0 is
//	                   198.51.100.1 (kube-apiserver binds there, so nodes
//	                   and pods reach it), node i (1-based) is 198.51.100.(10+i)
//	198.51.100.128/26  Service ClusterIPs (kube-apiserver
//	                   --service-cluster-ip-range); default/kubernetes is .129
//	198.51.100.192/26  pod CIDRs: a /28 per node (so at most four nodes of
//	                   at most 13 pods each), allocated by
//	                   kube-controller-manager's node IPAM
//	                   (--cluster-cidr, --node-cidr-mask-size 28) or by
//	                   whoever else sets Node.spec.podCIDR, e.g. Stargate's
//	                   IPAM for Nodes that are Stargate Servers
//
// Everything stays inside 198.51.100.0/24: the host's routing table gets
// routes to the node network and the pod CIDRs, so no range of them may
// hold an address the host itself uses. On this machine kind 192.0.2.0/24
// is eth0's network and the Go module proxy resolves into 203.0.113.0/24;
// pod CIDRs there once routed the proxy's address to a test node while
// the nodes ran.
//
// HostWorldOptions sets these on a framework.WorldOptions. Node
// namespaces have no default route: each has a route to every other node's
// pod CIDR via that node's IP, and the host one to each pod CIDR, so the
// kube-apiserver reaches pods (aggregated servers, webhooks) and pods reach
// it; the Service range is routed onto the bridge without a gateway, so a
// hostNetwork pod's connect reaches kube-proxy's DNAT (an address no rule
// rewrites finds no neighbour). Packets never leave the bridge; the host's
// ip_forward is untouched (forwarding is on only inside the node
// namespaces). StartJumpHost adds an SSH jump host at 198.51.100.30.
//
// # Nodes provisioned over SSH
//
// Cluster.AddNode with NodeOptions.SSH makes a node the way a datacenter
// server waits for Stargate: sshd in its namespace (host key
// Node.HostKey), everything installed and configured, nothing running.
// A provisioning script that logs in runs Node.StartScript with the
// bootstrap kubeconfig it delivered; containerd, the kubelet (TLS
// bootstrap) and kube-proxy start in the node's cgroups as the others'
// do, so teardown is the same.
//
// # Per node
//
// The network namespace srn-NAME, entered with nsenter --net (not ip netns
// exec, which remounts /sys and hides the cgroup hierarchies); the cgroup
// root /srn-NAME in every cgroup v1 hierarchy (a kubelet destroys pod
// cgroups it does not own under a shared root), and the daemons in
// srn-NAME.daemons of the pids hierarchy, so that every process of a node
// can be found and killed by its cgroups; and its own directory under
// BaseDir with the kubelet's root-dir and pod logs, containerd's root,
// state, socket and runc root, the CNI configuration and host-local's
// leases. A Node's CNI configuration (bridge + host-local on its
// spec.podCIDR) is written once the Node has a pod CIDR, and re-written
// when it changes; until then the Node is NotReady (no network).
//
// Credentials: by default each kubelet gets a client certificate
// system:node:NAME (group system:nodes) from the kube-apiserver's client
// CA; NodeOptions.BootstrapKubeconfig instead hands the kubelet a bootstrap
// kubeconfig and lets it do TLS bootstrap (someone must approve its CSR).
//
// # One run at a time, and leftovers
//
// The host bridge, its address and the routes live in the host's network
// namespace, so two runs on one machine would collide: SetUpHost takes an
// exclusive lock (BaseDir/.lock), waiting for another run to finish. With
// the lock held, anything named with the prefix srn is a leftover of a run
// that was killed, and SetUpHost sweeps it first: processes in the srn-*
// cgroups or running from BaseDir, mounts under BaseDir, srn-* network
// namespaces and links, srn-* cgroups, BaseDir's contents. Cluster.Stop
// tears down in order (nodes cordoned, pods deleted and waited for, processes by PID then
// by cgroup, unmounts, namespaces, cgroups, directories); Host.Close sweeps
// once more and removes the bridge; Leftovers lists anything that is
// still there.
package nodes
