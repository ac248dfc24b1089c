package dcsim

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
)

// Names of the objects Fixtures makes besides the profiles.
const (
	// SSHSecret is the kubernetes.io/ssh-auth Secret with the client key
	// and every host's known_hosts line.
	SSHSecret = "ssh"
	// ScriptsConfigMap holds each profile's script under <profile>.sh.
	ScriptsConfigMap = "standin-scripts"
	// ControllerBinding is the RoleBinding that gives stargate-controller's
	// ServiceAccount ControllerDatacenterRole in the datacenter namespace,
	// as onboarding a datacenter does (artifacts/datacenter/rbac.yaml).
	ControllerBinding = "stargate-controller"
	// ControllerDatacenterRole is the ClusterRole of
	// artifacts/controller/rbac.yaml with what stargate-controller reads in
	// a datacenter namespace (its SSH Secrets and script ConfigMaps).
	ControllerDatacenterRole = "stargate-controller-datacenter"
	// ControllerNamespace and ControllerServiceAccount name
	// stargate-controller's ServiceAccount in artifacts/controller.
	ControllerNamespace      = "stargate-system"
	ControllerServiceAccount = "stargate-controller"
)

// ControllerRoleBinding is the RoleBinding an admin makes when onboarding
// datacenter namespace ns: stargate-controller's ServiceAccount gets
// ControllerDatacenterRole there, and nowhere else.
func ControllerRoleBinding(ns string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ControllerBinding, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ControllerDatacenterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: ControllerServiceAccount, Namespace: ControllerNamespace}},
	}
}

// StandinScript is a bootstrap script for the simulated workers. The hosts
// share this machine's file system, so the default (Ubuntu) script would
// install packages and start services on the machine itself; this one
// starts kubelet-standin (program) instead, which does the real TLS
// bootstrap with the token and CA the Operation delivered, registers the
// Node with the labels and reports Ready. It keeps each node's files in
// stateDir/<node>: the stand-in's kubeconfigs, pid and log, and a line in
// runs per run. It prints the bootstrap kubeconfig's token line, which the
// controller must redact, and waits sleep before it starts the stand-in.
func StandinScript(stateDir, program string, sleep time.Duration) string {
	return StandinScriptWithHeartbeat(stateDir, program, sleep, 0)
}

// StandinScriptWithHeartbeat is StandinScript whose stand-in renews its
// Node's Ready condition every heartbeat (0: the stand-in's default, 10s,
// a kubelet's nodeStatusUpdateFrequency).
func StandinScriptWithHeartbeat(stateDir, program string, sleep, heartbeat time.Duration) string {
	hb := ""
	if heartbeat > 0 {
		hb = " --heartbeat " + heartbeat.String()
	}
	return fmt.Sprintf(`#!/bin/bash
# Simulated worker: starts kubelet-standin instead of a kubelet.
set -euo pipefail
# shellcheck source=/dev/null
. ./stargate.env
state=%[1]s/"$STARGATE_NODE_NAME"
mkdir -p "$state"
echo run >>"$state/runs"
echo "bootstrap kubeconfig: $(grep token: bootstrap-kubelet.conf)"
sleep %[3]d
if [ -s "$state/pid" ]; then kill "$(cat "$state/pid")" 2>/dev/null || true; fi
rm -f "$state/kubelet.conf"
cp bootstrap-kubelet.conf "$state/bootstrap-kubelet.conf"
setsid %[2]s --bootstrap-kubeconfig "$state/bootstrap-kubelet.conf" --kubeconfig "$state/kubelet.conf" \
  --node-name "$STARGATE_NODE_NAME" --node-ip "$STARGATE_NODE_IP" --node-labels "$STARGATE_NODE_LABELS" --serving-csr%[4]s \
  >"$state/standin.log" 2>&1 </dev/null &
echo $! >"$state/pid"
echo "kubelet-standin started for $STARGATE_NODE_NAME"
`, sshexec.Quote(stateDir), sshexec.Quote(program), int(sleep.Seconds()), hb)
}

// Profile is a ProvisioningProfile of Fixtures that runs Script.
type Profile struct {
	Name       string
	Script     string
	NodeLabels map[string]string
}

// Datacenter is the Datacenter, named ns, that declares namespace ns the
// simulated datacenter: its worker subnet, its router (the tailnet address
// the Servers name as spec.routerIP) and the router's address on the
// worker subnet, the gateway the node agent checks.
func Datacenter(ns string) *v1.Datacenter {
	return &v1.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: v1.DatacenterSpec{
			Namespace:    ns,
			WorkerSubnet: WorkerSubnet,
			Router:       v1.DatacenterRouter{IP: RouterTailnetIP},
			AgentGateway: RouterSubnetIP,
		},
	}
}

// Fixtures returns the objects that describe the simulation to Stargate in
// namespace ns: the namespace, its Datacenter (without which
// stargate-controller ignores the namespace's Servers), the controller's
// RoleBinding there (ControllerRoleBinding: without it a controller running
// as its own ServiceAccount may not read SSHSecret), SSHSecret,
// ScriptsConfigMap and the profiles (admin user root, Kubernetes 1.37),
// and the ClusterRoleBinding
// nodesBinding, which gives the group system:nodes the role system:node:
// the test API servers authorize with RBAC only, without the Node
// authorizer, and the kubelet stand-ins need what kubelets may do.
func (s *Sim) Fixtures(ns, nodesBinding string, profiles ...Profile) []client.Object {
	scripts := map[string]string{}
	for _, p := range profiles {
		scripts[p.Name+".sh"] = p.Script
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		Datacenter(ns),
		ControllerRoleBinding(ns),
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: nodesBinding},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"}},
		},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: SSHSecret, Namespace: ns},
			Type:       corev1.SecretTypeSSHAuth,
			Data:       map[string][]byte{corev1.SSHAuthPrivateKey: s.ClientKeyPEM, "known_hosts": s.KnownHosts()},
		},
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: ScriptsConfigMap, Namespace: ns},
			Data:       scripts,
		},
	}
	for _, p := range profiles {
		objs = append(objs, &v1.ProvisioningProfile{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: ns},
			Spec: v1.ProvisioningProfileSpec{
				KubernetesVersion:       "1.37",
				AdminUsername:           "root",
				SSHCredentialsSecretRef: &v1.LocalObjectReference{Name: SSHSecret},
				BootstrapScriptRef:      &v1.ConfigMapKeyReference{Name: ScriptsConfigMap, Key: p.Name + ".sh"},
				NodeLabels:              p.NodeLabels,
			},
		})
	}
	return objs
}

// Server is a Server in namespace ns for worker h, reached through the
// router, with h's host key pinned and the given profile. A nil h gives
// an address no host has (UnusedWorkerIP) and no pinned key.
func Server(ns, name string, h *Host, profile string) *v1.Server {
	s := &v1.Server{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.ServerSpec{
			Hostname:               name,
			IPAddress:              UnusedWorkerIP,
			RouterIP:               RouterTailnetIP,
			SSHPort:                22,
			ProvisioningProfileRef: &v1.LocalObjectReference{Name: profile},
		},
	}
	if h != nil {
		s.Spec.IPAddress, s.Spec.HostKey = h.IP, h.HostKey
	}
	return s
}

// StandinResetScript is a reset script (stargate-controller's
// --reset-script) for the simulated workers, whose hosts share this
// machine's file system: instead of stopping a kubelet and removing
// /etc/kubernetes, it stops the kubelet stand-in running in its own
// network namespace and removes that node's kubeconfigs under stateDir
// (see StandinScript), and counts the reset in stateDir/<node>/resets.
func StandinResetScript(stateDir string) string {
	return `#!/bin/bash
set -euo pipefail
self=$(readlink /proc/self/ns/net)
for f in ` + sshexec.Quote(stateDir) + `/*/pid; do
  p=$(cat "$f" 2>/dev/null) || continue
  [ -n "$p" ] && [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$self" ] || continue
  d=$(dirname "$f")
  kill "$p" 2>/dev/null || true
  rm -f "$d/kubelet.conf" "$d/bootstrap-kubelet.conf" "$f"
  echo "[stargate] reset $(basename "$d")"
  echo reset >>"$d/resets"
done
echo "[stargate] reset done"
`
}

// StandinRebootScript is a reboot (stargate-controller's
// --reboot-command "bash FILE") for the simulated workers: it stops the
// kubelet stand-in of its own network namespace, waits down, and starts
// it again with the client kubeconfig it was issued (the bootstrap token
// is gone by then), which is what a reboot looks like from the API. It
// counts reboots in stateDir/<node>/reboots.
func StandinRebootScript(stateDir string, down time.Duration) string {
	return fmt.Sprintf(`#!/bin/bash
set -u
self=$(readlink /proc/self/ns/net)
for f in %s/*/pid; do
  p=$(cat "$f" 2>/dev/null) || continue
  [ -n "$p" ] && [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$self" ] || continue
  d=$(dirname "$f")
  mapfile -d '' args <"/proc/$p/cmdline"
  kill "$p"
  echo reboot >>"$d/reboots"
  sleep %d
  for i in "${!args[@]}"; do
    if [ "${args[$i]}" = --bootstrap-kubeconfig ]; then args[i+1]="$d/kubelet.conf"; fi
  done
  setsid "${args[@]}" >>"$d/standin.log" 2>&1 </dev/null &
  echo $! >"$f"
done
`, sshexec.Quote(stateDir), int(down.Seconds()))
}
