package repave

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"strings"
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

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/controller/csrapproval"
	"github.com/stargate-k8s/stargate/test/dcsim"
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

// servingAttacker is a Server whose node Stargate bootstrapped (its
// status.nodeName is set as a repave sets it) and a client that is that
// node: system:node:<name> in system:nodes, as its kubelet authenticates.
// A second Server, victim, holds another address of the worker subnet.
func (e *testEnv) servingAttacker(t *testing.T, name, ip, victim, victimIP string) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	s := e.server(t, name, nil, func(s *v1.Server) { s.Spec.IPAddress = ip })
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), s) })
	v := e.server(t, victim, nil, func(s *v1.Server) { s.Spec.IPAddress = victimIP })
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), v) })
	e.setNodeName(t, name)
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(e.world.ControlPlane.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:node:" + name, Groups: []string{"system:nodes", "system:authenticated"}}
	node, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return node
}

// setNodeName records name as the node Stargate bootstrapped for Server
// name, as the end of a repave does.
func (e *testEnv) setNodeName(t *testing.T, name string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var s v1.Server
		if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: dc, Name: name}, &s); err != nil {
			t.Fatal(err)
		}
		s.Status.NodeName = name
		err := e.c.Status().Update(context.Background(), &s)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) || time.Now().After(deadline) {
			t.Fatalf("set status.nodeName of Server %s: %v", name, err)
		}
	}
}

// askServingCert creates a kubelet serving CSR of node name, for dns and
// ips, with the node's credentials c.
func (e *testEnv) askServingCert(t *testing.T, c kubernetes.Interface, name string, dns []string, ips ...string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}}, DNSNames: dns}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "serving-attack-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}
	created, err := c.CertificatesV1().CertificateSigningRequests().Create(context.Background(), csr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create serving CSR of %s as the node: %v", name, err)
	}
	t.Cleanup(func() {
		_ = e.c.Delete(context.Background(), &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: created.Name}})
	})
	return created.Name
}

// assertServingDenied waits for the CSR's decision and fails unless it is
// a denial by Stargate whose message says want.
func (e *testEnv) assertServingDenied(t *testing.T, name, want string) {
	t.Helper()
	got := e.waitCSR(t, name, time.Minute)
	c := csrCondition(got, certificatesv1.CertificateDenied)
	if c == nil || c.Reason != csrapproval.ReasonDenied {
		t.Fatalf("CSR %s: conditions %+v, want Denied with reason %s", name, got.Status.Conditions, csrapproval.ReasonDenied)
	}
	if csrCondition(got, certificatesv1.CertificateApproved) != nil || len(got.Status.Certificate) > 0 {
		t.Fatalf("CSR %s was approved or signed: %+v", name, got.Status)
	}
	if !strings.Contains(c.Message, want) {
		t.Errorf("denial %q does not say %q", c.Message, want)
	}
	t.Logf("denied: %s", c.Message)
}

// A Stargate node asks for a serving certificate for an address of the
// Service range, 10.0.0.1 being the API server's ClusterIP: with it, it
// could answer as the API server to whoever it can reach. Denied, naming
// the range. Its own address is approved, but only once Stargate has
// recorded the node as bootstrapped for its Server.
func TestServingCSRForServiceIPIsDenied(t *testing.T) {
	const name, ip = "serving-svc", "192.0.2.240"
	env.startController(t, "csr-serving-svc")
	ctx := context.Background()
	s := env.server(t, name, nil, func(s *v1.Server) { s.Spec.IPAddress = ip })
	t.Cleanup(func() { _ = env.c.Delete(context.Background(), s) })
	cfg := rest.CopyConfig(env.world.ControlPlane.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:node:" + name, Groups: []string{"system:nodes", "system:authenticated"}}
	node, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	// Before the repave recorded the node: no certificate, even for its
	// own names.
	own := env.askServingCert(t, node, name, []string{name}, ip)
	time.Sleep(3 * time.Second)
	var pending certificatesv1.CertificateSigningRequest
	if err := env.c.Get(ctx, client.ObjectKey{Name: own}, &pending); err != nil {
		t.Fatal(err)
	}
	if csrCondition(&pending, certificatesv1.CertificateApproved) != nil {
		t.Fatalf("serving CSR of %s approved before Stargate recorded its node: %+v", name, pending.Status.Conditions)
	}
	env.setNodeName(t, name)
	approved := env.waitCSR(t, own, time.Minute)
	if c := csrCondition(approved, certificatesv1.CertificateApproved); c == nil || c.Reason != csrapproval.ReasonApproved {
		t.Fatalf("serving CSR for the node's own names: conditions %+v, want Approved with reason %s", approved.Status.Conditions, csrapproval.ReasonApproved)
	}

	for _, svcIP := range []string{"10.0.0.1", "10.0.3.7"} {
		env.assertServingDenied(t, env.askServingCert(t, node, name, []string{name}, ip, svcIP), "Service range 10.0.0.0/16")
	}
	// A pod's address is no node's either.
	env.assertServingDenied(t, env.askServingCert(t, node, name, nil, "10.244.1.5"), "pod CIDR pool 10.244.0.0/16")
	// Nor is an address outside the datacenter's worker subnet (here one
	// in the AKS VNet's range).
	env.assertServingDenied(t, env.askServingCert(t, node, name, nil, "10.224.0.4"), "not inside worker subnet 192.0.2.0/24")
}

// A Stargate node asks for a serving certificate for the address of
// another Server (of its own datacenter), or of the datacenter's router,
// to intercept the API server's connections to that kubelet. Denied,
// naming the holder.
func TestServingCSRForAnotherServersIPIsDenied(t *testing.T) {
	const name, ip, victim, victimIP = "serving-thief", "192.0.2.242", "serving-victim", "192.0.2.243"
	env.startController(t, "csr-serving-other")
	node := env.servingAttacker(t, name, ip, victim, victimIP)
	env.assertServingDenied(t, env.askServingCert(t, node, name, []string{name}, victimIP), "another Server, "+dc+"/"+victim)
	env.assertServingDenied(t, env.askServingCert(t, node, name, nil, dcsim.RouterSubnetIP), "agentGateway")
	// Another node's name is not its own either.
	env.assertServingDenied(t, env.askServingCert(t, node, name, []string{victim}, ip), "not the Server's hostname")
}

// A Stargate node asks for a serving certificate carrying the API
// server's names. Denied, whatever else it asks for.
func TestServingCSRWithAPIServerNameIsDenied(t *testing.T) {
	const name, ip = "serving-apiname", "192.0.2.244"
	env.startController(t, "csr-serving-apiname")
	node := env.servingAttacker(t, name, ip, "serving-apiname-other", "192.0.2.245")
	for _, dns := range []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} {
		env.assertServingDenied(t, env.askServingCert(t, node, name, []string{name, dns}, ip), "API server")
	}
}
