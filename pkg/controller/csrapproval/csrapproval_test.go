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
	"net/netip"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

func servingPolicy() Policy {
	return Policy{
		Server: &v1.Server{
			ObjectMeta: metav1.ObjectMeta{Namespace: "dc-east", Name: "w1"},
			Spec:       v1.ServerSpec{Hostname: "w1", IPAddress: "192.0.2.10"},
			Status:     v1.ServerStatus{NodeName: "w1"},
		},
		Datacenter: &v1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-east"}, Spec: v1.DatacenterSpec{
			Namespace: "dc-east", WorkerSubnet: "192.0.2.0/24", AgentGateway: "192.0.2.1", Router: v1.DatacenterRouter{IP: "100.64.0.1"},
		}},
		Networks: Networks{ServiceCIDR: netip.MustParsePrefix("10.0.0.0/16"), PodCIDRPool: netip.MustParsePrefix("10.244.0.0/16")},
		OtherServers: map[netip.Addr]string{
			netip.MustParseAddr("192.0.2.11"): "dc-east/w2",
			netip.MustParseAddr("10.0.0.1"):   "dc-odd/in-service-range",
		},
	}
}

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
	tests := []struct {
		name   string
		csr    *certificatesv1.CertificateSigningRequest
		node   string
		mutate func(*Policy)
		want   bool
		reason string // a part of the reason
	}{
		{"exact names", mk("system:node:w1", []string{"w1"}, []string{"192.0.2.10"}), "w1", nil, true, "names match"},
		{"ip only", mk("system:node:w1", nil, []string{"192.0.2.10"}), "w1", nil, true, "names match"},
		{"another address of the subnet", mk("system:node:w1", []string{"w1"}, []string{"192.0.2.12"}), "w1", nil, false, "not the Server's ipAddress"},
		{"another Server's address", mk("system:node:w1", []string{"w1"}, []string{"192.0.2.11"}), "w1", nil, false, "another Server, dc-east/w2"},
		{"the datacenter's gateway", mk("system:node:w1", []string{"w1"}, []string{"192.0.2.1"}), "w1", nil, false, "agentGateway"},
		{"outside the worker subnet", mk("system:node:w1", []string{"w1"}, []string{"198.51.100.10"}), "w1", nil, false, "not inside worker subnet 192.0.2.0/24"},
		{"the API server's ClusterIP", mk("system:node:w1", []string{"w1"}, []string{"10.0.0.1"}), "w1", nil, false, "Service range 10.0.0.0/16"},
		{"a pod address", mk("system:node:w1", []string{"w1"}, []string{"10.244.3.7"}), "w1", nil, false, "pod CIDR pool 10.244.0.0/16"},
		{"spec.ipAddress moved outside the subnet", mk("system:node:w1", []string{"w1"}, []string{"203.0.113.10"}), "w1",
			func(p *Policy) { p.Server.Spec.IPAddress = "203.0.113.10" }, false, "not inside worker subnet"},
		{"spec.ipAddress moved into the Service range", mk("system:node:w1", []string{"w1"}, []string{"10.0.0.10"}), "w1",
			func(p *Policy) { p.Server.Spec.IPAddress = "10.0.0.10" }, false, "Service range"},
		{"other dns", mk("system:node:w1", []string{"evil.example.com"}, nil), "w1", nil, false, "not the Server's hostname"},
		{"kubernetes", mk("system:node:w1", []string{"w1", "kubernetes"}, nil), "w1", nil, false, "API server"},
		{"kubernetes.default.svc.cluster.local", mk("system:node:w1", []string{"kubernetes.default.svc.cluster.local"}, nil), "w1", nil, false, "API server"},
		{"a Service name", mk("system:node:w1", []string{"vault.secrets.svc"}, nil), "w1", nil, false, "API server"},
		{"hostname that is an API server name", mk("system:node:kubernetes.default", []string{"kubernetes.default"}, nil), "kubernetes.default",
			func(p *Policy) {
				p.Server.Spec.Hostname, p.Server.Status.NodeName = "kubernetes.default", "kubernetes.default"
			}, false, "API server"},
		{"no names", mk("system:node:w1", nil, nil), "w1", nil, false, "no DNS name or IP"},
		{"other subject", mk("system:node:w2", []string{"w1"}, nil), "w1", nil, false, "subject"},
		{"node is not the server", mk("system:node:w2", []string{"w2"}, nil), "w2", nil, false, "not the hostname"},
		{"node not bootstrapped by Stargate", mk("system:node:w1", []string{"w1"}, []string{"192.0.2.10"}), "w1",
			func(p *Policy) { p.Server.Status.NodeName = "" }, false, "not the node Stargate bootstrapped"},
		{"no datacenter", mk("system:node:w1", []string{"w1"}, []string{"192.0.2.10"}), "w1",
			func(p *Policy) { p.Datacenter = nil }, false, "no Datacenter"},
		{"client auth usage", mk("system:node:w1", []string{"w1"}, nil, certificatesv1.UsageClientAuth, certificatesv1.UsageServerAuth), "w1", nil, false, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := servingPolicy()
			if tt.mutate != nil {
				tt.mutate(&p)
			}
			got, why := Check(tt.csr, tt.node, p)
			if got != tt.want {
				t.Fatalf("Check = %v (%s), want %v", got, why, tt.want)
			}
			if !strings.Contains(why, tt.reason) {
				t.Errorf("reason %q does not say %q", why, tt.reason)
			}
		})
	}
}

func TestIsAPIServerName(t *testing.T) {
	for _, n := range []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "KUBERNETES.default.", "x.y.svc", "cluster.local", "a.cluster.local"} {
		if !IsAPIServerName(n) {
			t.Errorf("IsAPIServerName(%q) = false", n)
		}
	}
	for _, n := range []string{"w1", "worker-1.dc-east.example.com", "kubernetesx", "svcs"} {
		if IsAPIServerName(n) {
			t.Errorf("IsAPIServerName(%q) = true", n)
		}
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
