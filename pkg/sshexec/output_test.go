package sshexec_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stargate-k8s/stargate/pkg/sshexec"
)

// A host that answers a short command with endless output (a compromised
// or broken host) does not make the controller hold it: Output stops the
// command after MaxOutputBytes and says so, and the connection stays
// usable.
func TestHostFloodingOutputIsCutOff(t *testing.T) {
	sim := startSim(t)
	w := sim.Workers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := sshexec.Connect(ctx, jumpConfig(t, sim, w.IP, w.HostKey))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	start := time.Now()
	out, err := c.Output(ctx, "yes flood")
	if !errors.Is(err, sshexec.ErrOutputTooLarge) {
		t.Fatalf("endless output: err = %v, want ErrOutputTooLarge", err)
	}
	if len(out) != sshexec.MaxOutputBytes || !strings.HasPrefix(string(out), "flood\nflood\n") {
		t.Fatalf("kept %d bytes starting %q, want the first %d", len(out), string(out[:min(len(out), 12)]), sshexec.MaxOutputBytes)
	}
	t.Logf("cut off after %s", time.Since(start).Round(time.Millisecond))

	// Errors keep a bounded stderr too, and the connection still works.
	_, err = c.Output(ctx, "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 2")
	if err == nil || len(err.Error()) > 5*1024 {
		t.Fatalf("failing command with long stderr: error of %d bytes: %.80v", len(err.Error()), err)
	}
	if got, err := c.Output(ctx, "echo ok"); err != nil || strings.TrimSpace(string(got)) != "ok" {
		t.Fatalf("after the cut-off: %q %v", got, err)
	}
}
