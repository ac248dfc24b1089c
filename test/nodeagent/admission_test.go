package nodeagent_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned"
)

// patchStatus reads the Server as the admin, lets mutate change its
// status, and sends the whole status as a merge patch with client, as an
// agent would.
func patchStatus(t *testing.T, client versioned.Interface, f *nodeFixture, mutate func(*v1alpha1.ServerStatus)) error {
	t.Helper()
	st := getState(t, f).Server.Status.DeepCopy()
	mutate(st)
	body, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = client.StargateV1alpha1().Servers(dc).Patch(ctx, f.Node, types.MergePatchType, body,
		metav1.PatchOptions{FieldManager: "admission-test"}, "status")
	return err
}

// nodeLayer sets NodeRoutesHealthy and the node route layer, as the agent does.
func nodeLayer(msg string) func(*v1alpha1.ServerStatus) {
	return func(st *v1alpha1.ServerStatus) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: "NodeRoutesHealthy", Status: metav1.ConditionTrue, Reason: "RoutesHealthy", Message: msg})
		now := metav1.Now()
		layer := v1alpha1.RouteLayerStatus{Layer: v1alpha1.RouteLayerNode, Healthy: true, Reason: "RoutesHealthy", Message: msg, LastChecked: &now}
		for i := range st.Routes {
			if st.Routes[i].Layer == v1alpha1.RouteLayerNode {
				st.Routes[i] = layer
				return
			}
		}
		st.Routes = append(st.Routes, layer)
	}
}

func wantForbidden(t *testing.T, what string, err error, says ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: allowed, want Forbidden", what)
		return
	}
	if !apierrors.IsForbidden(err) {
		t.Errorf("%s: %v, want Forbidden", what, err)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: message %q does not say %q", what, err.Error(), s)
		}
	}
	t.Logf("%s: %v", what, err)
}

// TestAgentTokenMayWriteOnlyItsNodeLayer writes with the agent's bound
// token through the kube-apiserver, first with the RBAC of
// artifacts/nodeagent, then with RBAC that would allow far more, to show
// that NodeAgentRestriction in stargate-apiserver holds on its own.
func TestAgentTokenMayWriteOnlyItsNodeLayer(t *testing.T) {
	w := getWorld(t)
	own := newNodeFixture(t, w, podCIDR, podCIDR)
	other := newNodeFixture(t, w, otherCIDR, otherCIDR)
	agent, err := versioned.NewForConfig(own.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("the bound token names the node", func(t *testing.T) {
		kube, err := kubernetes.NewForConfig(own.Config)
		if err != nil {
			t.Fatal(err)
		}
		ssr, err := kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SelfSubjectReview: %v", err)
		}
		u := ssr.Status.UserInfo
		if u.Username != "system:serviceaccount:"+agentNS+":"+agentSA {
			t.Errorf("user %q, want the agent's ServiceAccount", u.Username)
		}
		if got := u.Extra["authentication.kubernetes.io/node-name"]; len(got) != 1 || got[0] != own.Node {
			t.Errorf("extra node-name = %q, want [%s]; extras %v", got, own.Node, u.Extra)
		}
	})

	t.Run("own node layer", func(t *testing.T) {
		if err := patchStatus(t, agent, own, nodeLayer("own node layer")); err != nil {
			t.Fatalf("agent writing its own node layer: %v", err)
		}
		if st := getState(t, own); st.Layer == nil || st.Layer.Message != "own node layer" {
			t.Errorf("node layer after the write: %+v", st.Layer)
		}
	})

	t.Run("another node's Server", func(t *testing.T) {
		err := patchStatus(t, agent, other, nodeLayer("not mine"))
		wantForbidden(t, "status of another node's Server", err, `belongs to node "`+other.Node+`"`, `node agent on node "`+own.Node+`"`)
	})

	t.Run("the spec, with the artifact's RBAC", func(t *testing.T) {
		srv := getState(t, own).Server
		srv.Spec.IPAddress = "192.0.2.99"
		_, err := agent.StargateV1alpha1().Servers(dc).Update(ctx, srv, metav1.UpdateOptions{})
		wantForbidden(t, "spec update (RBAC)", err, `cannot update resource "servers"`)
	})

	t.Run("an unbound token of the same ServiceAccount", func(t *testing.T) {
		tr, err := w.ControlPlane.Kube.CoreV1().ServiceAccounts(agentNS).CreateToken(ctx, agentSA,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600))}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		unbound, err := versioned.NewForConfig(tokenConfig(w, tr.Status.Token))
		if err != nil {
			t.Fatal(err)
		}
		err = patchStatus(t, unbound, own, nodeLayer("no node"))
		wantForbidden(t, "write with a token naming no node", err, "the token names no node", "authentication.kubernetes.io/node-name")
	})

	// Far more RBAC than the agent has: admission alone must now refuse.
	kube := w.ControlPlane.Kube
	tooMuch := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "test-nodeagent-too-much"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"stargate.io"}, Resources: []string{"*"}, Verbs: []string{"*"}}},
	}
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, tooMuch, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: tooMuch.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: tooMuch.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: agentNS, Name: agentSA}},
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
		_ = kube.RbacV1().ClusterRoles().Delete(context.Background(), tooMuch.Name, metav1.DeleteOptions{})
	})

	t.Run("the spec, with RBAC allowing it", func(t *testing.T) {
		var err error
		// RBAC changes reach both servers' authorizers within moments.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			srv := getState(t, own).Server
			srv.Spec.IPAddress = "192.0.2.99"
			_, err = agent.StargateV1alpha1().Servers(dc).Update(ctx, srv, metav1.UpdateOptions{})
			if err == nil || !strings.Contains(err.Error(), "cannot update resource") {
				break
			}
		}
		wantForbidden(t, "spec update (admission)", err, `node agent on node "`+own.Node+`" may only update servers/status of its own Server, not update servers `+own.Node)
		if ip := getState(t, own).Server.Spec.IPAddress; ip != workerIP {
			t.Errorf("spec.ipAddress is %s, want it unchanged (%s)", ip, workerIP)
		}
	})

	t.Run("other conditions and layers of its own Server, with RBAC allowing it", func(t *testing.T) {
		ready := func(st *v1alpha1.ServerStatus) {
			meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: "AgentSaysSo", Message: "x"})
		}
		wantForbidden(t, "Ready condition", patchStatus(t, agent, own, ready), "status.conditions[type=Ready]")

		azure := func(st *v1alpha1.ServerStatus) { st.Routes[0].Healthy, st.Routes[0].Reason = false, "AgentSaysSo" }
		wantForbidden(t, "azure layer", patchStatus(t, agent, own, azure), "status.routes[layer=azure]")

		dropAzure := func(st *v1alpha1.ServerStatus) { st.Routes = st.Routes[1:]; nodeLayer("x")(st) }
		wantForbidden(t, "dropping the azure layer", patchStatus(t, agent, own, dropAzure), "status.routes[layer=azure]")

		phase := func(st *v1alpha1.ServerStatus) { st.Phase, st.PodCIDR = v1alpha1.ServerFailed, otherCIDR }
		wantForbidden(t, "phase and pod CIDR", patchStatus(t, agent, own, phase), "status.phase, status.podCIDR")

		wantForbidden(t, "another node's Server", patchStatus(t, agent, other, nodeLayer("not mine")), `belongs to node "`+other.Node+`"`)

		err := agent.StargateV1alpha1().Servers(dc).Delete(ctx, own.Node, metav1.DeleteOptions{})
		wantForbidden(t, "delete", err, "not delete servers "+own.Node)

		_, err = agent.StargateV1alpha1().Servers(dc).Repave(ctx, own.Node, &v1alpha1.RepaveRequest{Reason: "agent"}, metav1.CreateOptions{})
		wantForbidden(t, "repave", err, "not create servers/repave")

		if err := patchStatus(t, agent, own, nodeLayer("still allowed")); err != nil {
			t.Errorf("own node layer with the wider RBAC: %v", err)
		}
		st := getState(t, own)
		if c := st.Server.Status.Conditions; len(c) == 0 || c[0].Type != "Ready" || c[0].Status != metav1.ConditionTrue {
			t.Errorf("conditions changed: %+v", c)
		}
		if st.Server.Status.Phase != v1alpha1.ServerReady || st.Server.Status.PodCIDR != podCIDR {
			t.Errorf("phase %s podCIDR %s changed", st.Server.Status.Phase, st.Server.Status.PodCIDR)
		}
	})
}
