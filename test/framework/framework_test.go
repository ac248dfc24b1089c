package framework

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindBinariesSaysHowToBuildThem(t *testing.T) {
	_, err := FindBinaries(t.TempDir())
	if err == nil {
		t.Fatal("FindBinaries of an empty directory succeeded")
	}
	for _, want := range []string{"hack/install-test-bins.sh", "kube-apiserver", "etcd", "kubectl"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestRepoRootHoldsTheModule(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !declaresModule(data, ModulePath) {
		t.Fatalf("%s/go.mod does not declare module %s", root, ModulePath)
	}
}

// The aggregator dials localhost but checks the certificate against the
// Service name; both must verify against the CA that becomes the caBundle.
func TestServingCertVerifiesForServiceNameAndLoopback(t *testing.T) {
	ca, err := NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.ServingCert("stargate-apiserver",
		[]string{StargateServiceName + "." + StargateNamespace + ".svc", "localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(kp.CertPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	for _, name := range []string{"stargate-apiserver.stargate-system.svc", "localhost"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "elsewhere.example", Roots: roots}); err == nil {
		t.Error("certificate verifies for a name it was not issued for")
	}
}
