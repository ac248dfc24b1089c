package realnodes

import (
	"strings"
	"testing"
	"time"

	"github.com/stargate-k8s/stargate/test/framework/nodes"
)

// TestTeardownLeavesNothing runs last (its file sorts last): it tears the
// nodes, the control plane and the host down, as TestMain would, and
// asserts that no process, mount, network namespace, link, cgroup or file
// of the run is left.
func TestTeardownLeavesNothing(t *testing.T) {
	start := time.Now()
	if err := teardown(testContext(t, 3*time.Minute)); err != nil {
		t.Errorf("teardown: %v", err)
	}
	t.Logf("teardown took %s", time.Since(start).Round(100*time.Millisecond))
	if left := nodes.Leftovers(); len(left) > 0 {
		t.Errorf("teardown left:\n%s", strings.Join(left, "\n"))
	}
}
