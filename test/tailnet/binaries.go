package tailnet

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/stargate-k8s/stargate/test/framework"
)

// Binaries are the Tailscale programs hack/install-tailscale.sh builds.
type Binaries struct {
	Tailscaled, Tailscale, Tailcontrol string
}

// FindBinaries finds tailscaled, tailscale and tailcontrol in binDir (the
// repository's bin/ when empty), or says how to build them.
func FindBinaries(binDir string) (Binaries, error) {
	if binDir == "" {
		root, err := framework.RepoRoot()
		if err != nil {
			return Binaries{}, err
		}
		binDir = filepath.Join(root, "bin")
	}
	b := Binaries{
		Tailscaled:  filepath.Join(binDir, "tailscaled"),
		Tailscale:   filepath.Join(binDir, "tailscale"),
		Tailcontrol: filepath.Join(binDir, "tailcontrol"),
	}
	var missing []string
	for _, p := range []string{b.Tailscaled, b.Tailscale, b.Tailcontrol} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return Binaries{}, fmt.Errorf("missing %v: run hack/install-tailscale.sh", missing)
	}
	return b, nil
}

// Binaries are the programs this tailnet runs.
func (c *Control) Binaries() Binaries { return c.bins }
