package validation

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

func validRollout() *stargate.ServerRollout {
	mu := intstr.FromInt32(3)
	return &stargate.ServerRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "upgrade", Namespace: "dc", ResourceVersion: "1"},
		Spec: stargate.ServerRolloutSpec{
			Selector:       metav1.LabelSelector{MatchLabels: map[string]string{"rack": "r1"}},
			Operation:      stargate.OperationRepave,
			MaxUnavailable: &mu,
			MaxFailures:    ptr.To[int32](0),
		},
	}
}

func TestServerRolloutValidation(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*stargate.ServerRollout)
		want   string // field path in the error; "" for valid
	}{
		"valid":                 {func(*stargate.ServerRollout) {}, ""},
		"empty selector":        {func(r *stargate.ServerRollout) { r.Spec.Selector = metav1.LabelSelector{} }, ""},
		"percent":               {func(r *stargate.ServerRollout) { v := intstr.FromString("30%"); r.Spec.MaxUnavailable = &v }, ""},
		"zero maxUnavailable":   {func(r *stargate.ServerRollout) { v := intstr.FromInt32(0); r.Spec.MaxUnavailable = &v }, "spec.maxUnavailable"},
		"zero percent":          {func(r *stargate.ServerRollout) { v := intstr.FromString("0%"); r.Spec.MaxUnavailable = &v }, "spec.maxUnavailable"},
		"over 100 percent":      {func(r *stargate.ServerRollout) { v := intstr.FromString("150%"); r.Spec.MaxUnavailable = &v }, "spec.maxUnavailable"},
		"not a percent":         {func(r *stargate.ServerRollout) { v := intstr.FromString("three"); r.Spec.MaxUnavailable = &v }, "spec.maxUnavailable"},
		"negative maxFailures":  {func(r *stargate.ServerRollout) { r.Spec.MaxFailures = ptr.To[int32](-1) }, "spec.maxFailures"},
		"unsupported operation": {func(r *stargate.ServerRollout) { r.Spec.Operation = "Explode" }, "spec.operation"},
		"reboot":                {func(r *stargate.ServerRollout) { r.Spec.Operation = stargate.OperationReboot }, ""},
		"no mass decommission":  {func(r *stargate.ServerRollout) { r.Spec.Operation = stargate.OperationDecommission }, "spec.operation"},
		"bad selector": {func(r *stargate.ServerRollout) {
			r.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"not a key!": "x"}}
		}, "spec.selector"},
		"bad profile name": {func(r *stargate.ServerRollout) {
			r.Spec.ProvisioningProfileRef = &stargate.LocalObjectReference{Name: "Not_A_Name"}
		}, "spec.provisioningProfileRef.name"},
	} {
		t.Run(name, func(t *testing.T) {
			r := validRollout()
			tc.mutate(r)
			errs := ValidateServerRollout(r)
			if tc.want == "" {
				if len(errs) > 0 {
					t.Fatalf("want valid, got %v", errs)
				}
				return
			}
			if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), tc.want) {
				t.Fatalf("want an error on %s, got %v", tc.want, errs)
			}
		})
	}
}

func TestServerRolloutUpdateKeepsWhatItRuns(t *testing.T) {
	old := validRollout()
	r := validRollout()
	r.Spec.Paused = true
	v := intstr.FromInt32(5)
	r.Spec.MaxUnavailable = &v
	if errs := ValidateServerRolloutUpdate(r, old); len(errs) > 0 {
		t.Fatalf("pausing and widening must be allowed: %v", errs)
	}
	r = validRollout()
	r.Spec.Selector.MatchLabels["rack"] = "r2"
	r.Spec.ProvisioningProfileRef = &stargate.LocalObjectReference{Name: "v134"}
	errs := ValidateServerRolloutUpdate(r, old)
	for _, f := range []string{"spec.selector", "spec.provisioningProfileRef"} {
		if !strings.Contains(errs.ToAggregate().Error(), f) {
			t.Errorf("changing %s must be forbidden: %v", f, errs)
		}
	}
}

func TestServerRolloutStatusIsBounded(t *testing.T) {
	old := validRollout()
	r := validRollout()
	for i := 0; i <= MaxRolloutServers; i++ {
		r.Status.Servers = append(r.Status.Servers, stargate.ServerRolloutServer{Name: "s", State: stargate.RolloutServerWaiting})
	}
	if errs := ValidateServerRolloutStatusUpdate(r, old); len(errs) == 0 {
		t.Fatal("status with more than MaxRolloutServers servers accepted")
	}
	r.Status.Servers = []stargate.ServerRolloutServer{{Name: "a", State: "Exploded"}, {Name: "a", State: stargate.RolloutServerWaiting}}
	errs := ValidateServerRolloutStatusUpdate(r, old).ToAggregate().Error()
	for _, want := range []string{"status.servers[0].state", "status.servers[1].name"} {
		if !strings.Contains(errs, want) {
			t.Errorf("want an error on %s: %s", want, errs)
		}
	}
}
