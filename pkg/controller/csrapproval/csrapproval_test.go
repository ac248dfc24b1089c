package csrapproval

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

func TestCheck(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mk := func(cn string, dns []string, ips []string, usages ...certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
		tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}}, DNSNames: dns}
		for _, ip := range ips {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		if usages == nil {
			usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
		}
		return &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), Usages: usages}}
	}
	server := &v1.Server{Spec: v1.ServerSpec{Hostname: "w1", IPAddress: "192.0.2.10"}}
	tests := []struct {
		name string
		csr  *certificatesv1.CertificateSigningRequest
		node string
		want bool
	}{
		{"exact names", mk("system:node:w1", []string{"w1"}, []string{"192.0.2.10"}), "w1", true},
		{"ip only", mk("system:node:w1", nil, []string{"192.0.2.10"}), "w1", true},
		{"other ip", mk("system:node:w1", []string{"w1"}, []string{"192.0.2.11"}), "w1", false},
		{"other dns", mk("system:node:w1", []string{"evil.example.com"}, nil), "w1", false},
		{"no names", mk("system:node:w1", nil, nil), "w1", false},
		{"other subject", mk("system:node:w2", []string{"w1"}, nil), "w1", false},
		{"node is not the server", mk("system:node:w2", []string{"w2"}, nil), "w2", false},
		{"client auth usage", mk("system:node:w1", []string{"w1"}, nil, certificatesv1.UsageClientAuth, certificatesv1.UsageServerAuth), "w1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := Check(tt.csr, tt.node, server)
			if got != tt.want {
				t.Fatalf("Check = %v (%s), want %v", got, why, tt.want)
			}
		})
	}
}

// A Stargate bootstrap token buys exactly one identity: the node of the
// Server it was made for. Every other request made with it is denied.
func TestCheckClientOnlyTheTokensOwnNode(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	type req struct {
		cn     string
		orgs   []string
		dns    []string
		key    crypto.Signer
		usages []certificatesv1.KeyUsage
	}
	mk := func(r req) *certificatesv1.CertificateSigningRequest {
		if r.orgs == nil {
			r.orgs = []string{"system:nodes"}
		}
		if r.key == nil {
			r.key = p256
		}
		if r.usages == nil {
			r.usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
		}
		tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: r.cn, Organization: r.orgs}, DNSNames: r.dns}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, r.key)
		if err != nil {
			t.Fatal(err)
		}
		return &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), Usages: r.usages,
			SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName}}
	}
	server := &v1.Server{Spec: v1.ServerSpec{Hostname: "w1", IPAddress: "192.0.2.10"}}
	tests := []struct {
		name string
		req  req
		want bool
	}{
		{"its own node, as the kubelet asks", req{cn: "system:node:w1"}, true},
		{"its own node with RSA 2048 and key encipherment", req{cn: "system:node:w1", key: rsa2048,
			usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth}}, true},
		{"another node", req{cn: "system:node:aks-nodepool1-0"}, false},
		{"an admin", req{cn: "kubernetes-admin", orgs: []string{"system:masters"}}, false},
		{"own node in system:masters too", req{cn: "system:node:w1", orgs: []string{"system:nodes", "system:masters"}}, false},
		{"own node without system:nodes", req{cn: "system:node:w1", orgs: []string{"other"}}, false},
		{"with a SAN", req{cn: "system:node:w1", dns: []string{"w1"}}, false},
		{"server auth usage", req{cn: "system:node:w1", usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth, certificatesv1.UsageServerAuth}}, false},
		{"no client auth", req{cn: "system:node:w1", usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}}, false},
		{"key encipherment with ECDSA", req{cn: "system:node:w1",
			usages: []certificatesv1.KeyUsage{certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth}}, false},
		{"weak curve", req{cn: "system:node:w1", key: p224}, false},
		{"short RSA key", req{cn: "system:node:w1", key: rsa1024}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := CheckClient(mk(tt.req), server)
			if got != tt.want {
				t.Fatalf("CheckClient = %v (%s), want %v", got, why, tt.want)
			}
			if why == "" {
				t.Error("no reason given")
			}
		})
	}
	bad := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{Request: []byte("not PEM")}}
	if ok, _ := CheckClient(bad, server); ok {
		t.Error("a request that is not PEM was approved")
	}
}
