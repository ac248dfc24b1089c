// Command dev runs Stargate on one machine for trying it out (`make dev`):
// etcd, kube-apiserver and stargate-apiserver (on embedded etcd) through
// test/framework, with state under .dev/ in the repository so objects
// survive a restart. It writes .dev/kubeconfig, applies artifacts/samples/
// (datacenter dc-east), prints kubectl commands to try and stops
// everything on Ctrl-C.
//
// kube-controller-manager runs with its default controllers, as in a real
// cluster (garbage collection, namespace deletion, role aggregation, node
// lifecycle, CSR approval and signing, ...).
//
// As root it also runs a simulated datacenter (test/dcsim: a router and workers as network
// namespaces with sshd, on documentation addresses only), fixtures for it
// in namespace dc-sim whose profile starts test/kubelet-standin, and
// stargate-controller in the simulation's cloud namespace, so a repave runs
// end to end into a Ready Node. Without root it says so and runs the rest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/stargate-k8s/stargate/test/dcsim"
	"github.com/stargate-k8s/stargate/test/framework"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "dev: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := framework.RepoRoot()
	if err != nil {
		return err
	}
	dir := flag.String("dir", filepath.Join(root, ".dev"), "directory for state, logs and the kubeconfig")
	samples := flag.String("samples", filepath.Join(root, "artifacts", "samples"), "kustomization applied once the API is up (empty: none)")
	fresh := flag.Bool("fresh", false, "delete the state in -dir first and start from empty etcds")
	binary := flag.String("stargate-apiserver", "", "prebuilt stargate-apiserver to run (default: build ./cmd/apiserver into bin/, or -dir/bin with the datacenter)")
	withDC := flag.Bool("datacenter", true, "as root: also run stargate-controller and a simulated datacenter "+
		"(a router and workers as network namespaces with sshd and a kubelet stand-in) in namespace "+simNamespace+", so repaves run end to end")
	workers := flag.Int("workers", 2, "worker hosts of the simulated datacenter")
	controller := flag.String("stargate-controller", "", "prebuilt stargate-controller to run (default: build ./cmd/controller into -dir/bin)")
	flag.Parse()

	if *fresh {
		if err := os.RemoveAll(*dir); err != nil {
			return err
		}
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "dev: "+format+"\n", args...)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts := framework.WorldOptions{
		Dir:            *dir,
		PersistEtcd:    true,
		StargateBinary: *binary,
		Logf:           logf,
	}
	// noDC says why the datacenter does not run; empty when it does.
	noDC := ""
	var bins devBinaries
	switch {
	case !*withDC:
		noDC = "-datacenter=false"
	default:
		if err := dcsim.Check(""); err != nil {
			noDC = strings.ReplaceAll(err.Error(), "\n", "; ")
			break
		}
		if bins, err = prepareBinaries(ctx, root, filepath.Join(*dir, "bin"), *controller, logf); err != nil {
			return err
		}
		opts.BinDir = bins.Dir
	}
	if noDC != "" {
		logf("NOT starting stargate-controller and the simulated datacenter: %s. "+
			"Starting etcd, kube-apiserver, stargate-apiserver and kube-controller-manager only; repaves are accepted but stay Pending. "+
			"Run as root (e.g. `sudo -E make dev`) to see a repave end to end.", noDC)
	}

	world, err := framework.StartWorld(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		logf("stopping")
		if err := world.Stop(); err != nil {
			logf("stop: %v", err)
		}
	}()

	kubeconfig := filepath.Join(*dir, "kubeconfig")
	ns := "dc-east"
	if noDC == "" {
		ns = simNamespace
	}
	if err := writeKubeconfig(world.ControlPlane.AdminKubeconfig, kubeconfig, ns); err != nil {
		return err
	}
	kubectl := world.KubectlFor(kubeconfig)
	if *samples != "" {
		if err := applySamples(ctx, kubectl, *samples, logf); err != nil {
			return err
		}
	}

	var dc *datacenter
	var controllerDone <-chan struct{} // nil without the datacenter: never closed
	if noDC == "" {
		if dc, err = startDatacenter(ctx, world, bins, filepath.Join(*dir, simNamespace), *workers, logf); err != nil {
			return err
		}
		// Deferred after the world's stop, so it runs first.
		defer dc.Stop()
		controllerDone = dc.ControllerDone()
	}

	printTryIt(root, world, kubeconfig, dc, noDC)

	select {
	case <-ctx.Done():
	case <-world.Stargate.Done():
		return fmt.Errorf("stargate-apiserver exited; last lines of %s:\n%s", world.Stargate.LogFile, world.Stargate.LogTail(30))
	case <-controllerDone:
		return errors.New(dc.ControllerExit())
	}
	return nil
}

// writeKubeconfig copies the admin kubeconfig under stable names
// ("stargate-dev"), so it can sit beside other contexts.
func writeKubeconfig(from, to, namespace string) error {
	cfg, err := clientcmd.LoadFromFile(from)
	if err != nil {
		return err
	}
	cur := cfg.Contexts[cfg.CurrentContext]
	if cur == nil {
		return fmt.Errorf("%s has no current context", from)
	}
	const name = "stargate-dev"
	out := clientcmdapi.NewConfig()
	out.Clusters[name] = cfg.Clusters[cur.Cluster]
	out.AuthInfos[name+"-admin"] = cfg.AuthInfos[cur.AuthInfo]
	out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name + "-admin", Namespace: namespace}
	out.CurrentContext = name
	return clientcmd.WriteToFile(*out, to)
}

// applySamples applies the samples kustomization, retrying for a while:
// right after a namespace is created stargate-apiserver's admission may not
// have seen it yet.
func applySamples(ctx context.Context, kubectl framework.Kubectl, dir string, logf func(string, ...any)) error {
	if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); err != nil {
		return fmt.Errorf("samples: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := kubectl.Run(ctx, "apply", "-k", dir)
		if r.Err == nil {
			logf("applied %s:\n%s", dir, strings.TrimSpace(r.Stdout))
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			hint := ""
			if strings.Contains(r.Stderr, "immutable") {
				hint = "\nthe state in .dev/ holds objects of an older version of the samples; `make dev DEV_FLAGS=-fresh` starts empty"
			}
			return fmt.Errorf("apply samples: %s%s", r, hint)
		}
		time.Sleep(time.Second)
	}
}

func printTryIt(root string, w *framework.World, kubeconfig string, dc *datacenter, noDC string) {
	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	repave := func(ns string) string {
		return "/apis/stargate.io/v1alpha1/namespaces/" + ns + "/servers/worker-1/repave"
	}
	const req = "artifacts/samples/repave-request.json"
	var b strings.Builder
	fmt.Fprintf(&b, `
Stargate is up: kube-apiserver %s, stargate-apiserver %s.
Logs: %s, %s and %s. State survives restarts; `+"`make dev DEV_FLAGS=-fresh`"+` starts empty.

In another shell, from %s:

  export KUBECONFIG=%s
  alias kubectl=%s   # the kubectl the tests use

The API, with the samples of artifacts/samples/ (datacenter dc-east, whose servers are examples: no host is behind them):

  kubectl get apiservice v1alpha1.stargate.io
  kubectl get stargate -A
  kubectl get servers -n dc-east -o wide
  kubectl describe server worker-1 -n dc-east
  kubectl explain server.spec
  kubectl get --raw /apis/stargate.io/v1alpha1/namespaces/dc-east/servers/worker-1/routes
  kubectl create --raw %s -f %s
`, w.ControlPlane.Config.Host, w.Stargate.URL(),
		rel(filepath.Join(w.ControlPlane.Dir, "logs")), rel(w.Stargate.LogFile), rel(w.ControllerManager.Log),
		root, kubeconfig, w.Binaries.Kubectl, repave("dc-east"), req)

	if dc == nil {
		fmt.Fprintf(&b, `  kubectl create --raw %s -f %s   # again: 409 while the first is active
  kubectl get operations -n dc-east

No stargate-controller runs (%s), so those Operations stay Pending.
As root, make dev also runs stargate-controller and a
simulated datacenter %s where a repave ends in a Ready Node.
`, repave("dc-east"), req, noDC, simNamespace)
	} else {
		var hosts []string
		for _, h := range dc.Sim.Workers {
			hosts = append(hosts, h.Name+" "+h.IP)
		}
		fmt.Fprintf(&b, `  kubectl get operations -n dc-east   # Failed: the sample Secret holds a placeholder key (and nothing here reaches 100.64.0.1)

A real repave, in the simulated datacenter %[1]s: network namespaces %[2]s-*, router
%[3]s (sshd, the jump host) in front of %[4]s (sshd; reachable only through
the router); stargate-controller runs in %[2]s-cloud, kube-controller-manager signs
the kubelets' certificates, and the profile %[5]q starts a kubelet stand-in instead of
installing a kubelet (the hosts share this machine's filesystem).

  kubectl get servers -n %[1]s -o wide
  kubectl create --raw %[6]s -f %[7]s
  kubectl get operations -n %[1]s -w        # Pending, Running, Succeeded (Ctrl-C ends the watch)
  kubectl get nodes -o wide                  # worker-1 Ready
  kubectl get operations -n %[1]s -o yaml   # every step, the script's output tail
  kubectl describe server worker-1 -n %[1]s

A reboot (drain, reboot over SSH, wait for Ready, uncordon; here the host's
kubelet stand-in is stopped for 60s, longer than the node grace period, and started again):

  kubectl create --raw /apis/stargate.io/v1alpha1/namespaces/%[1]s/servers/worker-1/reboot -f artifacts/samples/reboot-request.json
  kubectl get operations -n %[1]s -w        # steps DrainNode, RebootHost, WaitForNodeReady, UncordonNode
  kubectl get nodes -w                       # worker-1 SchedulingDisabled, NotReady, Ready

A rolling repave of every Server of %[1]s, one at a time (docs/operations.md):

  kubectl apply -f hack/dev/serverrollout.yaml
  kubectl get serverrollouts -n %[1]s -w     # PROGRESS 0/2, 1/2, 2/2; STATE Complete
  kubectl get operations -n %[1]s -l stargate.io/rollout-uid   # one per Server

Logs: %[8]s,
sshd %[9]s/<host>/sshd.log, kubelet stand-ins %[10]s/<node>/standin.log.
`, simNamespace, dc.Sim.Prefix, dc.Sim.Router.IP, strings.Join(hosts, ", "), standinProfile,
			repave(simNamespace), req, rel(dc.ControllerLog),
			rel(filepath.Join(dc.Dir, "hosts")), rel(dc.StandinDir))
	}
	b.WriteString("\nCtrl-C stops everything.\n")
	fmt.Print(b.String())
}
