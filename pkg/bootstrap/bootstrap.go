// Package bootstrap makes what a server needs to join the cluster through
// kubelet TLS bootstrap: a short-lived bootstrap token (as a
// k8s.io/cluster-bootstrap Secret), the RBAC that lets the token's group
// ask for and get node client certificates, the bootstrap kubeconfig, and
// the node bootstrap script with its payload.
package bootstrap

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// Group is the extra group of Stargate's bootstrap tokens; RBAC lets it
	// create node client CSRs, which stargate-controller approves only for
	// the node of the token's Server (never kube-controller-manager's
	// auto-approval, which would sign any node name).
	Group = "system:bootstrappers:stargate"
	// LabelOperation on a token Secret names the Operation that made it.
	LabelOperation = "stargate.io/operation"
	// LabelServer on a token Secret names the Server it is for.
	LabelServer = "stargate.io/server"
	// LabelDatacenter on a token Secret names the Server's namespace.
	LabelDatacenter = "stargate.io/datacenter"
	// TokenNamespace is where bootstrap token Secrets live.
	TokenNamespace = metav1.NamespaceSystem
)

// Token is a bootstrap token "id.secret". Only ID may be logged.
type Token struct {
	ID     string
	Secret string
}

// String is the bearer token. Never log it.
func (t Token) String() string { return bootstraputil.TokenFromIDAndSecret(t.ID, t.Secret) }

// NewToken generates a random token.
func NewToken() (Token, error) {
	s, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return Token{}, fmt.Errorf("generate bootstrap token: %w", err)
	}
	id, secret, _ := strings.Cut(s, ".")
	return Token{ID: id, Secret: secret}, nil
}

// SecretName is the Secret of the token with id.
func SecretName(id string) string { return bootstraputil.BootstrapTokenSecretName(id) }

// TokenSecret is the Secret that makes the token valid until expires, for
// authentication only, with Group as extra group.
func TokenSecret(t Token, expires time.Time, description string, labels map[string]string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName(t.ID), Namespace: TokenNamespace, Labels: labels},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		StringData: map[string]string{
			bootstrapapi.BootstrapTokenIDKey:               t.ID,
			bootstrapapi.BootstrapTokenSecretKey:           t.Secret,
			bootstrapapi.BootstrapTokenExpirationKey:       expires.UTC().Format(time.RFC3339),
			bootstrapapi.BootstrapTokenDescriptionKey:      description,
			bootstrapapi.BootstrapTokenUsageAuthentication: "true",
			bootstrapapi.BootstrapTokenExtraGroupsKey:      Group,
		},
	}
}

// TokenFromSecret reads the token back from its Secret.
func TokenFromSecret(s *corev1.Secret) (Token, error) {
	t := Token{ID: string(s.Data[bootstrapapi.BootstrapTokenIDKey]), Secret: string(s.Data[bootstrapapi.BootstrapTokenSecretKey])}
	if !bootstraputil.IsValidBootstrapToken(t.String()) {
		return Token{}, fmt.Errorf("secret %s/%s holds no valid bootstrap token", s.Namespace, s.Name)
	}
	return t, nil
}

// RBAC is what lets Group's tokens bootstrap kubelets: create CSRs (that
// stargate-controller decides), and lets nodes renew their own client
// certificates.
func RBAC() []*rbacv1.ClusterRoleBinding {
	group := []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: Group}}
	nodes := []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"}}
	crb := func(name, role string, subjects []rbacv1.Subject) *rbacv1.ClusterRoleBinding {
		return &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "stargate-controller"}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   subjects,
		}
	}
	return []*rbacv1.ClusterRoleBinding{
		crb("stargate:kubelet-bootstrap", "system:node-bootstrapper", group),
		crb("stargate:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", nodes),
	}
}

// ObsoleteRBAC names the ClusterRoleBindings that earlier versions made and
// that must not exist: stargate:node-autoapprove-bootstrap bound Group to
// kube-controller-manager's node client auto-approval, which approves a
// bootstrap token's CSR for any node name.
var ObsoleteRBAC = []string{"stargate:node-autoapprove-bootstrap"}

// EnsureRBAC creates the bindings of RBAC, or puts back their subjects and
// role when someone changed them, and deletes those of ObsoleteRBAC.
func EnsureRBAC(ctx context.Context, c client.Client) error {
	for _, name := range ObsoleteRBAC {
		old := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := c.Delete(ctx, old); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete obsolete ClusterRoleBinding %s: %w", name, err)
		}
	}
	for _, want := range RBAC() {
		var got rbacv1.ClusterRoleBinding
		err := c.Get(ctx, client.ObjectKeyFromObject(want), &got)
		switch {
		case apierrors.IsNotFound(err):
			if err := c.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create ClusterRoleBinding %s: %w", want.Name, err)
			}
		case err != nil:
			return fmt.Errorf("get ClusterRoleBinding %s: %w", want.Name, err)
		case got.RoleRef != want.RoleRef:
			// roleRef is immutable: replace the binding.
			if err := c.Delete(ctx, &got); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("replace ClusterRoleBinding %s: %w", want.Name, err)
			}
			if err := c.Create(ctx, want); err != nil {
				return fmt.Errorf("create ClusterRoleBinding %s: %w", want.Name, err)
			}
		default:
			if !sameSubjects(got.Subjects, want.Subjects) {
				got.Subjects = want.Subjects
				if err := c.Update(ctx, &got); err != nil {
					return fmt.Errorf("update ClusterRoleBinding %s: %w", want.Name, err)
				}
			}
		}
	}
	return nil
}

func sameSubjects(a, b []rbacv1.Subject) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Cluster is the API server workers join.
type Cluster struct {
	// Server is the API server URL as workers reach it.
	Server string
	// CAData is the PEM CA bundle that verifies the API server.
	CAData []byte
	// TLSServerName, when set, is the name the serving certificate is
	// checked against instead of Server's host (for API servers reached
	// through an address their certificate does not name).
	TLSServerName string
}

// Kubeconfig is the bootstrap kubeconfig a kubelet uses with token.
func Kubeconfig(cl Cluster, t Token) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: cl.Server, CertificateAuthorityData: cl.CAData, TLSServerName: cl.TLSServerName}
	cfg.AuthInfos["kubelet-bootstrap"] = &clientcmdapi.AuthInfo{Token: t.String()}
	cfg.Contexts["bootstrap"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "kubelet-bootstrap"}
	cfg.CurrentContext = "bootstrap"
	return clientcmd.Write(*cfg)
}
