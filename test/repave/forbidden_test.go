package repave

import (
	"context"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/operations"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

// A namespace an admin declared as a Datacenter but where they did not
// bind ClusterRole stargate-controller-datacenter to the controller: its
// repave fails at once with reason CredentialsForbidden and a message
// saying exactly what to bind, instead of an API error retried forever. The
// Server's address is in the Datacenter's network (203.0.113.0/24), where
// no host exists: nothing is dialled.
func TestRepaveInDatacenterWithoutControllerBindingFailsCredentialsForbidden(t *testing.T) {
	ctx := context.Background()
	const ns, name = "dc-unbound", "unbound-1"
	for _, o := range env.sim.Fixtures(ns, "unused", dcsim.Profile{Name: "fast", Script: "#!/bin/sh\nexit 0\n"}) {
		switch o.(type) {
		case *v1.Datacenter, *rbacv1.ClusterRoleBinding, *rbacv1.RoleBinding:
			continue
		}
		if err := env.c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
	declared := &v1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: ns}, Spec: v1.DatacenterSpec{
		Namespace: ns, WorkerSubnet: "203.0.113.0/24", Router: v1.DatacenterRouter{IP: dcsim.RouterTailnetIP}, AgentGateway: "203.0.113.1",
	}}
	if err := env.c.Create(ctx, declared); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.c.Delete(context.Background(), declared) })
	srv := dcsim.Server(ns, name, nil, "fast")
	srv.Spec.IPAddress = "203.0.113.10"
	if err := env.c.Create(ctx, srv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.c.Delete(context.Background(), srv) })
	env.startController(t, "unbound")

	op := repaveIn(t, ns, name)
	c := meta.FindStatusCondition(op.Status.Conditions, stargate.ConditionSucceeded)
	if op.Status.Phase != v1.OperationFailed || c == nil || c.Reason != stargate.ReasonCredentialsForbidden {
		t.Fatalf("Operation %s: phase %s, condition %+v; want Failed, reason %s", op.Name, op.Status.Phase, c, stargate.ReasonCredentialsForbidden)
	}
	want := "bind ClusterRole stargate-controller-datacenter to ServiceAccount stargate-system/stargate-controller in namespace " + ns + " (artifacts/datacenter/rbac.yaml"
	if !strings.Contains(op.Status.Message, want) {
		t.Errorf("message %q does not say %q", op.Status.Message, want)
	}
	if st := stepStates(op); st[operations.StepResolve] != v1.StepFailed || st[operations.StepConnect] != v1.StepPending {
		t.Errorf("steps %v: want %s Failed, nothing after it", st, operations.StepResolve)
	}
	t.Logf("message: %s", op.Status.Message)
}
