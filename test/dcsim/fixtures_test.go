package dcsim

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The simulated workers' bootstrap script passes shellcheck, as every
// script the controller runs must.
func TestStandinScriptPassesShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is missing; run hack/install-deps.sh")
	}
	f := filepath.Join(t.TempDir(), "standin.sh")
	if err := os.WriteFile(f, []byte(StandinScriptWithHeartbeat("/var/lib/state dir", "/opt/it's/kubelet-standin", 2*time.Second, 5*time.Second)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sc, "-s", "bash", f).CombinedOutput(); err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
}
