package integration

import (
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// TestOperationCreatedDirectlyClaimsItsServer creates an Operation the
// original Stargate's way, with a plain create: it claims its Server
// (status.lastOperation), is owned by it and labelled with it, and while
// it is active neither a repave nor a second plain Operation can start.
func TestOperationCreatedDirectlyClaimsItsServer(t *testing.T) {
	ctx := testContext(t)
	servers := client.StargateV1alpha1().Servers(dc)
	ops := client.StargateV1alpha1().Operations(dc)
	fresh := server("", "10.50.1.41")
	fresh.GenerateName = "direct-"
	fresh.Spec.Hostname = "direct"
	srv, err := servers.Create(ctx, fresh, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	op := func() *v1alpha1.Operation {
		return &v1alpha1.Operation{
			ObjectMeta: metav1.ObjectMeta{GenerateName: srv.Name + "-by-hand-", Namespace: dc},
			Spec: v1alpha1.OperationSpec{
				ServerRef:              v1alpha1.LocalObjectReference{Name: srv.Name},
				ProvisioningProfileRef: v1alpha1.LocalObjectReference{Name: "default"},
			},
		}
	}
	first, err := ops.Create(ctx, op(), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Operation: %v", err)
	}
	if first.Labels[stargate.LabelServer] != srv.Name {
		t.Errorf("labels %v, want %s=%s", first.Labels, stargate.LabelServer, srv.Name)
	}
	if len(first.OwnerReferences) != 1 || first.OwnerReferences[0].UID != srv.UID {
		t.Errorf("ownerReferences %+v, want the Server %s", first.OwnerReferences, srv.UID)
	}
	if got := getServer(t, srv.Name).Status.LastOperation; got != first.Name {
		t.Errorf("status.lastOperation = %q, want %q", got, first.Name)
	}
	if _, err := ops.Create(ctx, op(), metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("second Operation while the first is active: %v, want 409 Conflict", err)
	}
	if _, err := servers.Repave(ctx, srv.Name, &v1alpha1.RepaveRequest{}, metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("repave while a plain Operation is active: %v, want 409 Conflict", err)
	}
	// Dry run claims nothing.
	if _, err := ops.Create(ctx, op(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsConflict(err) {
		t.Errorf("dry-run Operation while the first is active: %v, want 409 Conflict", err)
	}
	first.Status.Phase = v1alpha1.OperationSucceeded
	if _, err := ops.UpdateStatus(ctx, first, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	second, err := ops.Create(ctx, op(), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("Operation after the first finished: %v", err)
	}
	if got := getServer(t, srv.Name).Status.LastOperation; got != second.Name {
		t.Errorf("status.lastOperation = %q, want %q", got, second.Name)
	}
}

// TestOperationCannotClaimAnotherServerByOwnerOrLabel: an Operation whose
// label or owner names a Server other than spec.serverRef is refused.
func TestOperationCannotClaimAnotherServerByOwnerOrLabel(t *testing.T) {
	ctx := testContext(t)
	fresh := server("", "10.50.1.42")
	fresh.GenerateName = "victim-"
	fresh.Spec.Hostname = "victim"
	victim, err := client.StargateV1alpha1().Servers(dc).Create(ctx, fresh, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other := server("", "10.50.1.43")
	other.GenerateName = "other-"
	other.Spec.Hostname = "other"
	o, err := client.StargateV1alpha1().Servers(dc).Create(ctx, other, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	op := &v1alpha1.Operation{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "mislabelled-", Namespace: dc, Labels: map[string]string{stargate.LabelServer: victim.Name}},
		Spec: v1alpha1.OperationSpec{
			ServerRef:              v1alpha1.LocalObjectReference{Name: o.Name},
			ProvisioningProfileRef: v1alpha1.LocalObjectReference{Name: "default"},
		},
	}
	if _, err := client.StargateV1alpha1().Operations(dc).Create(ctx, op, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("Operation labelled for another Server: %v, want 422", err)
	}
}

// TestRepaveRequestLabelsReachTheOperation: the labels of a RepaveRequest
// are put on its Operation (a ServerRollout marks its Operations so), but
// stargate.io/server cannot be set by the caller.
func TestRepaveRequestLabelsReachTheOperation(t *testing.T) {
	ctx := testContext(t)
	fresh := server("", "10.50.1.44")
	fresh.GenerateName = "labelled-"
	fresh.Spec.Hostname = "labelled"
	srv, err := client.StargateV1alpha1().Servers(dc).Create(ctx, fresh, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	servers := client.StargateV1alpha1().Servers(dc)
	if _, err := servers.Repave(ctx, srv.Name, &v1alpha1.RepaveRequest{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{stargate.LabelServer: "someone-else"}}}, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("repave labelled stargate.io/server=someone-else: %v, want 422", err)
	}
	op, err := servers.Repave(ctx, srv.Name, &v1alpha1.RepaveRequest{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"example.com/wave": "1"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if op.Labels["example.com/wave"] != "1" || op.Labels[stargate.LabelServer] != srv.Name {
		t.Errorf("Operation labels %v", op.Labels)
	}
}
