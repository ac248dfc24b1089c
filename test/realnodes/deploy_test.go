package realnodes

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stargate-k8s/stargate/test/framework"
	"github.com/stargate-k8s/stargate/test/framework/nodes"
)

// The shipped manifests, applied with `kubectl apply -k` through the overlay
// in overlay/ (local images, a hostPath volume), run stargate-apiserver as a
// pod on a real node, and the aggregator serves stargate.io through it;
// stargate-controller runs as its ServiceAccount and holds the leader
// Lease (issue 12, part 3, without the node agent's part).
func TestArtifactsServeStargateAPIFromAPod(t *testing.T) {
	ctx := testContext(t, 20*time.Minute)
	deployArtifacts(t)
	t.Cleanup(func() { dumpOnFailure(t, "stargate-system", t.Failed()) })
	r := kubectl.Run(ctx, "get", "servers", "-A")
	if r.Err != nil || !strings.Contains(r.Stdout+r.Stderr, "No resources found") {
		t.Errorf("kubectl get servers -A through the aggregator: %v", r)
	}
	// stargate-controller runs in a pod as its ServiceAccount and one of
	// its replicas holds the leader-election Lease.
	if r := kubectl.Run(ctx, "-n", "stargate-system", "rollout", "status", "deployment/stargate-controller", "--timeout=3m"); r.Err != nil {
		t.Fatalf("stargate-controller rollout: %v", r)
	}
	var holder string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		r := kubectl.Run(ctx, "-n", "stargate-system", "get", "lease", "stargate-controller", "-o", "jsonpath={.spec.holderIdentity}")
		if holder = strings.TrimSpace(r.Stdout); r.Err == nil && holder != "" {
			break
		}
	}
	pods := kubectl.Run(ctx, "-n", "stargate-system", "get", "pods", "-l", "app.kubernetes.io/name=stargate-controller",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.serviceAccountName}{"\n"}{end}`)
	leaderRuns := false
	for _, line := range strings.Split(strings.TrimSpace(pods.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.HasPrefix(holder, f[0]) {
			leaderRuns = true
			if f[1] != "stargate-controller" {
				t.Errorf("leader %s runs as ServiceAccount %s, want stargate-controller", f[0], f[1])
			}
		}
	}
	if !leaderRuns {
		t.Errorf("Lease stargate-system/stargate-controller is held by %q, not by one of the controller pods:\n%s", holder, pods.Stdout)
	}
	t.Logf("stargate-controller leader: %s", holder)

	if r := kubectl.Run(ctx, "get", "pods", "-A", "-o", "wide"); r.Err == nil {
		t.Logf("pods:\n%s", r.Stdout)
	}
}

// dumpOnFailure logs the state of a namespace's pods when failed.
func dumpOnFailure(t *testing.T, ns string, failed bool) {
	if !failed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"-n", ns, "describe", "pods"},
		{"-n", ns, "logs", "deployment/stargate-apiserver", "--tail=40"},
		{"get", "apiservice", "v1alpha1.stargate.io", "-o", "yaml"},
	} {
		t.Logf("kubectl %s:\n%s%s", strings.Join(args, " "), kubectl.Run(ctx, args...).Stdout, kubectl.Run(ctx, args...).Stderr)
	}
}

var (
	artifactsOnce sync.Once
	artifactsErr  error
)

// deployArtifacts applies artifacts/ through the overlay once, for every
// test that needs Stargate's API: the images imported and tagged, the
// volume's directory made, stargate-apiserver rolled out and its
// APIService Available.
func deployArtifacts(t *testing.T) {
	t.Helper()
	artifactsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		artifactsErr = applyArtifacts(ctx, t)
	})
	if artifactsErr != nil {
		t.Fatalf("deploy artifacts/: %v", artifactsErr)
	}
}

func applyArtifacts(ctx context.Context, t *testing.T) error {
	root, err := framework.RepoRoot()
	if err != nil {
		return err
	}
	// The images `make images` builds into bin/images (built here when
	// missing: minutes on a cold build cache), tagged latest, are also
	// tagged local (which the overlay names) so the kubelet never pulls.
	start := time.Now()
	names := []string{"apiserver", "controller", "nodeagent"}
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(root, "bin", "images", "stargate-"+name+".tar")); err != nil {
			t.Logf("bin/images lacks stargate-%s.tar: building the images as make images does", name)
			bctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			build := exec.CommandContext(bctx, "go", "run", "./hack/images", "-out", filepath.Join(root, "bin", "images"))
			build.Dir = root
			out, err := build.CombinedOutput()
			cancel()
			if err != nil {
				return fmt.Errorf("go run ./hack/images (make images): %v\n%s", err, out)
			}
			break
		}
	}
	for _, name := range names {
		archive := filepath.Join(root, "bin", "images", "stargate-"+name+".tar")
		if err := cluster.ImportImage(ctx, archive); err != nil {
			return err
		}
		ref := "ghcr.io/stargate-k8s/stargate-" + name
		if err := cluster.TagImage(ctx, ref+":latest", ref+":local"); err != nil {
			return err
		}
	}
	t.Logf("images imported into %d nodes in %s", len(cluster.Nodes), time.Since(start).Round(100*time.Millisecond))

	data := filepath.Join(nodes.BaseDir, "volumes", "stargate-apiserver-data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	if err := os.Chown(data, 65532, 65532); err != nil {
		return err
	}

	start = time.Now()
	if r := kubectl.Run(ctx, "apply", "-k", filepath.Join(root, "test", "realnodes", "overlay")); r.Err != nil {
		return fmt.Errorf("kubectl apply -k: %v", r)
	}
	if r := kubectl.Run(ctx, "-n", "stargate-system", "rollout", "status", "deployment/stargate-apiserver", "--timeout=4m"); r.Err != nil {
		dumpOnFailure(t, "stargate-system", true)
		return fmt.Errorf("stargate-apiserver rollout: %v", r)
	}
	t.Logf("stargate-apiserver rolled out in %s", time.Since(start).Round(100*time.Millisecond))
	if r := kubectl.Run(ctx, "wait", "apiservice/v1alpha1.stargate.io", "--for=condition=Available", "--timeout=3m"); r.Err != nil {
		dumpOnFailure(t, "stargate-system", true)
		return fmt.Errorf("APIService v1alpha1.stargate.io not Available: %v", r)
	}
	t.Logf("APIService Available %s after apply", time.Since(start).Round(100*time.Millisecond))
	return nil
}
