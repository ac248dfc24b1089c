// Command dev runs Stargate's API on one machine for trying it out (`make
// dev`): etcd, kube-apiserver and stargate-apiserver (on embedded etcd)
// through test/framework, with state under .dev/ in the repository so
// objects survive a restart. It writes .dev/kubeconfig, applies
// artifacts/samples/, prints kubectl commands to try and stops everything
// on Ctrl-C.
package main

import (
	"context"
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
	binary := flag.String("stargate-apiserver", "", "prebuilt stargate-apiserver to run (default: build ./cmd/apiserver into bin/)")
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

	world, err := framework.StartWorld(ctx, framework.WorldOptions{
		Dir:            *dir,
		PersistEtcd:    true,
		StargateBinary: *binary,
		Logf:           logf,
	})
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
	if err := writeKubeconfig(world.ControlPlane.AdminKubeconfig, kubeconfig); err != nil {
		return err
	}
	kubectl := world.KubectlFor(kubeconfig)
	if *samples != "" {
		if err := applySamples(ctx, kubectl, *samples, logf); err != nil {
			return err
		}
	}

	printTryIt(root, world, kubeconfig)

	select {
	case <-ctx.Done():
	case <-world.Stargate.Done():
		return fmt.Errorf("stargate-apiserver exited; last lines of %s:\n%s", world.Stargate.LogFile, world.Stargate.LogTail(30))
	}
	return nil
}

// writeKubeconfig copies the admin kubeconfig under stable names
// ("stargate-dev"), so it can sit beside other contexts.
func writeKubeconfig(from, to string) error {
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
	out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name + "-admin", Namespace: "dc-east"}
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
			return fmt.Errorf("apply samples: %s", r)
		}
		time.Sleep(time.Second)
	}
}

func printTryIt(root string, w *framework.World, kubeconfig string) {
	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	const repave = "/apis/stargate.io/v1alpha1/namespaces/dc-east/servers/worker-1/repave"
	fmt.Printf(`
Stargate is up: kube-apiserver %s, stargate-apiserver %s.
Logs: %s and %s. State survives restarts; `+"`go run ./hack/dev -fresh`"+` starts empty.

In another shell, from %s:

  export KUBECONFIG=%s
  alias kubectl=%s   # the kubectl the tests use

  kubectl get apiservice v1alpha1.stargate.io
  kubectl get stargate -A
  kubectl get servers -n dc-east -o wide
  kubectl describe server worker-1 -n dc-east
  kubectl explain server.spec
  kubectl create --raw %s -f artifacts/samples/repave-request.json
  kubectl create --raw %s -f artifacts/samples/repave-request.json   # again: 409 while the first is active
  kubectl get operations -n dc-east
  kubectl get --raw /apis/stargate.io/v1alpha1/namespaces/dc-east/servers/worker-1/routes
  kubectl get servers -n dc-east -w

Ctrl-C stops everything.
`, w.ControlPlane.Config.Host, w.Stargate.URL(),
		rel(filepath.Join(w.ControlPlane.Dir, "logs")), rel(w.Stargate.LogFile),
		root, kubeconfig, w.Binaries.Kubectl, repave, repave)
}
