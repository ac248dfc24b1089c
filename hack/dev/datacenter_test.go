package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stargate-k8s/stargate/test/framework/nodes"
)

// The scripts make dev hands stargate-controller (the profile's bootstrap
// script, --reset-script, --reboot-command) pass shellcheck.
func TestDatacenterScriptsPassShellcheck(t *testing.T) {
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatalf("shellcheck not found: run hack/install-deps.sh: %v", err)
	}
	d := &datacenter{Workers: []*nodes.Node{
		{Name: "worker-1", Dir: "/var/lib/stargate-test-nodes/worker-1", StartScript: "/var/lib/stargate-test-nodes/worker-1/start-node.sh"},
		{Name: "worker-2", Dir: "/var/lib/stargate-test-nodes/worker-2", StartScript: "/var/lib/stargate-test-nodes/worker-2/start-node.sh"},
	}}
	dir := t.TempDir()
	for name, script := range map[string]string{
		"profile.sh": d.profileScript(),
		"reset.sh":   d.resetScript(),
		"reboot.sh":  d.rebootScript(),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(shellcheck, path).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s\n%s", name, err, out, script)
		}
	}
}
