package repave

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/controller/operations"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

// A namespace no Datacenter names is no datacenter: an operator of it
// (or anyone with edit there) who creates a Server pointing at a host and
// asks for a repave gets no token, no SSH session and no pod CIDR; the
// Server says why. Declaring a Datacenter whose network the Server does
// not fit changes the reason, not the outcome.
func TestServerOutsideAnyDatacenterIsNotRepaved(t *testing.T) {
	ctx := context.Background()
	const ns, name = "dc-undeclared", "outside-1"
	for _, o := range env.sim.Fixtures(ns, "unused", dcsim.Profile{Name: "fast", Script: "#!/bin/sh\nexit 0\n"}) {
		switch o.(type) {
		case *v1.Datacenter, *rbacv1.ClusterRoleBinding:
			continue
		}
		if err := env.c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
	srv0 := dcsim.Server(ns, name, env.sim.Workers[0], "fast")
	if err := env.c.Create(ctx, srv0); err != nil {
		t.Fatal(err)
	}
	// It has worker-1's address: gone after the test, so the serving CSR
	// of worker-1 (which names that address) is not refused as another
	// Server's. It holds no finalizer (checked below).
	t.Cleanup(func() { _ = env.c.Delete(context.Background(), srv0) })
	env.startController(t, "outside")

	// The Server says so, and is not Ready for that reason.
	srv := waitServerCondition(t, ns, name, stargate.ReasonNoDatacenter)
	if c := meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionInDatacenter); !strings.Contains(c.Message, "a Datacenter whose spec.namespace is "+ns) {
		t.Errorf("InDatacenter message %q does not say how to declare the datacenter", c.Message)
	}

	op := repaveIn(t, ns, name)
	assertRefusedBeforeAnyToken(t, op, name, stargate.ReasonNoDatacenter)

	// A Datacenter that does not hold the Server's address: still refused,
	// now naming the field; the Datacenter's watch brought the Server back.
	declared := &v1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: ns}, Spec: v1.DatacenterSpec{
		Namespace: ns, WorkerSubnet: "198.51.100.0/24", Router: v1.DatacenterRouter{IP: dcsim.RouterTailnetIP}, AgentGateway: "198.51.100.1",
	}}
	if err := env.c.Create(ctx, declared); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.c.Delete(context.Background(), declared) })
	srv = waitServerCondition(t, ns, name, stargate.ReasonNotInDatacenterNetwork)
	if c := meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionInDatacenter); !strings.Contains(c.Message, "spec.ipAddress") {
		t.Errorf("InDatacenter message %q does not name the field", c.Message)
	}
	op = repaveIn(t, ns, name)
	assertRefusedBeforeAnyToken(t, op, name, stargate.ReasonNotInDatacenterNetwork)

	// Nor did it get a pod CIDR or the finalizers that hold one.
	var got v1.Server
	if err := env.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.PodCIDR != "" || len(got.Finalizers) != 0 {
		t.Errorf("Server outside its datacenter: podCIDR %q, finalizers %v; want none", got.Status.PodCIDR, got.Finalizers)
	}
	if env.runs(name) != 0 {
		t.Errorf("the bootstrap script ran for a Server outside its datacenter")
	}
}

// waitServerCondition waits for the Server's InDatacenter condition to be
// False with reason, and Ready False with the same reason.
func waitServerCondition(t *testing.T, ns, name, reason string) *v1.Server {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var s v1.Server
		if err := env.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
			t.Fatal(err)
		}
		in := meta.FindStatusCondition(s.Status.Conditions, stargate.ConditionInDatacenter)
		ready := meta.FindStatusCondition(s.Status.Conditions, stargate.ConditionReady)
		if in != nil && in.Status == metav1.ConditionFalse && in.Reason == reason &&
			ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == reason {
			return &s
		}
		if time.Now().After(deadline) {
			t.Fatalf("Server %s/%s: conditions %+v; want InDatacenter and Ready False with reason %s", ns, name, s.Status.Conditions, reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// repaveIn asks for a repave of Server name in namespace ns as users do and
// waits for the Operation to end.
func repaveIn(t *testing.T, ns, name string) *v1.Operation {
	t.Helper()
	res := env.world.Kubectl.RunWithInput(context.Background(), `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","reason":"test"}`,
		"create", "--raw", "/apis/stargate.io/v1alpha1/namespaces/"+ns+"/servers/"+name+"/repave", "-f", "-")
	if res.Err != nil {
		t.Fatalf("repave %s/%s: %v", ns, name, res)
	}
	opName := between(res.Stdout, `"name":"`, `"`)
	if opName == "" {
		t.Fatalf("repave answered no Operation: %s", res.Stdout)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var op v1.Operation
		if err := env.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: opName}, &op); err != nil {
			t.Fatal(err)
		}
		if finished(&op) {
			return &op
		}
		if time.Now().After(deadline) {
			t.Fatalf("Operation %s/%s did not end; phase %s, message %q", ns, opName, op.Status.Phase, op.Status.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// assertRefusedBeforeAnyToken checks that the Operation failed in
// ResolveReferences with reason, before connecting, and that no bootstrap
// token exists for the Server.
func assertRefusedBeforeAnyToken(t *testing.T, op *v1.Operation, server, reason string) {
	t.Helper()
	c := meta.FindStatusCondition(op.Status.Conditions, stargate.ConditionSucceeded)
	if op.Status.Phase != v1.OperationFailed || c == nil || c.Reason != reason {
		t.Fatalf("Operation %s: phase %s, condition %+v; want Failed with reason %s", op.Name, op.Status.Phase, c, reason)
	}
	st := stepStates(op)
	if st[operations.StepResolve] != v1.StepFailed || st[operations.StepConnect] != v1.StepPending || st[operations.StepToken] != v1.StepPending {
		t.Errorf("steps %v: want %s Failed and nothing after it started", st, operations.StepResolve)
	}
	env.noTokenLeft(t, op)
	var list corev1.SecretList
	if err := env.c.List(context.Background(), &list, client.InNamespace("kube-system"), client.MatchingLabels{bootstrap.LabelServer: server}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("bootstrap token Secret %s exists for a Server outside its datacenter", list.Items[0].Name)
	}
}
