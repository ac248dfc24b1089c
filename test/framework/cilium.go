package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// CiliumVersion is the cilium module whose CiliumNode CRD tests install.
// `make deps` downloads it (the Makefile reads this line), so no test
// needs the module proxy.
const CiliumVersion = "v1.20.2"

// CiliumNodeCRD reads the CiliumNode CRD manifest out of the cilium Go
// module (in the module cache, not in go.mod: the module would pull its
// own Kubernetes versions into the build).
func CiliumNodeCRD(ctx context.Context) (*apiextensionsv1.CustomResourceDefinition, error) {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/cilium/cilium@"+CiliumVersion).Output()
	var mod struct{ Dir, Error string }
	_ = json.Unmarshal(out, &mod)
	if err != nil || mod.Dir == "" {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("go mod download github.com/cilium/cilium@%s (for the CiliumNode CRD; make deps downloads it): %v %s", CiliumVersion, err, mod.Error)
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

// InstallCiliumNodeCRD installs Cilium's own CiliumNode CRD and waits
// until it is served.
func InstallCiliumNodeCRD(ctx context.Context, cfg *rest.Config) error {
	crd, err := CiliumNodeCRD(ctx)
	if err != nil {
		return err
	}
	cs, err := apiextensionsclient.NewForConfig(cfg)
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
