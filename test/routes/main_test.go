// Package routes is the integration test of pod CIDR allocation and route
// reconciliation: the real kube-apiserver with stargate-apiserver behind its
// aggregator and Cilium's own CiliumNode CRD installed, stargate-controller's
// ipam and routes reconcilers running in-process, Azure behind the SDK's
// fake server and Tailscale behind an httptest fake of /api/v2.
package routes

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned"
	"github.com/stargate-k8s/stargate/test/framework"
)

// CiliumVersion is the cilium module whose CiliumNode CRD is installed.
const CiliumVersion = "v1.20.2"

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

// ciliumNodeCRD reads the CiliumNode CRD manifest out of the cilium Go
// module (downloaded into the module cache, not into go.mod: the module
// would pull its own Kubernetes versions into the build).
func ciliumNodeCRD(ctx context.Context) (*apiextensionsv1.CustomResourceDefinition, error) {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/cilium/cilium@"+CiliumVersion).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("download github.com/cilium/cilium@%s for its CRDs: %w", CiliumVersion, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return nil, fmt.Errorf("go mod download: %v %s", err, mod.Error)
	}
	data, err := os.ReadFile(filepath.Join(mod.Dir, "pkg", "k8s", "apis", "cilium.io", "client", "crds", "v2", "ciliumnodes.yaml"))
	if err != nil {
		return nil, err
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(data, crd); err != nil {
		return nil, fmt.Errorf("parse ciliumnodes.yaml: %w", err)
	}
	return crd, nil
}

// installCiliumNodeCRD installs the CRD and waits until it is served.
func installCiliumNodeCRD(ctx context.Context) error {
	crd, err := ciliumNodeCRD(ctx)
	if err != nil {
		return err
	}
	cs, err := apiextensionsclient.NewForConfig(world.ControlPlane.Config)
	if err != nil {
		return err
	}
	if _, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create CRD %s: %w", crd.Name, err)
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
