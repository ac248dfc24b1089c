package manager_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/pkg/controller/rollout"
	"github.com/stargate-k8s/stargate/pkg/controller/routes"
)

// TestValidateNamesEveryBadFlag: stargate-controller checks every group's
// flags before it starts and names all bad ones at once, by group.
func TestValidateNamesEveryBadFlag(t *testing.T) {
	o := manager.NewOptions()
	rt := routes.New()
	ro := rollout.New()
	if err := manager.Validate(o, rt, ro); err != nil {
		t.Fatalf("defaults must be valid: %v", err)
	}
	o.RenewDeadline = 20 * time.Second // longer than the lease
	rt.IPAM.Pool = "10.244.0.0/33"
	ro.Resync = 0
	err := manager.Validate(o, rt, ro)
	if err == nil {
		t.Fatal("bad flags accepted")
	}
	for _, want := range []string{"--leader-election-lease-duration", "routes: ", "10.244.0.0/33", "rollout: --rollout-resync"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
}
