package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/test/framework"
	"github.com/stargate-k8s/stargate/test/framework/nodes"
)

const (
	// simNamespace is the datacenter (namespace) of the simulated hosts.
	simNamespace = "dc-sim"
	// profileName names the ProvisioningProfile of the simulated
	// datacenter: its script starts the worker's real containerd, kubelet
	// and kube-proxy.
	profileName = "real"
	// plainNode is the cluster's one node that is no Stargate Server
	// (test/framework/nodes needs one to start a cluster); its pod CIDR
	// comes from kube-controller-manager's node IPAM.
	plainNode = "dev-node"
	// routerName is the jump host standing for the DC router.
	routerName = "dev-router"
	// rebootDown is how long a reboot keeps the kubelet stopped: longer
	// than kube-controller-manager's node grace period (50s), so the Node
	// goes NotReady as it would during a real reboot.
	rebootDown = 60 * time.Second
	// maxWorkers: nodes.MaxNodes pod CIDRs, one of them the plain node's.
	maxWorkers = nodes.MaxNodes - 1
)

// devBinaries are the programs the root path needs beyond the world's.
type devBinaries struct {
	Dir        string // bin directory whose kube-apiserver takes bootstrap tokens, with the node programs
	Controller string
}

// nodePrograms are the programs of bin/ a real node runs
// (hack/install-node-bins.sh), linked into the dev bin directory.
var nodePrograms = []string{"kubelet", "kube-proxy", "kube-scheduler", "containerd", "containerd-shim-runc-v2", "ctr"}

// prepareBinaries makes binDir a bin directory like the repo's bin/ whose
// kube-apiserver also authenticates bootstrap tokens, links the node
// programs into it and builds stargate-controller (unless controller is
// given) into it.
func prepareBinaries(ctx context.Context, root, binDir, controller string, logf func(string, ...any)) (devBinaries, error) {
	b := devBinaries{Dir: binDir, Controller: controller}
	src, err := framework.FindBinaries("")
	if err != nil {
		return b, err
	}
	if _, err := os.Stat(filepath.Join(src.Dir, "kube-controller-manager")); err != nil {
		return b, fmt.Errorf("kube-controller-manager missing in %s; run `make test-bins`: %w", src.Dir, err)
	}
	if _, err := framework.BootstrapTokenBinDir(src, binDir); err != nil {
		return b, err
	}
	for _, name := range nodePrograms {
		target := filepath.Join(src.Dir, name)
		if _, err := os.Stat(target); err != nil {
			return b, fmt.Errorf("%s missing in %s; run hack/install-node-bins.sh (make dev-deps does): %w", name, src.Dir, err)
		}
		link := filepath.Join(binDir, name)
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return b, err
		}
	}
	if b.Controller == "" {
		b.Controller = filepath.Join(binDir, "stargate-controller")
		logf("building stargate-controller from ./cmd/controller")
		if err := goBuild(ctx, root, "./cmd/controller", b.Controller); err != nil {
			// No falling back to an older build: its flags may differ.
			return b, fmt.Errorf("%w\n(-stargate-controller=PATH runs a prebuilt one; -datacenter=false runs without it)", err)
		}
	}
	return b, nil
}

// goBuild builds pkg into out through a temporary name, so a process still
// running the old binary is never handed a half-written file.
func goBuild(ctx context.Context, root, pkg, out string) error {
	tmp := fmt.Sprintf("%s.tmp-%d", out, os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("go build -o %s %s: %w\n%s", out, pkg, err, b)
	}
	return os.Rename(tmp, out)
}

// datacenter is the root-only part of `make dev`: real nodes of
// test/framework/nodes (kubelet, containerd and kube-proxy in network
// namespaces on the host bridge): one plain node, a jump host standing
// for the DC router, and workers waiting to be provisioned over SSH
// through it; Stargate's fixtures for them in namespace dc-sim, and
// stargate-controller running on the host.
type datacenter struct {
	Dir           string
	ControllerLog string
	Cluster       *nodes.Cluster
	Router        *nodes.Node
	Workers       []*nodes.Node

	controller *exec.Cmd
	done       chan struct{}
	exitErr    error // how stargate-controller ended, once done is closed
	logf       func(string, ...any)
}

// startDatacenter starts it all; on error what was started is stopped. It
// replaces the world's kube-controller-manager by one without node IPAM
// once the plain node has its pod CIDR: the workers' come from Stargate.
func startDatacenter(ctx context.Context, w *framework.World, host *nodes.Host, bins devBinaries, dir string, workers int, logf func(string, ...any)) (_ *datacenter, err error) {
	d := &datacenter{Dir: dir, logf: logf}
	defer func() {
		if err != nil {
			d.Stop()
		}
	}()
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cp := w.ControlPlane

	logf("starting kube-scheduler and the real node %s (kubelet, containerd, kube-proxy)", plainNode)
	if d.Cluster, err = nodes.StartCluster(ctx, host, cp, nodes.Options{
		Nodes: []nodes.NodeOptions{{Name: plainNode}},
		Logf:  logf,
	}); err != nil {
		return nil, err
	}
	c, err := client.New(cp.Config, client.Options{Scheme: manager.Scheme})
	if err != nil {
		return nil, err
	}
	logf("restarting kube-controller-manager without node IPAM (Stargate's IPAM gives the workers their pod CIDRs)")
	if err := w.ControllerManager.Stop(); err != nil {
		return nil, err
	}
	w.ControllerManager = nil
	if w.ControllerManager, err = cp.StartControllerManager(ctx, framework.ControllerManagerOptions{}); err != nil {
		return nil, err
	}

	// stargate-controller's SSH key, the router and the workers.
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(key, "stargate-controller")
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, err
	}
	sshOpts := nodes.SSHOptions{AuthorizedKey: string(ssh.MarshalAuthorizedKey(signer.PublicKey()))}
	if d.Router, err = d.Cluster.StartJumpHost(ctx, routerName, sshOpts); err != nil {
		return nil, err
	}
	for i := 1; i <= workers; i++ {
		n, err := d.Cluster.AddNode(ctx, nodes.NodeOptions{Name: fmt.Sprintf("worker-%d", i), ServerTLSBootstrap: true, SSH: &sshOpts})
		if err != nil {
			return nil, err
		}
		d.Workers = append(d.Workers, n)
	}

	if err := d.fixtures(ctx, c, pem.EncodeToMemory(block)); err != nil {
		return nil, fmt.Errorf("fixtures of %s: %w", simNamespace, err)
	}
	caFile := filepath.Join(dir, "cluster-ca.crt")
	if err := os.WriteFile(caFile, cp.Config.CAData, 0o644); err != nil {
		return nil, err
	}
	if err := d.startController(ctx, bins.Controller, cp, caFile); err != nil {
		return nil, err
	}
	return d, d.waitPodCIDRs(ctx, c)
}

// waitPodCIDRs waits until Stargate's IPAM gave every worker's Server a
// pod CIDR. The samples' Servers of dc-east draw from the same small pool
// (nodes.ClusterCIDR: one /28 per node), so they are applied only after
// this, and get what is left.
func (d *datacenter) waitPodCIDRs(ctx context.Context, c client.Client) error {
	deadline := time.Now().Add(time.Minute)
	for {
		var missing []string
		for _, n := range d.Workers {
			var s v1.Server
			if err := c.Get(ctx, client.ObjectKey{Namespace: simNamespace, Name: n.Name}, &s); err != nil || s.Status.PodCIDR == "" {
				missing = append(missing, n.Name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Servers %s of %s have no pod CIDR after a minute; see %s", strings.Join(missing, ", "), simNamespace, d.ControllerLog)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// profileScript is the bootstrap script of the workers: containerd,
// kubelet and kube-proxy are installed (test/framework/nodes wrote each
// worker's start script), so bootstrapping starts them with what Stargate
// delivered, as a real server's script starts the ones it installed.
func (d *datacenter) profileScript() string {
	var cases strings.Builder
	for _, n := range d.Workers {
		fmt.Fprintf(&cases, "  %s) start=%s ;;\n", n.Name, n.StartScript)
	}
	return fmt.Sprintf(`#!/bin/bash
# Starts the real containerd, kubelet and kube-proxy of a worker of the
# simulated datacenter with the bootstrap kubeconfig Stargate delivered.
set -euo pipefail
# shellcheck source=/dev/null
. ./stargate.env
case "$STARGATE_NODE_NAME" in
%s  *) echo "no worker $STARGATE_NODE_NAME in this datacenter" >&2; exit 1 ;;
esac
"$start" ./bootstrap-kubelet.conf "$STARGATE_NODE_LABELS"
`, cases.String())
}

// workerDirs lists the workers' directories for the reset and reboot
// scripts, which find their own worker by its kubelet's network namespace.
func (d *datacenter) workerDirs() string {
	var dirs []string
	for _, n := range d.Workers {
		dirs = append(dirs, n.Dir)
	}
	return strings.Join(dirs, " ")
}

// resetScript (stargate-controller's --reset-script) stops the kubelet and
// kube-proxy of the worker it runs on, if they run. The workers share this
// machine's filesystem: the default reset would remove this machine's
// kubelet configuration.
func (d *datacenter) resetScript() string {
	return fmt.Sprintf(`#!/bin/bash
set -euo pipefail
self=$(readlink /proc/self/ns/net)
for d in %s; do
  p=$(cat "$d/kubelet.pid" 2>/dev/null) || continue
  if [ -z "$p" ] || [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" != "$self" ]; then continue; fi
  for f in kubelet kube-proxy; do
    if [ -s "$d/$f.pid" ]; then kill "$(cat "$d/$f.pid")" 2>/dev/null || true; rm -f "$d/$f.pid"; fi
  done
  echo "[stargate] reset $(basename "$d"): kubelet and kube-proxy stopped"
done
echo "[stargate] reset done"
`, d.workerDirs())
}

// rebootScript (--reboot-command "bash FILE") stops the real kubelet of
// the worker it runs on, waits rebootDown and starts it again with the
// same command line; it has its client certificate by then. Pods and
// containerd keep running: from the API a reboot looks like this.
func (d *datacenter) rebootScript() string {
	return fmt.Sprintf(`#!/bin/bash
set -u
self=$(readlink /proc/self/ns/net)
for d in %s; do
  p=$(cat "$d/kubelet.pid" 2>/dev/null) || continue
  if [ -z "$p" ] || [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" != "$self" ]; then continue; fi
  mapfile -d '' args <"/proc/$p/cmdline"
  kill "$p"
  echo "reboot $(date -u +%%FT%%TZ)" >>"$d/reboots"
  sleep %d
  setsid "${args[@]}" >>"$d/kubelet.log" 2>&1 </dev/null &
  echo $! >"$d/kubelet.pid"
done
`, d.workerDirs(), int(rebootDown.Seconds()))
}

// fixtures creates the objects of the simulated datacenter: its namespace
// and Datacenter, the SSH Secret (stargate-controller's key, the hosts'
// keys), the profile and a Server per worker.
func (d *datacenter) fixtures(ctx context.Context, c client.Client, keyPEM []byte) error {
	knownHosts := fmt.Sprintf("%s %s\n", d.Router.IP, d.Router.HostKey)
	for _, n := range d.Workers {
		knownHosts += fmt.Sprintf("%s %s\n", n.IP, n.HostKey)
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: simNamespace}},
		&v1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: simNamespace},
			Spec: v1.DatacenterSpec{
				Namespace:    simNamespace,
				WorkerSubnet: nodes.NodeNetwork,
				Router:       v1.DatacenterRouter{IP: d.Router.IP},
				AgentGateway: d.Router.IP,
			},
		},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "ssh", Namespace: simNamespace},
			Type:       corev1.SecretTypeSSHAuth,
			Data:       map[string][]byte{corev1.SSHAuthPrivateKey: keyPEM, "known_hosts": []byte(knownHosts)},
		},
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "scripts", Namespace: simNamespace},
			Data:       map[string]string{profileName + ".sh": d.profileScript()},
		},
		&v1.ProvisioningProfile{
			ObjectMeta: metav1.ObjectMeta{Name: profileName, Namespace: simNamespace},
			Spec: v1.ProvisioningProfileSpec{
				KubernetesVersion:       "1.37",
				AdminUsername:           "root",
				SSHCredentialsSecretRef: &v1.LocalObjectReference{Name: "ssh"},
				BootstrapScriptRef:      &v1.ConfigMapKeyReference{Name: "scripts", Key: profileName + ".sh"},
			},
		},
	}
	for _, n := range d.Workers {
		objs = append(objs, &v1.Server{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Namespace: simNamespace},
			Spec: v1.ServerSpec{
				Hostname:               n.Name,
				IPAddress:              n.IP,
				RouterIP:               d.Router.IP,
				SSHPort:                22,
				HostKey:                n.HostKey,
				ProvisioningProfileRef: &v1.LocalObjectReference{Name: profileName},
			},
		})
	}
	// Right after the namespace is created stargate-apiserver's admission
	// may not have seen it yet: retry for a while.
	deadline := time.Now().Add(30 * time.Second)
	for _, o := range objs {
		for {
			err := c.Create(ctx, o)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%T %s: %w", o, o.GetName(), err)
			}
			time.Sleep(time.Second)
		}
	}
	return nil
}

// startController runs stargate-controller on the host, which reaches the
// jump host and the kube-apiserver on the node network, as the real-node
// repave test does.
func (d *datacenter) startController(ctx context.Context, bin string, cp *framework.ControlPlane, caFile string) error {
	d.ControllerLog = filepath.Join(d.Dir, "stargate-controller.log")
	f, err := os.OpenFile(d.ControllerLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	reset := filepath.Join(d.Dir, "reset.sh")
	reboot := filepath.Join(d.Dir, "reboot.sh")
	if err := os.WriteFile(reset, []byte(d.resetScript()), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(reboot, []byte(d.rebootScript()), 0o755); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + cp.AdminKubeconfig,
		"--reset-script=" + reset,
		"--reboot-command=bash " + reboot,
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:0",
		"--control-plane-mode=aks",
		"--api-server-url=" + cp.Config.Host,
		"--api-server-ca-file=" + caFile,
		"--remote-work-dir=" + filepath.Join(d.Dir, "remote"),
		"--pod-cidr-pool=" + nodes.ClusterCIDR,
		fmt.Sprintf("--pod-cidr-size=%d", nodes.PodCIDRMaskSize),
		"--service-cluster-ip-range=" + nodes.ServiceCIDR,
		"--ssh-connect-attempts=3",
		"--ssh-retry-backoff=1s",
		"--ssh-handshake-timeout=5s",
		"--node-ready-timeout=4m",
		"--route-pass-delay=200ms",
		// Advertising over SSH would run `tailscale set` on the router,
		// which shares this machine's filesystem and has no tailscale.
		"--advertise-routes-over-ssh=false",
		"--v=2",
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	d.logf("starting stargate-controller (log %s)", d.ControllerLog)
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	d.controller, d.done = cmd, make(chan struct{})
	go func() { d.exitErr = cmd.Wait(); f.Close(); close(d.done) }()

	// Ready when the operations reconciler has its workers.
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-d.done:
			return fmt.Errorf("stargate-controller exited at once (%v); last lines of %s:\n%s", d.exitErr, d.ControllerLog, tailFile(d.ControllerLog, 30))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if b, _ := os.ReadFile(d.ControllerLog); strings.Contains(string(b), "Starting workers") && strings.Contains(string(b), `controller="operations"`) {
			return nil
		}
		if time.Now().After(deadline) {
			d.logf("stargate-controller has not started its operation workers within a minute; see %s", d.ControllerLog)
			return nil
		}
	}
}

// ControllerDone is closed when stargate-controller exits.
func (d *datacenter) ControllerDone() <-chan struct{} { return d.done }

// ControllerExit describes how stargate-controller ended, once
// ControllerDone is closed.
func (d *datacenter) ControllerExit() string {
	return fmt.Sprintf("stargate-controller exited (%v); last lines of %s:\n%s", d.exitErr, d.ControllerLog, tailFile(d.ControllerLog, 30))
}

// Stop stops stargate-controller, then the nodes (their pods deleted, every
// process killed, namespaces, mounts and cgroups removed).
func (d *datacenter) Stop() {
	d.logf("stopping stargate-controller and the real nodes")
	if d.controller != nil && d.controller.Process != nil {
		framework.StopProcess(d.controller.Process, d.done, os.Interrupt, 15*time.Second)
	}
	if d.Cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := d.Cluster.Stop(ctx); err != nil {
			d.logf("stop nodes: %v", err)
		} else {
			d.logf("nodes stopped: their processes killed, their network namespaces removed")
		}
	}
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
