package csrapproval

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"slices"

	certificatesv1 "k8s.io/api/certificates/v1"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// MinRSABits is the smallest RSA key a node client certificate may have.
// The kubelet itself asks with ECDSA P-256.
const MinRSABits = 2048

// CheckClient says whether the node client CSR, asked for with a bootstrap
// token made for server, asks for exactly the identity of that Server's
// node, and why.
func CheckClient(csr *certificatesv1.CertificateSigningRequest, server *v1.Server) (bool, string) {
	want := "system:node:" + server.Spec.Hostname
	x, why := parseRequest(csr)
	if x == nil {
		return false, why
	}
	if x.Subject.CommonName != want || !slices.Equal(x.Subject.Organization, []string{"system:nodes"}) {
		return false, fmt.Sprintf("subject %q is not %s in system:nodes, the only identity the bootstrap token of Server %s/%s may have",
			x.Subject.String(), want, server.Namespace, server.Name)
	}
	if len(x.DNSNames)+len(x.IPAddresses)+len(x.EmailAddresses)+len(x.URIs) > 0 {
		return false, "a node client certificate has no subject alternative names"
	}
	isRSA := false
	switch k := x.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return false, fmt.Sprintf("ECDSA curve %s is not P-256 or P-384", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return false, fmt.Sprintf("RSA key of %d bits is shorter than %d", k.N.BitLen(), MinRSABits)
		}
		isRSA = true
	default:
		return false, fmt.Sprintf("key type %T is not ECDSA or RSA", x.PublicKey)
	}
	hasClientAuth := false
	for _, u := range csr.Spec.Usages {
		switch {
		case u == certificatesv1.UsageClientAuth:
			hasClientAuth = true
		case u == certificatesv1.UsageDigitalSignature:
		case u == certificatesv1.UsageKeyEncipherment && isRSA:
		default:
			return false, fmt.Sprintf("usage %q is not one a node client certificate needs", u)
		}
	}
	if !hasClientAuth {
		return false, "the request lacks usage client auth"
	}
	return true, fmt.Sprintf("%s is the node of Server %s/%s, whose bootstrap token asked", want, server.Namespace, server.Name)
}
