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
// As root it also runs real nodes (test/framework/nodes: kubelet,
// containerd and kube-proxy in network namespaces on the host bridge, on
// documentation addresses only) with kube-scheduler: one plain node, and a
// simulated datacenter dc-sim of a router (an SSH jump host) and workers
// waiting to be provisioned over SSH, whose profile starts the worker's
// real kubelet; stargate-controller runs on the host, so a repave ends in a
// real kubelet's Ready Node. With real nodes every run starts from empty
// state (the nodes are new each run). Without root it says so and runs the
// rest.
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

	"github.com/stargate-k8s/stargate/test/framework"
	"github.com/stargate-k8s/stargate/test/framework/nodes"
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
	withDC := flag.Bool("datacenter", true, "as root: also run real nodes, stargate-controller and a simulated datacenter "+
		"(a router and workers as real nodes waiting to be provisioned over SSH) in namespace "+simNamespace+", so repaves end in a real kubelet")
	workers := flag.Int("workers", 2, fmt.Sprintf("worker hosts of the simulated datacenter (1 to %d)", maxWorkers))
	controller := flag.String("stargate-controller", "", "prebuilt stargate-controller to run (default: build ./cmd/controller into -dir/bin)")
	flag.Parse()

	if *workers < 1 || *workers > maxWorkers {
		return fmt.Errorf("-workers=%d: want 1 to %d (the nodes' pod CIDRs)", *workers, maxWorkers)
	}
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
	var host *nodes.Host
	switch {
	case !*withDC:
		noDC = "-datacenter=false"
	default:
		if err := framework.RequireRoot("real nodes"); err != nil {
			noDC = "not root"
			break
		}
		// The nodes, their certificates and Stargate's allocations of
		// their pod CIDRs are new each run: state of an earlier run
		// would name what is gone. The bin directory stays.
		if err := removeStateExcept(*dir, "bin"); err != nil {
			return err
		}
		if bins, err = prepareBinaries(ctx, root, filepath.Join(*dir, "bin"), *controller, logf); err != nil {
			return err
		}
		opts.BinDir = bins.Dir
		// The lock of real nodes: a run of test/realnodes and make dev
		// wait for each other.
		if host, err = nodes.SetUpHost(ctx, nodes.HostOptions{Logf: logf}); err != nil {
			return err
		}
		// Deferred first, so it runs last: after the nodes and the world stop.
		defer func() {
			if err := host.Close(); err != nil {
				logf("release the host: %v", err)
			}
			if left := nodes.Leftovers(); len(left) > 0 {
				logf("left over: %s", strings.Join(left, "; "))
			}
		}()
		nodes.HostWorldOptions(&opts)
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
	if *samples != "" && noDC != "" {
		if err := applySamples(ctx, kubectl, *samples, logf); err != nil {
			return err
		}
	}

	var dc *datacenter
	var controllerDone <-chan struct{} // nil without the datacenter: never closed
	if noDC == "" {
		if dc, err = startDatacenter(ctx, world, host, bins, filepath.Join(*dir, simNamespace), *workers, logf); err != nil {
			return err
		}
		// Deferred after the world's stop, so it runs first.
		defer dc.Stop()
		controllerDone = dc.ControllerDone()
		// After the workers have their pod CIDRs: see waitPodCIDRs.
		if *samples != "" {
			if err := applySamples(ctx, kubectl, *samples, logf); err != nil {
				return err
			}
		}
	}

	if dc != nil {
		if r := kubectl.Run(ctx, "get", "nodes", "-o", "wide"); r.Err == nil {
			logf("kubectl get nodes -o wide:\n%s", strings.TrimRight(r.Stdout, "\n"))
		}
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

// removeStateExcept empties dir but for the entry keep.
func removeStateExcept(dir, keep string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
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
Logs: %s, %s and %s. Without real nodes state survives restarts; `+"`make dev DEV_FLAGS=-fresh`"+` starts empty.

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
As root, make dev also runs real nodes, stargate-controller and a
simulated datacenter %s where a repave ends in a real kubelet's Ready Node.
`, repave("dc-east"), req, noDC, simNamespace)
	} else {
		var hosts []string
		for _, n := range dc.Workers {
			hosts = append(hosts, n.Name+" "+n.IP)
		}
		fmt.Fprintf(&b, `  kubectl get operations -n dc-east   # Failed: the sample Secret holds a placeholder key (and nothing here reaches 100.64.0.1)

Real nodes (kubelet v1.37.2, containerd 2.4.2 and kube-proxy, each in a network
namespace %[2]s-<node> on the bridge %[3]s): %[4]s, a plain node, and the workers of
the simulated datacenter %[1]s, %[5]s, waiting to be provisioned over SSH through
the router %[6]s (%[7]s, an SSH jump host). Each run starts from empty state.
stargate-controller runs on this machine; the profile %[8]q starts the worker's real
containerd, kubelet (TLS bootstrap with the token Stargate delivers) and kube-proxy.

  kubectl get nodes -o wide
  kubectl get servers -n %[1]s -o wide
  kubectl create --raw %[9]s -f %[10]s
  kubectl get operations -n %[1]s -w        # Pending, Running, Succeeded (Ctrl-C ends the watch)
  kubectl get nodes -o wide                  # worker-1 Ready, v1.37.2, containerd://2.4.2
  kubectl get operations -n %[1]s -o yaml   # every step, the script's output tail
  kubectl describe server worker-1 -n %[1]s

A pod on the repaved worker (its image is imported into every node; nothing is pulled):

  kubectl run hello -n default --image=%[11]s --image-pull-policy=Never \
    --overrides='{"apiVersion":"v1","spec":{"nodeSelector":{"kubernetes.io/hostname":"worker-1"}}}' -- serve 8080
  kubectl get pod hello -n default -o wide   # Running on worker-1, an IP of its pod CIDR
  kubectl logs hello -n default
  kubectl delete pod hello -n default

A reboot (drain, reboot over SSH, wait for Ready, uncordon; here the worker's
real kubelet is stopped for %[12]s, longer than the node grace period, and started again):

  kubectl create --raw /apis/stargate.io/v1alpha1/namespaces/%[1]s/servers/worker-1/reboot -f artifacts/samples/reboot-request.json
  kubectl get operations -n %[1]s -w        # steps DrainNode, RebootHost, WaitForNodeReady, UncordonNode
  kubectl get nodes -w                       # worker-1 SchedulingDisabled, NotReady, Ready

A rolling repave of every Server of %[1]s, one at a time (docs/operations.md):

  kubectl apply -f hack/dev/serverrollout.yaml
  kubectl get serverrollouts -n %[1]s -w     # PROGRESS 0/%[13]d ... %[13]d/%[13]d; STATE Complete
  kubectl get operations -n %[1]s -l stargate.io/rollout-uid   # one per Server

Logs: %[14]s; each node's containerd, kubelet, kube-proxy
(and sshd) logs in %[15]s/<node>/.
`, simNamespace, nodes.Prefix, nodes.BridgeName, dc.Cluster.Nodes[0].Name, strings.Join(hosts, ", "),
			dc.Router.Name, dc.Router.IP, profileName, repave(simNamespace), req, nodes.NetcheckImage,
			rebootDown, len(dc.Workers), rel(dc.ControllerLog), nodes.BaseDir)
	}
	b.WriteString("\nCtrl-C stops everything.\n")
	fmt.Print(b.String())
}
