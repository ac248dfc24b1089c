package repave

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	controllerNamespace      = "stargate-system"
	controllerServiceAccount = "stargate-controller"
)

// controllerUser is the ServiceAccount user of stargate-controller.
var controllerUser = "system:serviceaccount:" + controllerNamespace + ":" + controllerServiceAccount

// controllerKubeconfig applies the controller's ServiceAccount and RBAC
// from artifacts/controller and writes a kubeconfig with a token of that
// ServiceAccount: the tests run stargate-controller with exactly the
// permissions a deployment gives it, so a missing permission fails them.
func (e *testEnv) controllerKubeconfig(ctx context.Context, root string) (string, error) {
	cs, err := kubernetes.NewForConfig(e.world.ControlPlane.Config)
	if err != nil {
		return "", err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	dir := filepath.Join(root, "artifacts", "controller")
	if res := e.world.Kubectl.Run(ctx, "apply", "-f", filepath.Join(dir, "serviceaccount.yaml"), "-f", filepath.Join(dir, "rbac.yaml"),
		"-f", filepath.Join(dir, "admission-policy.yaml")); res.Err != nil {
		return "", fmt.Errorf("apply the controller's RBAC: %v", res)
	}
	expiry := int64((4 * time.Hour).Seconds())
	tr, err := cs.CoreV1().ServiceAccounts(controllerNamespace).CreateToken(ctx, controllerServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s: %w", controllerUser, err)
	}
	cfg := e.world.ControlPlane.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[controllerServiceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: controllerServiceAccount}
	kc.CurrentContext = "test"
	path := filepath.Join(e.dir, "controller.kubeconfig")
	return path, clientcmd.WriteToFile(*kc, path)
}

// The controller's RBAC is the least that works: the repave tests run with
// it, and it cannot list, watch or change what it only reads by name.
func TestControllerRBACIsNarrow(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "secrets", "-n", dc}, "yes"},
		{[]string{"list", "secrets", "-n", dc}, "no"},
		{[]string{"watch", "secrets", "-A"}, "no"},
		{[]string{"list", "configmaps", "-n", "kube-system"}, "no"},
		{[]string{"create", "secrets", "-n", dc}, "no"},
		{[]string{"create", "secrets", "-n", "kube-system"}, "yes"},
		{[]string{"list", "secrets", "-n", "kube-system"}, "yes"},
		{[]string{"watch", "secrets", "-n", "kube-system"}, "no"},
		{[]string{"update", "servers", "-n", dc}, "yes"},
		{[]string{"create", "servers", "-n", dc}, "no"},
		{[]string{"delete", "operations", "-n", dc}, "no"},
		// Datacenters are an admin's: the controller reads them only.
		{[]string{"list", "datacenters.stargate.io"}, "yes"},
		{[]string{"watch", "datacenters.stargate.io"}, "yes"},
		{[]string{"update", "datacenters.stargate.io"}, "no"},
		{[]string{"create", "datacenters.stargate.io"}, "no"},
		{[]string{"delete", "datacenters.stargate.io"}, "no"},
		// Only its own ClusterRoleBindings, by name.
		{[]string{"delete", "clusterrolebindings/stargate:kubelet-bootstrap"}, "yes"},
		{[]string{"update", "clusterrolebindings/stargate:kubelet-bootstrap"}, "yes"},
		{[]string{"delete", "clusterrolebindings/cluster-admin"}, "no"},
		{[]string{"update", "clusterrolebindings/system:node"}, "no"},
		{[]string{"list", "clusterrolebindings"}, "no"},
		{[]string{"bind", "clusterroles/cluster-admin"}, "no"},
	} {
		args := append([]string{"auth", "can-i", "--as=" + controllerUser}, c.args...)
		res := env.world.Kubectl.Run(context.Background(), args...)
		if got := strings.TrimSpace(res.Stdout); got != c.want {
			t.Errorf("kubectl %s: %q, want %q (%v)", strings.Join(args, " "), got, c.want, res.Err)
		}
	}
}

// Should the controller (a bug, or its stolen token) try to delete or
// patch a Node it did not make, such as an AKS node, the API server
// refuses it: the ValidatingAdmissionPolicy of artifacts/controller
// admits only Nodes and CiliumNodes labelled for a Server. Its own
// Nodes stay deletable.
func TestControllerTokenCannotTouchForeignNode(t *testing.T) {
	ctx := context.Background()
	admin, err := kubernetes.NewForConfig(env.world.ControlPlane.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", env.controllerKC)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	foreign := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "aks-nodepool1-vmss-attack", Labels: map[string]string{"kubernetes.azure.com/cluster": "mc"}}}
	own := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stargate-own-attack", Labels: map[string]string{"stargate.io/server": "x", "stargate.io/datacenter": dc}}}
	for _, n := range []*corev1.Node{foreign, own} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		name := n.Name
		t.Cleanup(func() { _ = admin.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	// The policy reaches the API server's admission a moment after it is
	// created.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = ctl.CoreV1().Nodes().Delete(ctx, foreign.Name, metav1.DeleteOptions{})
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "only the Nodes and CiliumNodes it made") {
			break
		}
		if err == nil {
			t.Fatalf("the controller's token deleted Node %s, which is not Stargate's", foreign.Name)
		}
		if time.Now().After(deadline) {
			t.Fatalf("delete of a foreign Node by the controller: %v, want Forbidden by the admission policy", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	patch := []byte(`{"spec":{"podCIDR":"10.244.250.0/24","podCIDRs":["10.244.250.0/24"]}}`)
	if _, err := ctl.CoreV1().Nodes().Patch(ctx, foreign.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("pod CIDR patch of a foreign Node by the controller: %v, want Forbidden", err)
	}
	if n, err := admin.CoreV1().Nodes().Get(ctx, foreign.Name, metav1.GetOptions{}); err != nil || n.Spec.PodCIDR != "" {
		t.Errorf("foreign Node after the attempts: %v, podCIDR %q", err, n.Spec.PodCIDR)
	}
	if _, err := ctl.CoreV1().Nodes().Patch(ctx, own.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Errorf("the controller may not patch its own Node: %v", err)
	}
	if err := ctl.CoreV1().Nodes().Delete(ctx, own.Name, metav1.DeleteOptions{}); err != nil {
		t.Errorf("the controller may not delete its own Node: %v", err)
	}
}
