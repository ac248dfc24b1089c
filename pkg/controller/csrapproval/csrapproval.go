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
//     leaves pending: approved only when they come from the node Stargate
//     bootstrapped for a Server (its status.nodeName) and ask for that
//     Server's hostname as the only DNS name and for IP addresses that are
//     the Server's ipAddress, inside its Datacenter's worker subnet, and
//     never in the Service range or the pod CIDR pool, never the
//     datacenter's gateway, never another Server's address; the API
//     server's names (kubernetes, *.svc, *.cluster.local) are never
//     approved. The Server is found by its hostname, never through the
//     Node's labels, which the kubelet sets itself; a Server outside its
//     datacenter (pkg/controller/datacenter) gets a denial. A CSR of a
//     Server whose node Stargate has not bootstrapped yet stays pending
//     until the repave records the node.
//
// Requests of other nodes and other tokens are left alone.
package csrapproval

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
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
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

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

// DefaultServiceCIDR is the Service range of AKS clusters by default.
const DefaultServiceCIDR = "10.0.0.0/16"

// Controller is the csrapproval reconciler group.
type Controller struct {
	// ServiceCIDR is the cluster's Service range (--service-cluster-ip-range).
	ServiceCIDR string
	// PodCIDRPool points at the pod CIDR pool flag of the ipam controller
	// (--pod-cidr-pool), so that both read the same value.
	PodCIDRPool *string
}

// New returns the controller; pool is the ipam controller's
// --pod-cidr-pool (nil: its default, 10.244.0.0/16).
func New(pool *string) *Controller {
	if pool == nil {
		def := "10.244.0.0/16"
		pool = &def
	}
	return &Controller{ServiceCIDR: DefaultServiceCIDR, PodCIDRPool: pool}
}

// Name implements manager.Controller.
func (c *Controller) Name() string { return "csrapproval" }

// AddFlags implements manager.Controller.
func (c *Controller) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.ServiceCIDR, "service-cluster-ip-range", c.ServiceCIDR,
		"The cluster's Service range (kube-apiserver's --service-cluster-ip-range; AKS's default is 10.0.0.0/16). "+
			"A kubelet serving certificate naming an address in it, or in --pod-cidr-pool, is denied. Must match stargate-apiserver's flag of the same name.")
}

// Networks parses the flags.
func (c *Controller) Networks() (Networks, error) {
	svc, err := netip.ParsePrefix(c.ServiceCIDR)
	if err != nil {
		return Networks{}, fmt.Errorf("--service-cluster-ip-range %q: %w", c.ServiceCIDR, err)
	}
	pool, err := netip.ParsePrefix(*c.PodCIDRPool)
	if err != nil {
		return Networks{}, fmt.Errorf("--pod-cidr-pool %q: %w", *c.PodCIDRPool, err)
	}
	return Networks{ServiceCIDR: svc.Masked(), PodCIDRPool: pool.Masked()}, nil
}

// SetupWithManager implements manager.Controller.
func (c *Controller) SetupWithManager(_ context.Context, mgr ctrl.Manager) error {
	nets, err := c.Networks()
	if err != nil {
		return err
	}
	r := &Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Networks: nets}
	kubelet := predicate.NewPredicateFuncs(func(o client.Object) bool {
		csr, ok := o.(*certificatesv1.CertificateSigningRequest)
		return ok && (csr.Spec.SignerName == certificatesv1.KubeletServingSignerName ||
			csr.Spec.SignerName == certificatesv1.KubeAPIServerClientKubeletSignerName)
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("csrapproval").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(kubelet)).
		// A serving CSR waits for the repave to record the node in the
		// Server's status.nodeName.
		Watches(&v1.Server{}, handler.EnqueueRequestsFromMapFunc(r.pendingServingCSRs)).
		Complete(r)
}

// pendingServingCSRs maps a Server with a node to the undecided serving
// CSRs of that node.
func (r *Reconciler) pendingServingCSRs(ctx context.Context, o client.Object) []reconcile.Request {
	s, ok := o.(*v1.Server)
	if !ok || s.Status.NodeName == "" {
		return nil
	}
	var list certificatesv1.CertificateSigningRequestList
	if err := r.Client.List(ctx, &list); err != nil {
		logf.FromContext(ctx).Error(err, "list CSRs for Server", "server", s.Namespace+"/"+s.Name)
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		c := &list.Items[i]
		if c.Spec.SignerName == certificatesv1.KubeletServingSignerName && c.Spec.Username == "system:node:"+s.Status.NodeName && !decided(c) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: c.Name}})
		}
	}
	return out
}

// Reconciler decides kubelet client and serving CSRs of Stargate nodes.
type Reconciler struct {
	Client client.Client
	// APIReader reads bootstrap token Secrets by name, around the cache
	// (the controller may not list or watch Secrets).
	APIReader client.Reader
	// Networks are the cluster's ranges no serving certificate may name.
	Networks Networks
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
	all, err := r.listServers(ctx)
	if err != nil {
		return err
	}
	var servers []v1.Server
	for _, s := range all {
		if s.Spec.Hostname == nodeName {
			servers = append(servers, s)
		}
	}
	switch len(servers) {
	case 0:
		return nil // not Stargate's node
	case 1:
		server := &servers[0]
		// A Server outside its datacenter is no node of Stargate's: its
		// names are not checked against a declared network.
		dc, in, err := datacenter.Resolve(ctx, r.Client, server)
		if err != nil {
			return err
		}
		if in.Status != metav1.ConditionTrue {
			return r.decide(ctx, csr, false, ReasonApproved, ReasonDenied,
				fmt.Sprintf("Server %s/%s of hostname %s is not in its datacenter (%s): %s", server.Namespace, server.Name, nodeName, in.Reason, in.Message))
		}
		if server.Status.NodeName == "" {
			// The repave records the node when it is Ready; the Server's
			// event brings the CSR back then.
			logf.FromContext(ctx).V(2).Info("serving CSR waits for the repave to record the node", "csr", csr.Name, "server", server.Namespace+"/"+server.Name)
			return nil
		}
		others := map[netip.Addr]string{}
		for _, s := range all {
			if s.Namespace == server.Namespace && s.Name == server.Name {
				continue
			}
			if a, err := netip.ParseAddr(s.Spec.IPAddress); err == nil {
				others[a.Unmap()] = s.Namespace + "/" + s.Name
			}
		}
		approve, why := Check(csr, nodeName, Policy{Server: server, Datacenter: dc, Networks: r.Networks, OtherServers: others})
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

// listServers lists the Servers of every namespace.
func (r *Reconciler) listServers(ctx context.Context) ([]v1.Server, error) {
	var list v1.ServerList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list Servers: %w", err)
	}
	return list.Items, nil
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

// Validate implements manager.Validator: the Service range and pod pool
// parse.
func (c *Controller) Validate() error {
	_, err := c.Networks()
	return err
}
