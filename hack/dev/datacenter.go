package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/test/dcsim"
	"github.com/stargate-k8s/stargate/test/framework"
)

const (
	// simNamespace is the datacenter (namespace) of the simulated hosts.
	simNamespace = "dc-sim"
	// apiPort is where the workers reach the kube-apiserver: on the
	// router's worker-subnet address, forwarded to the host's loopback.
	apiPort = 6443
	// standinProfile names the ProvisioningProfile of the simulated
	// datacenter (dcsim.StandinScript).
	standinProfile = "standin"
)

// devBinaries are the programs the root path needs beyond the world's.
type devBinaries struct {
	Dir        string // bin directory whose kube-apiserver takes bootstrap tokens
	Controller string
	Standin    string
}

// prepareBinaries makes binDir a bin directory like the repo's bin/ whose
// kube-apiserver also authenticates bootstrap tokens, and builds
// stargate-controller (unless controller is given) and kubelet-standin into it.
func prepareBinaries(ctx context.Context, root, binDir, controller string, logf func(string, ...any)) (devBinaries, error) {
	b := devBinaries{Dir: binDir, Controller: controller, Standin: filepath.Join(binDir, "kubelet-standin")}
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
	if b.Controller == "" {
		b.Controller = filepath.Join(binDir, "stargate-controller")
		logf("building stargate-controller from ./cmd/controller")
		if err := goBuild(ctx, root, "./cmd/controller", b.Controller); err != nil {
			// No falling back to an older build: its flags may differ.
			return b, fmt.Errorf("%w\n(-stargate-controller=PATH runs a prebuilt one; -datacenter=false runs without it)", err)
		}
	}
	logf("building kubelet-standin from ./test/kubelet-standin")
	if err := goBuild(ctx, root, "./test/kubelet-standin", b.Standin); err != nil {
		return b, err
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

// datacenter is the root-only part of `make dev`: a simulated datacenter of network namespaces
// with sshd (a router and workers reachable only through it), Stargate's
// fixtures for it in namespace dc-sim, and stargate-controller running in
// the simulation's cloud namespace.
type datacenter struct {
	Dir           string
	Sim           *dcsim.Sim
	ControllerLog string
	StandinDir    string

	controller *exec.Cmd
	done       chan struct{}
	exitErr    error // how stargate-controller ended, once done is closed
	logf       func(string, ...any)
}

// startDatacenter starts it all; on error what was started is stopped.
func startDatacenter(ctx context.Context, w *framework.World, bins devBinaries, dir string, workers int, logf func(string, ...any)) (_ *datacenter, err error) {
	d := &datacenter{Dir: dir, StandinDir: filepath.Join(dir, "nodes"), logf: logf}
	defer func() {
		if err != nil {
			d.Stop()
		}
	}()
	// Everything under dir belongs to one run: host keys, the client key
	// and the kubelets' certificates are new each time.
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	simDir := filepath.Join(dir, "hosts")
	for _, p := range []string{simDir, d.StandinDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
	}
	cp := w.ControlPlane

	logf("starting the datacenter simulation: a router and %d workers in network namespaces, each with sshd", workers)
	if d.Sim, err = dcsim.Start(ctx, dcsim.Options{Dir: simDir, Workers: workers, Logf: logf}); err != nil {
		return nil, err
	}
	u, err := url.Parse(cp.Config.Host)
	if err != nil {
		return nil, err
	}
	// Workers reach the API at 192.0.2.1:6443 (the router), the controller
	// at the unchanged loopback address inside the cloud namespace.
	if _, err := d.Sim.ExposeToWorkers(apiPort, u.Host); err != nil {
		return nil, err
	}
	if _, err := d.Sim.ExposeToCloud(u.Host); err != nil {
		return nil, err
	}

	c, err := client.New(cp.Config, client.Options{Scheme: manager.Scheme})
	if err != nil {
		return nil, err
	}
	if err := d.fixtures(ctx, c, bins.Standin); err != nil {
		return nil, fmt.Errorf("fixtures of %s: %w", simNamespace, err)
	}

	caFile := filepath.Join(dir, "cluster-ca.crt")
	if err := os.WriteFile(caFile, cp.Config.CAData, 0o644); err != nil {
		return nil, err
	}
	if err := d.startController(ctx, bins.Controller, cp.AdminKubeconfig, caFile); err != nil {
		return nil, err
	}
	return d, nil
}

// fixtures creates or updates the objects of the simulated datacenter and
// removes what a previous run left that cannot be true any more (its hosts
// and kubelets are gone): Operations in dc-sim and the Nodes it joined.
func (d *datacenter) fixtures(ctx context.Context, c client.Client, standin string) error {
	objs := d.Sim.Fixtures(simNamespace, "stargate-dev:nodes",
		dcsim.Profile{Name: standinProfile, Script: dcsim.StandinScript(d.StandinDir, standin, 0)})
	for _, h := range d.Sim.Workers {
		objs = append(objs, dcsim.Server(simNamespace, h.Name, h, standinProfile))
	}
	// Right after the namespace is created stargate-apiserver's admission
	// may not have seen it yet: retry for a while.
	deadline := time.Now().Add(30 * time.Second)
	for _, o := range objs {
		for {
			err := upsert(ctx, c, o)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%T %s: %w", o, o.GetName(), err)
			}
			time.Sleep(time.Second)
		}
	}

	var ops v1.OperationList
	if err := c.List(ctx, &ops, client.InNamespace(simNamespace)); err != nil {
		return err
	}
	for i := range ops.Items {
		if err := c.Delete(ctx, &ops.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes, client.MatchingLabels{stargate.LabelDatacenter: simNamespace}); err != nil {
		return err
	}
	for i := range nodes.Items {
		if err := c.Delete(ctx, &nodes.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if n := len(ops.Items) + len(nodes.Items); n > 0 {
		d.logf("removed %d Operations and %d Nodes of %s left by a previous run", len(ops.Items), len(nodes.Items), simNamespace)
	}
	return nil
}

// upsert creates o, or replaces the spec (and data) of the object there,
// keeping its finalizers; status is kept by the servers' strategies.
func upsert(ctx context.Context, c client.Client, o client.Object) error {
	err := c.Create(ctx, o)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	have := o.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(o), have); err != nil {
		return err
	}
	if _, ok := o.(*corev1.Namespace); ok {
		return nil
	}
	o.SetResourceVersion(have.GetResourceVersion())
	o.SetFinalizers(have.GetFinalizers())
	o.SetOwnerReferences(have.GetOwnerReferences())
	return c.Update(ctx, o)
}

// startController runs stargate-controller in the cloud namespace, where
// the datacenter is reached the way a cluster reaches it over the tailnet.
func (d *datacenter) startController(ctx context.Context, bin, kubeconfig, caFile string) error {
	d.ControllerLog = filepath.Join(d.Dir, "stargate-controller.log")
	f, err := os.OpenFile(d.ControllerLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// The hosts share this machine: a real reset would remove this
	// machine's kubelet configuration and a real reboot would reboot it.
	// These act on the host's kubelet stand-in only.
	reset := filepath.Join(d.Dir, "reset.sh")
	reboot := filepath.Join(d.Dir, "reboot.sh")
	if err := os.WriteFile(reset, []byte(dcsim.StandinResetScript(d.StandinDir)), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(reboot, []byte(dcsim.StandinRebootScript(d.StandinDir, 60*time.Second)), 0o755); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--reset-script=" + reset,
		"--reboot-command=bash " + reboot,
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:0",
		"--control-plane-mode=aks",
		"--api-server-url=https://" + net.JoinHostPort(dcsim.RouterSubnetIP, strconv.Itoa(apiPort)),
		"--api-server-ca-file=" + caFile,
		// The kube-apiserver's certificate names localhost, not 192.0.2.1.
		"--api-server-tls-server-name=localhost",
		"--remote-work-dir=" + filepath.Join(d.Dir, "remote"),
		"--ssh-connect-attempts=3",
		"--ssh-retry-backoff=1s",
		"--ssh-handshake-timeout=5s",
		"--node-ready-timeout=2m",
		// Pod CIDRs are allocated (ipam), but no route layer has a backend
		// here: no Azure route table, no Tailscale API, no Cilium; and
		// Node spec.podCIDR would be claimed by both dc-east/worker-1 and
		// dc-sim/worker-1. Advertising over SSH would run `tailscale set`
		// on the router, which shares this machine's filesystem.
		"--enable-ipam=true",
		"--enable-route-sync=false",
		"--advertise-routes-over-ssh=false",
		"--v=2",
	}
	cmd := d.Sim.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	d.logf("starting stargate-controller in network namespace %s (log %s)", d.Sim.CloudNS, d.ControllerLog)
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

// Stop stops stargate-controller, removes the simulation (killing every
// process in its namespaces: sshd, the kubelet stand-ins) and stops
// kube-controller-manager.
func (d *datacenter) Stop() {
	d.logf("stopping stargate-controller and the datacenter simulation")
	if d.controller != nil && d.controller.Process != nil {
		framework.StopProcess(d.controller.Process, d.done, os.Interrupt, 15*time.Second)
	}
	if d.Sim != nil {
		if err := d.Sim.Stop(); err != nil {
			d.logf("stop datacenter simulation: %v", err)
		} else {
			d.logf("datacenter %s stopped: its processes killed, its network namespaces removed", d.Sim.Prefix)
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
