package integration

// Tests that kube-controller-manager's controllers, running as in a real
// cluster, do their part for stargate.io objects: the garbage collector,
// the namespace controller (also while stargate-apiserver is down) and the
// ClusterRole aggregation controller.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const repaveRequest = `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","reason":"test"}`

// Deleting a Server deletes its Operations through their owner references:
// the garbage collector's work.
func TestDeletingServerGarbageCollectsItsOperations(t *testing.T) {
	createServer(t, server("gc-owner", "10.50.1.81"))
	createServer(t, server("gc-bystander", "10.50.1.82"))
	owned := repave(t, "gc-owner", repaveRequest)
	other := repave(t, "gc-bystander", repaveRequest)

	kubectl(t, "delete", "server", "gc-owner", "-n", dc)
	eventually(t, 90*time.Second, func() error {
		_, err := client.StargateV1alpha1().Operations(dc).Get(testContext(t), owned.Name, metav1.GetOptions{})
		if err == nil {
			return fmt.Errorf("Operation %s of the deleted Server gc-owner still exists", owned.Name)
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	})
	// Only the dependents of the deleted owner go.
	kubectl(t, "get", "operation", other.Name, "-n", dc)
}

// Deleting a datacenter's namespace deletes its stargate.io objects and
// finishes: nothing is left to reappear when the namespace is made again.
func TestDeletingDatacenterNamespaceFinishes(t *testing.T) {
	const ns = "dc-it-deleted"
	populateNamespace(t, ns)
	start := time.Now()
	kubectl(t, "delete", "namespace", ns, "--wait=false")
	waitNamespaceGone(t, ns, 2*time.Minute)
	t.Logf("namespace %s deleted in %s", ns, time.Since(start).Round(100*time.Millisecond))
	expectNoLeftovers(t, ns)
}

// While stargate-apiserver is down, a namespace being deleted waits (it
// cannot tell whether stargate.io objects remain) and says so in a
// condition; once the server is back, the deletion finishes and removes
// the namespace's stargate.io objects.
func TestNamespaceDeletionWaitsForStargateAPIServer(t *testing.T) {
	const ns = "dc-it-deleted-while-down"
	populateNamespace(t, ns)
	ctx := testContext(t)

	if err := world.Stargate.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	restart := func() {
		if restarted {
			return
		}
		restarted = true
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := world.Stargate.Start(ctx); err != nil {
			t.Fatalf("start stargate-apiserver again: %v", err)
		}
		if err := world.Stargate.WaitServed(ctx); err != nil {
			t.Fatalf("stargate-apiserver is not served again: %v", err)
		}
	}
	t.Cleanup(restart)

	kubectl(t, "delete", "namespace", ns, "--wait=false")
	// The namespace controller says that it cannot discover stargate.io
	// (once the aggregator has noticed the server is gone) or cannot delete
	// its objects (before).
	var cond *corev1.NamespaceCondition
	eventually(t, time.Minute, func() error {
		n, err := world.ControlPlane.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i, c := range n.Status.Conditions {
			failure := c.Type == corev1.NamespaceDeletionDiscoveryFailure || c.Type == corev1.NamespaceDeletionContentFailure
			if failure && c.Status == corev1.ConditionTrue && strings.Contains(c.Message, "stargate.io") {
				cond = &n.Status.Conditions[i]
				return nil
			}
		}
		return fmt.Errorf("namespace %s (phase %s) has no true condition about stargate.io: %+v", ns, n.Status.Phase, n.Status.Conditions)
	})
	t.Logf("while stargate-apiserver is down: %s: %s", cond.Type, cond.Message)
	// It keeps waiting, rather than finishing with objects left behind.
	time.Sleep(5 * time.Second)
	n, err := world.ControlPlane.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("namespace %s went away while stargate-apiserver was down: %v", ns, err)
	}
	if n.Status.Phase != corev1.NamespaceTerminating {
		t.Errorf("namespace %s is %s while stargate-apiserver is down, want Terminating", ns, n.Status.Phase)
	}

	back := time.Now()
	restart()
	waitNamespaceGone(t, ns, 3*time.Minute)
	t.Logf("namespace %s deleted %s after stargate-apiserver was back", ns, time.Since(back).Round(100*time.Millisecond))
	expectNoLeftovers(t, ns)
}

// The built-in roles are filled by the ClusterRole aggregation controller.
// A namespace editor or admin gets their usual rights and nothing of
// stargate.io; the shipped stargate-* roles (artifacts/rbac-users.yaml),
// bound in a datacenter namespace, give exactly what they say.
func TestBuiltinRolesGrantNothingOfStargate(t *testing.T) {
	kubectl(t, "apply", "-f", filepath.Join(world.RepoRoot, "artifacts", "rbac-users.yaml"))
	users := map[string]string{ // user -> ClusterRole bound in dc
		"it-editor":   "edit",
		"it-admin":    "admin",
		"it-viewer":   "view",
		"it-operator": "stargate-edit",
		"it-reader":   "stargate-view",
	}
	as := map[string]func(args ...string) string{}
	for user, role := range users {
		bindClusterRole(t, dc, user, role)
		u, err := world.ControlPlane.AddUser(user)
		if err != nil {
			t.Fatal(err)
		}
		k := world.KubectlFor(u.Kubeconfig)
		as[user] = func(args ...string) string {
			r := k.Run(testContext(t), append([]string{"auth", "can-i"}, args...)...)
			return strings.TrimSpace(r.Stdout)
		}
	}
	type check struct {
		user string
		args []string
		want string
	}
	in := func(user, want string, args ...string) check { return check{user, append(args, "-n", dc), want} }
	checks := []check{
		// The aggregation controller filled edit, admin and view.
		in("it-editor", "yes", "create", "deployments.apps"),
		in("it-editor", "yes", "get", "secrets"),
		in("it-admin", "yes", "create", "rolebindings.rbac.authorization.k8s.io"),
		in("it-viewer", "yes", "list", "pods"),
		// ... with nothing of stargate.io in them.
		in("it-editor", "no", "create", "servers.stargate.io"),
		in("it-editor", "no", "get", "servers.stargate.io"),
		in("it-editor", "no", "create", "servers.stargate.io", "--subresource=repave"),
		in("it-editor", "no", "get", "servers.stargate.io", "--subresource=routes"),
		in("it-editor", "no", "delete", "operations.stargate.io"),
		in("it-admin", "no", "create", "servers.stargate.io"),
		in("it-admin", "no", "create", "servers.stargate.io", "--subresource=repave"),
		in("it-admin", "no", "update", "provisioningprofiles.stargate.io"),
		in("it-viewer", "no", "list", "servers.stargate.io"),
		// stargate-edit: servers, profiles and repaves of its namespace.
		in("it-operator", "yes", "create", "servers.stargate.io"),
		in("it-operator", "yes", "update", "provisioningprofiles.stargate.io"),
		in("it-operator", "yes", "create", "servers.stargate.io", "--subresource=repave"),
		in("it-operator", "yes", "get", "servers.stargate.io", "--subresource=routes"),
		in("it-operator", "yes", "list", "operations.stargate.io"),
		in("it-operator", "no", "update", "servers.stargate.io", "--subresource=status"),
		// A plain create of an Operation takes the Server's claim as a
		// repave does (the original Stargate's way), so it is granted
		// with repaves; deleting history is stargate-admin's.
		in("it-operator", "yes", "create", "operations.stargate.io"),
		in("it-operator", "yes", "create", "servers.stargate.io", "--subresource=reboot"),
		in("it-operator", "yes", "create", "serverrollouts.stargate.io"),
		in("it-viewer", "no", "create", "serverrollouts.stargate.io"),
		in("it-editor", "no", "create", "serverrollouts.stargate.io"),
		in("it-operator", "no", "delete", "operations.stargate.io"),
		{"it-operator", []string{"create", "servers.stargate.io", "-n", "default"}, "no"},
		// Datacenters are cluster-scoped: no namespaced binding reaches them.
		{"it-admin", []string{"create", "datacenters.stargate.io"}, "no"},
		{"it-operator", []string{"create", "datacenters.stargate.io"}, "no"},
		{"it-operator", []string{"update", "datacenters.stargate.io"}, "no"},
		// stargate-view: reads only.
		in("it-reader", "yes", "get", "servers.stargate.io", "--subresource=routes"),
		in("it-reader", "no", "create", "servers.stargate.io", "--subresource=repave"),
		in("it-reader", "no", "update", "servers.stargate.io"),
	}
	// Aggregation and the authorizer's cache follow the writes shortly.
	eventually(t, time.Minute, func() error {
		var wrong []string
		for _, c := range checks {
			if got := as[c.user](c.args...); got != c.want {
				wrong = append(wrong, fmt.Sprintf("%s: can-i %s = %q, want %q", c.user, strings.Join(c.args, " "), got, c.want))
			}
		}
		if len(wrong) > 0 {
			return fmt.Errorf("\n%s", strings.Join(wrong, "\n"))
		}
		return nil
	})
}

// populateNamespace makes namespace ns with a profile, a Server and a
// (Pending) repave Operation of it.
func populateNamespace(t *testing.T, ns string) {
	t.Helper()
	ctx := testContext(t)
	if _, err := world.ControlPlane.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = world.ControlPlane.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	p := profile("default")
	p.Namespace = ns
	s := server("doomed", "10.50.1.90")
	s.Namespace = ns
	// stargate-apiserver admits objects in a namespace once its informer
	// has seen the namespace.
	eventually(t, 30*time.Second, func() error {
		_, err := client.StargateV1alpha1().ProvisioningProfiles(ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	if _, err := client.StargateV1alpha1().Servers(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := kubectl(t, "create", "--raw", "/apis/stargate.io/v1alpha1/namespaces/"+ns+"/servers/doomed/repave", "-f", writeFile(t, "req.json", repaveRequest))
	if !strings.Contains(r.Stdout, `"kind":"Operation"`) {
		t.Fatalf("repave of %s/doomed answered no Operation:\n%s", ns, r)
	}
}

func waitNamespaceGone(t *testing.T, ns string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		n, err := world.ControlPlane.Kube.CoreV1().Namespaces().Get(testContext(t), ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("namespace %s is still %s: %+v", ns, n.Status.Phase, n.Status.Conditions)
	})
}

// expectNoLeftovers makes namespace ns again and checks that no
// stargate.io object of the deleted one is there.
func expectNoLeftovers(t *testing.T, ns string) {
	t.Helper()
	ctx := testContext(t)
	if _, err := world.ControlPlane.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	servers, err := client.StargateV1alpha1().Servers(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ops, err := client.StargateV1alpha1().Operations(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	profiles, err := client.StargateV1alpha1().ProvisioningProfiles(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(servers.Items) + len(ops.Items) + len(profiles.Items); n != 0 {
		t.Errorf("namespace %s made again holds %d stargate.io objects of the deleted one: servers %v, operations %v, profiles %v",
			ns, n, names(servers.Items), names(ops.Items), names(profiles.Items))
	}
}

func names[T any, P interface {
	*T
	GetName() string
}](items []T) []string {
	var out []string
	for i := range items {
		out = append(out, P(&items[i]).GetName())
	}
	return out
}

// bindClusterRole binds ClusterRole role to user in namespace ns.
func bindClusterRole(t *testing.T, ns, user, role string) {
	t.Helper()
	b := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	_, err := world.ControlPlane.Kube.RbacV1().RoleBindings(ns).Create(testContext(t), b, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
