package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A user who may read servers but has no RBAC on servers/repave is refused
// the repave (403) while reads keep working: the subresource is
// authorized on its own.
func TestRepaveForbiddenWithoutRBAC(t *testing.T) {
	ctx := testContext(t)
	rbac := world.ControlPlane.Kube.RbacV1()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "server-reader", Namespace: dc},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"stargate.io"},
			Resources: []string{"servers"},
			Verbs:     []string{"get", "list"},
		}},
	}
	if _, err := rbac.Roles(dc).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "server-reader", Namespace: dc},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "server-reader"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "reader"}},
	}
	if _, err := rbac.RoleBindings(dc).Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	user, err := world.ControlPlane.AddUser("reader")
	if err != nil {
		t.Fatal(err)
	}
	reader := world.KubectlFor(user.Kubeconfig)

	// RBAC reaches the authorizer's cache shortly after the write.
	eventually(t, 30*time.Second, func() error {
		r := reader.Run(ctx, "get", "servers", "-n", dc)
		if r.Err != nil || !strings.Contains(r.Stdout, "worker-1") {
			return fmt.Errorf("reader cannot list servers yet:\n%s", r)
		}
		return nil
	})
	mustSucceed(t, reader.Run(ctx, "get", "server", "worker-2", "-n", dc))

	before := operationsOf(t, "worker-2")
	r := reader.Run(ctx, "create", "--raw", repavePath("worker-2"), "-f",
		writeFile(t, "req.json", `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest"}`))
	mustFail(t, r, "Forbidden", `User "reader" cannot create resource "servers/repave"`)
	if after := operationsOf(t, "worker-2"); !slices.Equal(after, before) {
		t.Errorf("a forbidden repave changed the Operations of worker-2: before %q, after %q", before, after)
	}
}
