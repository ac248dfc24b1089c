package csrapproval

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
