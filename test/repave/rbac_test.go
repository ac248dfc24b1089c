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
	if res := e.world.Kubectl.Run(ctx, "apply", "-f", filepath.Join(dir, "serviceaccount.yaml"), "-f", filepath.Join(dir, "rbac.yaml")); res.Err != nil {
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
	} {
		args := append([]string{"auth", "can-i", "--as=" + controllerUser}, c.args...)
		res := env.world.Kubectl.Run(context.Background(), args...)
		if got := strings.TrimSpace(res.Stdout); got != c.want {
			t.Errorf("kubectl %s: %q, want %q (%v)", strings.Join(args, " "), got, c.want, res.Err)
		}
	}
}
