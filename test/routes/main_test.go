// Package routes is the integration test of pod CIDR allocation and route
// reconciliation: the real kube-apiserver with stargate-apiserver behind its
// aggregator and Cilium's own CiliumNode CRD installed, stargate-controller's
// ipam and routes reconcilers running in-process, Azure behind the SDK's
// fake server and Tailscale behind an httptest fake of /api/v2.
package routes

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned"
	"github.com/stargate-k8s/stargate/test/framework"
)

var (
	world  *framework.World
	client versioned.Interface
)

func TestMain(m *testing.M) {
	os.Exit(framework.RunWithWorld(m, framework.WorldOptions{}, func(_ context.Context, w *framework.World) error {
		world = w
		var err error
		client, err = versioned.NewForConfig(w.ControlPlane.Config)
		return err
	}))
}

// installCiliumNodeCRD installs Cilium's CiliumNode CRD and waits until it
// is served.
func installCiliumNodeCRD(ctx context.Context) error {
	return framework.InstallCiliumNodeCRD(ctx, world.ControlPlane.Config)
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
