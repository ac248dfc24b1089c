package apiserver

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	genericoptions "k8s.io/apiserver/pkg/server/options"
)

var testNames = (&ServingCertOptions{Secret: "stargate-system/stargate-apiserver-serving-cert", Service: "stargate-apiserver"}).DNSNames(nil)

// verify checks s the way the aggregator does: the serving certificate
// chains to the CA and is for the Service's DNS name.
func verify(t *testing.T, s ServingCert, at time.Time) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CACert) {
		t.Fatal("ca.crt holds no certificate")
	}
	pair, err := tls.X509KeyPair(s.Cert, s.Key)
	if err != nil {
		t.Fatalf("tls.crt and tls.key: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "stargate-apiserver.stargate-system.svc", Roots: pool, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("serving certificate does not verify as stargate-apiserver.stargate-system.svc: %v", err)
	}
}

func TestEnsureServingCertMakesAVerifiableCertificateAndKeepsIt(t *testing.T) {
	now := time.Now()
	first, changed, err := EnsureServingCert(ServingCert{}, testNames, now)
	if err != nil || !changed {
		t.Fatalf("empty Secret: changed=%v err=%v, want a new certificate", changed, err)
	}
	verify(t, first, now)
	again, changed, err := EnsureServingCert(first, testNames, now.Add(24*time.Hour))
	if err != nil || changed || string(again.Cert) != string(first.Cert) {
		t.Fatalf("a fresh certificate was replaced (changed=%v, err=%v): every start would change the CA of all replicas", changed, err)
	}
}

func TestEnsureServingCertRenewsBeforeExpiryWithTheSameCA(t *testing.T) {
	now := time.Now()
	first, _, err := EnsureServingCert(ServingCert{}, testNames, now)
	if err != nil {
		t.Fatal(err)
	}
	// 9 months on, less than a third of the year is left.
	later := now.Add(270 * 24 * time.Hour)
	next, changed, err := EnsureServingCert(first, testNames, later)
	if err != nil || !changed {
		t.Fatalf("9 months on: changed=%v err=%v, want a renewed serving certificate", changed, err)
	}
	if string(next.CACert) != string(first.CACert) || string(next.Cert) == string(first.Cert) {
		t.Error("renewal must keep the CA (the APIService's caBundle) and replace the serving certificate")
	}
	verify(t, next, later)
	// 7 years on, the CA itself is renewed.
	late := now.Add(7 * 365 * 24 * time.Hour)
	ca, changed, err := EnsureServingCert(next, testNames, late)
	if err != nil || !changed || string(ca.CACert) == string(next.CACert) {
		t.Fatalf("7 years on: changed=%v err=%v, want a new CA", changed, err)
	}
	verify(t, ca, late)
	// The caBundle keeps the old CA, still valid, so that a replica that
	// serves the previous certificate stays verifiable until it renews.
	oldPool := x509.NewCertPool()
	oldPool.AppendCertsFromPEM(ca.CACert)
	prev, err := x509.ParseCertificate(mustPair(t, next).Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prev.Verify(x509.VerifyOptions{Roots: oldPool, CurrentTime: later, DNSName: testNames[0]}); err != nil {
		t.Errorf("after a CA renewal the caBundle no longer verifies the previous serving certificate: %v", err)
	}
}

func mustPair(t *testing.T, s ServingCert) tls.Certificate {
	t.Helper()
	p, err := tls.X509KeyPair(s.Cert, s.Key)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEnsureServingCertReplacesWhatDoesNotFit(t *testing.T) {
	now := time.Now()
	good, _, err := EnsureServingCert(ServingCert{}, testNames, now)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := EnsureServingCert(ServingCert{}, testNames, now)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		in      ServingCert
		names   []string
		sameCA  bool
		comment string
	}{
		"names changed":         {good, append([]string{"other.stargate-system.svc"}, testNames...), true, "--serving-cert-service changed"},
		"foreign serving cert":  {ServingCert{CACert: good.CACert, CAKey: good.CAKey, Cert: other.Cert, Key: other.Key}, testNames, true, "tls.crt not signed by ca.crt"},
		"key of another cert":   {ServingCert{CACert: good.CACert, CAKey: good.CAKey, Cert: good.Cert, Key: other.Key}, testNames, true, "tls.key not tls.crt's"},
		"CA key of another CA":  {ServingCert{CACert: good.CACert, CAKey: other.CAKey, Cert: good.Cert, Key: good.Key}, testNames, false, "ca.key not ca.crt's"},
		"garbage":               {ServingCert{CACert: []byte("x"), CAKey: []byte("y"), Cert: []byte("z"), Key: []byte("w")}, testNames, false, "unparseable"},
		"serving cert, no CA":   {ServingCert{Cert: good.Cert, Key: good.Key}, testNames, false, "ca.crt missing"},
		"CA is a serving cert ": {ServingCert{CACert: good.Cert, CAKey: good.Key, Cert: good.Cert, Key: good.Key}, testNames, false, "ca.crt not a CA"},
	} {
		got, changed, err := EnsureServingCert(c.in, c.names, now)
		if err != nil || !changed {
			t.Errorf("%s (%s): changed=%v err=%v, want a new certificate", name, c.comment, changed, err)
			continue
		}
		if (string(got.CACert) == string(good.CACert)) != c.sameCA {
			t.Errorf("%s (%s): CA kept=%v, want %v", name, c.comment, !c.sameCA, c.sameCA)
		}
		verify(t, got, now)
	}
}

func TestServingCertFlagsAreCheckedAtStart(t *testing.T) {
	for _, c := range []struct {
		o       ServingCertOptions
		tlsFile string
		want    string
	}{
		{ServingCertOptions{Secret: "no-slash", Service: "s"}, "", `--serving-cert-secret "no-slash": want namespace/name`},
		{ServingCertOptions{Secret: "ns/", Service: "s"}, "", "want namespace/name"},
		{ServingCertOptions{Secret: "ns/a/b", Service: "s"}, "", "want namespace/name"},
		{ServingCertOptions{Secret: "ns/n"}, "", "--serving-cert-service: must not be empty"},
		{ServingCertOptions{Secret: "ns/n", Service: "s"}, "/etc/tls.crt", "give one or the other"},
		{ServingCertOptions{APIService: "v1alpha1.stargate.io", Service: "s"}, "", "--apiservice-name \"v1alpha1.stargate.io\": needs --serving-cert-secret"},
		{ServingCertOptions{Secret: "ns/n", APIService: "v1alpha1.stargate.io", Service: "s"}, "", ""},
	} {
		s := genericoptions.NewSecureServingOptions().WithLoopback()
		s.ServerCert.CertKey.CertFile = c.tlsFile
		errs := c.o.Validate(s)
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		got := strings.Join(msgs, "; ")
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%+v with --tls-cert-file=%q: %q, want %q", c.o, c.tlsFile, got, c.want)
		}
	}
}
