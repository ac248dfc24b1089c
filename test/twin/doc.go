// Package twin is Stargate's network twin: the whole path of pod traffic
// between AKS and remote datacenters, with real packets, on one machine.
//
//   - The real control plane (test/framework: kube-apiserver, etcd,
//     kube-controller-manager, stargate-apiserver) and stargate-controller
//     as a process with every route layer on.
//   - A real tailnet (test/tailnet: tailscaled and the tailscale CLI,
//     Tailscale's testcontrol with DERP/STUN, a REST API v2 on its state):
//     the AKS router and one router per datacenter run real tailscaled;
//     the controller approves routes through the REST API with its real
//     Tailscale code, and tells the DC routers what to advertise over SSH
//     with the real CLI (--advertise-routes-command, the router's socket
//     found through $HOME/ts.sock of the simulated host).
//   - Azure: the SDK's own fake route table (pkg/azure/azurefake), served
//     to the controller process through HTTPS_PROXY and an App Service
//     managed identity (ARM), and rendered into the kernel routes of the
//     AKS VNet's namespace on every change of the table (VNet).
//   - Cilium: the CiliumNode CRD from Cilium's module; the routes to other
//     nodes' pod CIDRs that Cilium would program are rendered from the
//     CiliumNode (else Node) pod CIDRs in the API (NodeRoutes).
//   - Pods: namespaces on the AKS node and on every DC worker (dcsim sites
//     with real sshd, repaved with the kubelet stand-in), addressed from
//     the node's pod CIDR, each with a TCP echo server and a prober that
//     serves Goldpinger's /check and /check_all (Pods, CheckAllResults).
//
// Addresses: the tailnet underlay is 203.0.113.192/26, the workers'
// kube-apiserver address 198.51.100.10; the VNet (10.224.0.0/16), pod
// CIDRs (10.244.0.0/24 on AKS, Stargate's pool 10.244.128.0/17 for DC
// workers) and worker subnets (10.50.N.0/24) exist only inside the twin's
// namespaces. The host's namespace gets nothing but loopback listeners.
// Close stops every process by its PID and deletes every namespace.
//
// The controller runs in the AKS router's namespace (it reaches the DC
// routers over the tailnet, as in AKS through the AKS router) with the
// admin kubeconfig, --route-resync-period=3s instead of the 5 minute
// default, and the host's loopback services it needs (kube-apiserver, the
// tailnet's REST API, the ARM proxy and identity endpoint) forwarded into
// that namespace. Run, as root, after hack/install-test-bins.sh and
// hack/install-tailscale.sh (make deps):
//
//	go test -count=1 -v -run TestEveryPodReachesEveryOtherAndStargateRepairsDrift ./test/twin
//
// A failed run keeps its directory (logs of the controller, the node
// agents, tailscaled, tailcontrol and the control plane) and says where.
package twin
