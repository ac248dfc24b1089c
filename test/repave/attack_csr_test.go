package repave

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/controller/csrapproval"
)

// Someone who got hold of a Stargate bootstrap token (it travels to the
// host over SSH) asks for a kubelet client certificate of another node,
// e.g. an AKS node, to act as it. Stargate denies it, and nothing else
// approves it: no binding gives the token's group kube-controller-manager's
// node client auto-approval. The same token still gets its own Server's
// node identity.
func TestBootstrapTokenCannotGetCertificateForAnotherNode(t *testing.T) {
	const name = "worker-25"
	env.server(t, name, env.sim.Workers[24], nil)
	env.startController(t, "csr-attack")
	ctx := context.Background()

	tok, err := bootstrap.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	secret := bootstrap.TokenSecret(tok, time.Now().Add(10*time.Minute), "test: stolen token", map[string]string{
		bootstrap.LabelServer: name, bootstrap.LabelDatacenter: dc, bootstrap.LabelOperation: "test-op",
	})
	if err := env.c.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.c.Delete(context.Background(), secret) })

	cfg := rest.AnonymousClientConfig(env.world.ControlPlane.Config)
	cfg.BearerToken = tok.String()
	thief, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	// The stolen token asks for another node's identity.
	other := env.askClientCert(t, thief, "system:node:aks-nodepool1-12345678-vmss000000")
	denied := env.waitCSR(t, other, time.Minute)
	if c := csrCondition(denied, certificatesv1.CertificateDenied); c == nil || c.Reason != csrapproval.ReasonClientDenied {
		t.Fatalf("CSR for another node's identity: conditions %+v, want Denied with reason %s", denied.Status.Conditions, csrapproval.ReasonClientDenied)
	}
	if csrCondition(denied, certificatesv1.CertificateApproved) != nil || len(denied.Status.Certificate) > 0 {
		t.Fatalf("CSR for another node's identity was approved or signed: %+v", denied.Status)
	}
	t.Logf("denied: %s", csrCondition(denied, certificatesv1.CertificateDenied).Message)

	// Its own node's identity is what it is for.
	own := env.askClientCert(t, thief, "system:node:"+name)
	approved := env.waitCSR(t, own, time.Minute)
	if c := csrCondition(approved, certificatesv1.CertificateApproved); c == nil || c.Reason != csrapproval.ReasonClientApproved {
		t.Fatalf("CSR for the token's own node: conditions %+v, want Approved with reason %s", approved.Status.Conditions, csrapproval.ReasonClientApproved)
	}

	// No binding hands the token's group to the built-in auto-approval.
	var crbs rbacv1.ClusterRoleBindingList
	if err := env.c.List(ctx, &crbs); err != nil {
		t.Fatal(err)
	}
	for _, b := range crbs.Items {
		for _, s := range b.Subjects {
			if s.Kind == rbacv1.GroupKind && s.Name == bootstrap.Group && b.RoleRef.Name == "system:certificates.k8s.io:certificatesigningrequests:nodeclient" {
				t.Errorf("ClusterRoleBinding %s gives %s the node client auto-approval", b.Name, bootstrap.Group)
			}
		}
	}
}

// askClientCert creates a node client CSR for cn with c's credentials.
func (e *testEnv) askClientCert(t *testing.T, c kubernetes.Interface, cn string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "attack-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}
	// stargate-controller binds the token's group to system:node-bootstrapper
	// when it starts; the authorizer sees the binding a moment later.
	var created *certificatesv1.CertificateSigningRequest
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		created, err = c.CertificatesV1().CertificateSigningRequests().Create(context.Background(), csr, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatalf("create CSR for %s with the bootstrap token: %v", cn, err)
		}
	}
	t.Cleanup(func() {
		_ = e.c.Delete(context.Background(), &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: created.Name}})
	})
	return created.Name
}

// waitCSR waits until the CSR is denied, or approved and signed.
func (e *testEnv) waitCSR(t *testing.T, name string, timeout time.Duration) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var csr certificatesv1.CertificateSigningRequest
		if err := e.c.Get(context.Background(), client.ObjectKey{Name: name}, &csr); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		if csrCondition(&csr, certificatesv1.CertificateDenied) != nil ||
			(csrCondition(&csr, certificatesv1.CertificateApproved) != nil && len(csr.Status.Certificate) > 0) {
			return &csr
		}
		if time.Now().After(deadline) {
			t.Fatalf("CSR %s undecided after %s: %+v", name, timeout, csr.Status.Conditions)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func csrCondition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequestCondition {
	for i := range csr.Status.Conditions {
		if csr.Status.Conditions[i].Type == t && csr.Status.Conditions[i].Status == corev1.ConditionTrue {
			return &csr.Status.Conditions[i]
		}
	}
	return nil
}
