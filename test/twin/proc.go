package twin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// Process is a program run in a namespace, stopped by its PID.
type Process struct {
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProcess(ns, logPath string, env []string, bin string, args ...string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s in %s: %w", filepath.Base(bin), ns, err)
	}
	p := &Process{Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Exited says whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and SIGKILL after 15 s.
func (p *Process) Stop() error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(15 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not stop on SIGTERM within 15s and was killed", filepath.Base(p.Log))
}

// CiliumVersion is the cilium module whose CiliumNode CRD the twin
// installs (as test/routes does).
const CiliumVersion = "v1.20.2"

// installCiliumNodeCRD installs Cilium's own CiliumNode CRD, read from
// the cilium Go module (downloaded into the module cache only), and waits
// until it is served.
func installCiliumNodeCRD(ctx context.Context, cfg *rest.Config) error {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/cilium/cilium@"+CiliumVersion).Output()
	var mod struct{ Dir, Error string }
	_ = json.Unmarshal(out, &mod)
	if err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download github.com/cilium/cilium@%s (for the CiliumNode CRD): %v %s", CiliumVersion, err, mod.Error)
	}
	data, err := os.ReadFile(filepath.Join(mod.Dir, "pkg", "k8s", "apis", "cilium.io", "client", "crds", "v2", "ciliumnodes.yaml"))
	if err != nil {
		return err
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(data, crd); err != nil {
		return fmt.Errorf("parse ciliumnodes.yaml: %w", err)
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

// prefixAddr is the address of prefix p, or the zero address.
func prefixAddr(p string) netip.Addr {
	pp, err := netip.ParsePrefix(p)
	if err != nil {
		return netip.Addr{}
	}
	return pp.Addr()
}
