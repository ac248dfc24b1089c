package framework

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ModulePath is the Go module of the repository.
const ModulePath = "github.com/stargate-k8s/stargate"

// RepoRoot finds the repository root by walking up from the working
// directory to the go.mod of ModulePath, so tests (which run in their
// package directory) and `go run ./hack/dev` find bin/ alike.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(data, ModulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

// Binaries are the paths of the programs the framework runs.
type Binaries struct {
	Dir           string
	KubeAPIServer string
	Etcd          string
	Kubectl       string
}

// FindBinaries returns the control-plane binaries in binDir (the repo's
// bin/ when empty), or an error naming the script that builds them.
func FindBinaries(binDir string) (Binaries, error) {
	if binDir == "" {
		root, err := RepoRoot()
		if err != nil {
			return Binaries{}, err
		}
		binDir = filepath.Join(root, "bin")
	}
	b := Binaries{
		Dir:           binDir,
		KubeAPIServer: filepath.Join(binDir, "kube-apiserver"),
		Etcd:          filepath.Join(binDir, "etcd"),
		Kubectl:       filepath.Join(binDir, "kubectl"),
	}
	var missing []error
	for _, p := range []string{b.KubeAPIServer, b.Etcd, b.Kubectl} {
		if err := isExecutable(p); err != nil {
			missing = append(missing, err)
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("test binaries missing; run hack/install-test-bins.sh (or `make test-bins`) to build kube-apiserver, etcd and kubectl into %s: %w",
			binDir, errors.Join(missing...))
	}
	return b, nil
}

func declaresModule(goMod []byte, module string) bool {
	for _, line := range bytes.Split(goMod, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 2 && string(f[0]) == "module" && strings.Trim(string(f[1]), `"`) == module {
			return true
		}
	}
	return false
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// RequireRoot returns an error saying how to run, when the process is not
// root; purpose says what needs it (e.g. "network namespaces").
func RequireRoot(purpose string) error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("%s need root (uid 0), this runs as uid %d: run the tests as root, as .ci/run does (e.g. sudo -E make test)", purpose, uid)
	}
	return nil
}
