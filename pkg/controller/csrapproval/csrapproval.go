// Package csrapproval approves kubelet serving certificate requests of
// Stargate's nodes, which AKS leaves pending (it approves client CSRs
// only). A request is approved only when it comes from the node itself and
// asks for exactly the names the Server has: its hostname as DNS name and
// its ipAddress as IP. A Stargate node asking for anything else is denied;
// requests of other nodes are left alone.
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

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// Reasons on the CSR's Approved or Denied condition.
const (
	ReasonApproved = "StargateServingSANsMatch"
	ReasonDenied   = "StargateServingSANsMismatch"
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
	r := &Reconciler{Client: mgr.GetClient()}
	serving := predicate.NewPredicateFuncs(func(o client.Object) bool {
		csr, ok := o.(*certificatesv1.CertificateSigningRequest)
		return ok && csr.Spec.SignerName == certificatesv1.KubeletServingSignerName
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("csrapproval").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(serving)).
		Complete(r)
}

// Reconciler decides kubelet serving CSRs of Stargate nodes.
type Reconciler struct {
	Client client.Client
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var csr certificatesv1.CertificateSigningRequest
	if err := r.Client.Get(ctx, req.NamespacedName, &csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if csr.Spec.SignerName != certificatesv1.KubeletServingSignerName || decided(&csr) {
		return ctrl.Result{}, nil
	}
	nodeName, ok := strings.CutPrefix(csr.Spec.Username, "system:node:")
	if !ok || !slices.Contains(csr.Spec.Groups, "system:nodes") {
		return ctrl.Result{}, nil
	}
	var node corev1.Node
	if err := r.Client.Get(ctx, types.NamespacedName{Name: nodeName}, &node); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	serverName, dc := node.Labels[stargate.LabelServer], node.Labels[stargate.LabelDatacenter]
	if serverName == "" || dc == "" {
		return ctrl.Result{}, nil // not Stargate's node
	}
	var server v1.Server
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: dc, Name: serverName}, &server); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	approve, why := Check(&csr, nodeName, &server)
	cond := certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: ReasonDenied, Message: why,
		LastUpdateTime: metav1.Now(),
	}
	if approve {
		cond.Type, cond.Reason = certificatesv1.CertificateApproved, ReasonApproved
	}
	csr.Status.Conditions = append(csr.Status.Conditions, cond)
	if err := r.Client.SubResource("approval").Update(ctx, &csr); err != nil {
		return ctrl.Result{}, fmt.Errorf("decide CSR %s: %w", csr.Name, err)
	}
	logf.FromContext(ctx).Info("decided kubelet serving CSR", "csr", csr.Name, "node", nodeName, "approved", approve, "why", why)
	return ctrl.Result{}, nil
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
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return false, "spec.request is not a PEM certificate request"
	}
	x, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return false, fmt.Sprintf("spec.request cannot be parsed: %v", err)
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
