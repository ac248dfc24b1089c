// Package csrapproval decides the certificate requests of Stargate's
// nodes, so that a bootstrap token or a node gets exactly one identity:
//
//   - Node client certificates (signer kube-apiserver-client-kubelet)
//     asked for with a Stargate bootstrap token: approved only for
//     system:node:<hostname of the Server the token was made for>, in
//     group system:nodes, for client auth, without any SAN, with a key of
//     ECDSA P-256/P-384 or RSA of at least 2048 bits; everything else is
//     denied with the reason. No RBAC binding lets kube-controller-manager
//     auto-approve them (see bootstrap.RBAC).
//   - Kubelet serving certificates (signer kubelet-serving), which AKS
//     leaves pending: approved only when they come from the node itself and
//     ask for exactly the names its Server has, the hostname as DNS name
//     and the ipAddress as IP. The Server is found by its hostname, never
//     through the Node's labels, which the kubelet sets itself; a Server
//     outside its datacenter (pkg/controller/datacenter) gets a denial.
//
// Requests of other nodes and other tokens are left alone.
package csrapproval

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/controller/datacenter"
)

// Reasons on the CSR's Approved or Denied condition.
const (
	ReasonApproved       = "StargateServingSANsMatch"
	ReasonDenied         = "StargateServingSANsMismatch"
	ReasonClientApproved = "StargateBootstrapIdentityMatch"
	ReasonClientDenied   = "StargateBootstrapIdentityMismatch"
)

// Controller is the csrapproval reconciler group.
type Controller struct{}

// New returns the controller.
func New() *Controller { return &Controller{} }

// Name implements manager.Controller.
func (c *Controller) Name() string { return "csrapproval" }

// AddFlags implements manager.Controller; csrapproval has no flags.
func (c *Controller) AddFlags(*pflag.FlagSet) {}

// SetupWithManager implements manager.Controller.
func (c *Controller) SetupWithManager(_ context.Context, mgr ctrl.Manager) error {
	r := &Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader()}
	kubelet := predicate.NewPredicateFuncs(func(o client.Object) bool {
		csr, ok := o.(*certificatesv1.CertificateSigningRequest)
		return ok && (csr.Spec.SignerName == certificatesv1.KubeletServingSignerName ||
			csr.Spec.SignerName == certificatesv1.KubeAPIServerClientKubeletSignerName)
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("csrapproval").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(kubelet)).
		Complete(r)
}

// Reconciler decides kubelet client and serving CSRs of Stargate nodes.
type Reconciler struct {
	Client client.Client
	// APIReader reads bootstrap token Secrets by name, around the cache
	// (the controller may not list or watch Secrets).
	APIReader client.Reader
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var csr certificatesv1.CertificateSigningRequest
	if err := r.Client.Get(ctx, req.NamespacedName, &csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if decided(&csr) {
		return ctrl.Result{}, nil
	}
	switch csr.Spec.SignerName {
	case certificatesv1.KubeletServingSignerName:
		return ctrl.Result{}, r.serving(ctx, &csr)
	case certificatesv1.KubeAPIServerClientKubeletSignerName:
		return ctrl.Result{}, r.client(ctx, &csr)
	}
	return ctrl.Result{}, nil
}

// serving decides a kubelet serving CSR of a Stargate node.
func (r *Reconciler) serving(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	nodeName, ok := strings.CutPrefix(csr.Spec.Username, "system:node:")
	if !ok || !slices.Contains(csr.Spec.Groups, "system:nodes") {
		return nil
	}
	servers, err := r.serversWithHostname(ctx, nodeName)
	if err != nil {
		return err
	}
	switch len(servers) {
	case 0:
		return nil // not Stargate's node
	case 1:
		// A Server outside its datacenter is no node of Stargate's: its
		// names are not checked against a declared network.
		_, in, err := datacenter.Resolve(ctx, r.Client, &servers[0])
		if err != nil {
			return err
		}
		if in.Status != metav1.ConditionTrue {
			return r.decide(ctx, csr, false, ReasonApproved, ReasonDenied,
				fmt.Sprintf("Server %s/%s of hostname %s is not in its datacenter (%s): %s", servers[0].Namespace, servers[0].Name, nodeName, in.Reason, in.Message))
		}
		approve, why := Check(csr, nodeName, &servers[0])
		return r.decide(ctx, csr, approve, ReasonApproved, ReasonDenied, why)
	default:
		return r.decide(ctx, csr, false, ReasonApproved, ReasonDenied,
			fmt.Sprintf("hostname %s is claimed by several Servers (%s): no node gets a certificate for it", nodeName, serverNames(servers)))
	}
}

// client decides a node client CSR asked for with a Stargate bootstrap
// token.
func (r *Reconciler) client(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	tokenID, ok := strings.CutPrefix(csr.Spec.Username, "system:bootstrap:")
	if !ok || !slices.Contains(csr.Spec.Groups, bootstrap.Group) {
		return nil // not Stargate's token
	}
	server, why, err := r.serverOfToken(ctx, tokenID)
	if err != nil {
		return err
	}
	approve := false
	if server != nil {
		approve, why = CheckClient(csr, server)
	}
	return r.decide(ctx, csr, approve, ReasonClientApproved, ReasonClientDenied, why)
}

// serverOfToken finds the Server a bootstrap token was made for through
// the labels of its Secret, which only the controller writes. A nil
// Server comes with the reason to deny.
func (r *Reconciler) serverOfToken(ctx context.Context, tokenID string) (*v1.Server, string, error) {
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: bootstrap.TokenNamespace, Name: bootstrap.SecretName(tokenID)}, &secret)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Sprintf("bootstrap token %s no longer exists (its Operation ended)", tokenID), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("get the Secret of bootstrap token %s: %w", tokenID, err)
	}
	name, dc := secret.Labels[bootstrap.LabelServer], secret.Labels[bootstrap.LabelDatacenter]
	if name == "" || dc == "" {
		return nil, fmt.Sprintf("bootstrap token %s has Stargate's group but no Server labels: it was not made by Stargate", tokenID), nil
	}
	var server v1.Server
	err = r.Client.Get(ctx, types.NamespacedName{Namespace: dc, Name: name}, &server)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Sprintf("Server %s/%s of bootstrap token %s does not exist", dc, name, tokenID), nil
	}
	if err != nil {
		return nil, "", err
	}
	return &server, "", nil
}

// serversWithHostname lists the Servers, in every namespace, whose
// spec.hostname is name.
func (r *Reconciler) serversWithHostname(ctx context.Context, name string) ([]v1.Server, error) {
	var list v1.ServerList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list Servers: %w", err)
	}
	var out []v1.Server
	for _, s := range list.Items {
		if s.Spec.Hostname == name {
			out = append(out, s)
		}
	}
	return out, nil
}

func serverNames(servers []v1.Server) string {
	var names []string
	for _, s := range servers {
		names = append(names, s.Namespace+"/"+s.Name)
	}
	return strings.Join(names, ", ")
}

// decide approves or denies csr with the reason for each outcome.
func (r *Reconciler) decide(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, approve bool, approved, denied, why string) error {
	cond := certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: denied, Message: why,
		LastUpdateTime: metav1.Now(),
	}
	if approve {
		cond.Type, cond.Reason = certificatesv1.CertificateApproved, approved
	}
	csr.Status.Conditions = append(csr.Status.Conditions, cond)
	if err := r.Client.SubResource("approval").Update(ctx, csr); err != nil {
		return fmt.Errorf("decide CSR %s: %w", csr.Name, err)
	}
	logf.FromContext(ctx).Info("decided kubelet CSR", "csr", csr.Name, "signer", csr.Spec.SignerName, "user", csr.Spec.Username, "approved", approve, "why", why)
	return nil
}

// parseRequest returns the CSR's request, signed by its own key, or why
// not.
func parseRequest(csr *certificatesv1.CertificateSigningRequest) (*x509.CertificateRequest, string) {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, "spec.request is not a PEM certificate request"
	}
	x, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Sprintf("spec.request cannot be parsed: %v", err)
	}
	if err := x.CheckSignature(); err != nil {
		return nil, fmt.Sprintf("spec.request is not signed by its own key: %v", err)
	}
	return x, ""
}

func decided(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return true
		}
	}
	return false
}

// Check says whether the serving CSR of nodeName fits server, and why.
func Check(csr *certificatesv1.CertificateSigningRequest, nodeName string, server *v1.Server) (bool, string) {
	if server.Spec.Hostname != nodeName {
		return false, fmt.Sprintf("node %s is not the hostname %s of Server %s/%s", nodeName, server.Spec.Hostname, server.Namespace, server.Name)
	}
	x, why := parseRequest(csr)
	if x == nil {
		return false, why
	}
	if x.Subject.CommonName != "system:node:"+nodeName || !slices.Equal(x.Subject.Organization, []string{"system:nodes"}) {
		return false, fmt.Sprintf("subject %q is not system:node:%s in system:nodes", x.Subject.String(), nodeName)
	}
	if len(x.EmailAddresses) > 0 || len(x.URIs) > 0 {
		return false, "the request asks for email or URI names"
	}
	if len(x.DNSNames)+len(x.IPAddresses) == 0 {
		return false, "the request names no DNS name or IP address"
	}
	for _, d := range x.DNSNames {
		if d != server.Spec.Hostname {
			return false, fmt.Sprintf("DNS name %q is not the Server's hostname %q", d, server.Spec.Hostname)
		}
	}
	for _, ip := range x.IPAddresses {
		if ip.String() != server.Spec.IPAddress {
			return false, fmt.Sprintf("IP address %s is not the Server's ipAddress %s", ip, server.Spec.IPAddress)
		}
	}
	hasServerAuth := false
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageServerAuth:
			hasServerAuth = true
		case certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return false, fmt.Sprintf("usage %q is not one a kubelet serving certificate needs", u)
		}
	}
	if !hasServerAuth {
		return false, "the request lacks usage server auth"
	}
	return true, fmt.Sprintf("names match Server %s/%s (hostname %s, ipAddress %s)", server.Namespace, server.Name, server.Spec.Hostname, server.Spec.IPAddress)
}
