// Package realnodes tests the real nodes of test/framework/nodes: three
// kubelets with containerd and kube-proxy, each in its own network
// namespace, beside etcd, kube-apiserver, kube-controller-manager (node
// IPAM) and kube-scheduler; kube-apiserver accepts bootstrap tokens. A
// fourth node is a Stargate Server that stargate-controller repaves over
// SSH (repave_test.go). It needs root, the programs of
// hack/install-test-bins.sh, hack/install-node-bins.sh and
// hack/install-deps.sh (sshd among them), and the cilium module that
// make deps downloads (Cilium's CiliumNode CRD).
package realnodes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stargate-k8s/stargate/test/framework"
	"github.com/stargate-k8s/stargate/test/framework/nodes"
)

// nodeNames are the nodes every test here runs on.
var nodeNames = []string{"rn-1", "rn-2", "rn-3"}

// The world the tests share; teardown ends it (TestTeardownLeavesNothing
// calls it first and asserts what it leaves).
var (
	cp      *framework.ControlPlane
	kcm     *framework.ControllerManager
	host    *nodes.Host
	cluster *nodes.Cluster
	kubectl framework.Kubectl
	workDir string
	stopped bool
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s realnodes: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	code = 1
	defer func() {
		if err := teardown(context.Background()); err != nil {
			logf("teardown: %v", err)
			code = 1
		}
		if code != 0 && workDir != "" {
			logf("failed; control plane logs kept in %s", workDir)
		} else if workDir != "" {
			_ = os.RemoveAll(workDir)
		}
	}()
	if err := setup(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: set up real nodes: %v\n", err)
		return 1
	}
	logf("control plane and %d Ready nodes in %s", len(nodeNames), time.Since(start).Round(100*time.Millisecond))
	return m.Run()
}

func setup(ctx context.Context) (err error) {
	if host, err = nodes.SetUpHost(ctx, nodes.HostOptions{Logf: logf}); err != nil {
		return err
	}
	if workDir, err = os.MkdirTemp("", "stargate-realnodes-"); err != nil {
		return err
	}
	bins, err := binaries(filepath.Join(workDir, "bin"))
	if err != nil {
		return err
	}
	if cp, err = framework.StartControlPlane(framework.ControlPlaneOptions{
		Dir:                     filepath.Join(workDir, "kube"),
		Binaries:                bins,
		BindAddress:             nodes.BridgeIP,
		ServiceClusterIPRange:   nodes.ServiceCIDR,
		ServiceAccountAdmission: true,
		AggregatorRouting:       true,
		Logf:                    logf,
	}); err != nil {
		return err
	}
	kubectl = framework.Kubectl{Path: bins.Kubectl, Kubeconfig: cp.AdminKubeconfig, CacheDir: filepath.Join(workDir, "kubectl-cache")}
	logf("starting kube-controller-manager (node IPAM on %s)", nodes.ClusterCIDR)
	if kcm, err = cp.StartControllerManager(ctx, framework.ControllerManagerOptions{
		ClusterCIDR: nodes.ClusterCIDR, NodeCIDRMaskSize: nodes.PodCIDRMaskSize,
	}); err != nil {
		return err
	}
	opts := nodes.Options{Logf: logf}
	for _, name := range nodeNames {
		opts.Nodes = append(opts.Nodes, nodes.NodeOptions{Name: name})
	}
	cluster, err = nodes.StartCluster(ctx, host, cp, opts)
	return err
}

// binaries are the programs of bin/ with kube-apiserver's bootstrap token
// authentication on (the kubelets of repaved Servers do TLS bootstrap with
// the token Stargate delivers), in dir: kube-apiserver wrapped, the rest
// linked.
func binaries(dir string) (framework.Binaries, error) {
	bins, err := framework.FindBinaries("")
	if err != nil {
		return framework.Binaries{}, err
	}
	if _, err := framework.BootstrapTokenBinDir(bins, dir); err != nil {
		return framework.Binaries{}, err
	}
	// A link to a missing program is reported by nodes.StartCluster, with
	// the script that builds it.
	for _, name := range []string{"kubelet", "kube-proxy", "kube-scheduler", "containerd", "containerd-shim-runc-v2", "ctr"} {
		if err := os.Symlink(filepath.Join(bins.Dir, name), filepath.Join(dir, name)); err != nil {
			return framework.Binaries{}, err
		}
	}
	return framework.FindBinaries(dir)
}

// teardown stops the nodes, then the control plane, then releases the
// host; it runs once, also after a failure half-way through setup.
func teardown(ctx context.Context) error {
	if stopped {
		return nil
	}
	stopped = true
	var errs []error
	if cluster != nil {
		errs = append(errs, cluster.Stop(ctx))
	}
	if kcm != nil {
		errs = append(errs, kcm.Stop())
	}
	if cp != nil {
		errs = append(errs, cp.Stop())
	}
	if host != nil {
		errs = append(errs, host.Close())
	}
	return errors.Join(errs...)
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
