package apiserver

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/klog/v2"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
)

// Keys of the serving certificate Secret (a kubernetes.io/tls Secret plus
// the CA that signed the certificate and the CA's key).
const (
	SecretKeyCACert = "ca.crt"
	SecretKeyCAKey  = "ca.key"
)

// Lifetimes of what ServingCertOptions makes. A certificate is renewed once
// less than a third of its lifetime is left: the serving certificate
// (1 year) about 4 months before it expires, the CA (10 years) about 3
// years before.
const (
	caLifetime      = 10 * 365 * 24 * time.Hour
	servingLifetime = 365 * 24 * time.Hour
	// ServingCertCheckInterval is how often a running server checks that
	// the certificate is still fresh and the APIService still carries its
	// CA.
	ServingCertCheckInterval = 10 * time.Minute
)

// ServingCertOptions make stargate-apiserver its own CA and serving
// certificate, kept in a Secret so that every replica serves the same one,
// and put that CA into the APIService's caBundle, so that the aggregator
// verifies the server without anyone running openssl.
type ServingCertOptions struct {
	// Secret is namespace/name of the kubernetes.io/tls Secret that holds
	// the CA (ca.crt, ca.key) and the serving certificate (tls.crt,
	// tls.key). Empty: off.
	Secret string
	// APIService is the APIService whose spec.caBundle gets the CA
	// (v1alpha1.stargate.io). Empty: the CA is only kept in the Secret.
	APIService string
	// Service is the name of the Service the APIService points at, in the
	// Secret's namespace; the certificate is for SERVICE.NAMESPACE.svc.
	Service string
}

// NewServingCertOptions returns the defaults: off.
func NewServingCertOptions() *ServingCertOptions {
	return &ServingCertOptions{Service: "stargate-apiserver"}
}

// AddFlags adds --serving-cert-secret, --apiservice-name and
// --serving-cert-service.
func (o *ServingCertOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Secret, "serving-cert-secret", o.Secret,
		"namespace/name of a kubernetes.io/tls Secret holding this server's CA (ca.crt, ca.key) and serving certificate (tls.crt, tls.key). "+
			"The server creates it when missing, renews the certificate when less than a third of its lifetime is left, serves it "+
			"(written into --cert-dir) and checks it every 10 minutes; all replicas share it. Needs get, create and update on that Secret. "+
			"Not together with --tls-cert-file.")
	fs.StringVar(&o.APIService, "apiservice-name", o.APIService,
		"APIService (e.g. v1alpha1.stargate.io) whose spec.caBundle is kept equal to the CA of --serving-cert-secret, "+
			"so that the aggregator verifies this server; spec.insecureSkipTLSVerify is cleared. Needs get and update on that APIService.")
	fs.StringVar(&o.Service, "serving-cert-service", o.Service,
		"Name of the Service in the namespace of --serving-cert-secret that the APIService points at; the certificate "+
			"of --serving-cert-secret is for SERVICE.NAMESPACE.svc (and .svc.cluster.local).")
}

// Validate checks the flags against the serving options.
func (o *ServingCertOptions) Validate(s *genericoptions.SecureServingOptionsWithLoopback) []error {
	if o.Secret == "" {
		if o.APIService != "" {
			return []error{fmt.Errorf("--apiservice-name %q: needs --serving-cert-secret, the CA of which it publishes", o.APIService)}
		}
		return nil
	}
	var errs []error
	if ns, name, ok := strings.Cut(o.Secret, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		errs = append(errs, fmt.Errorf("--serving-cert-secret %q: want namespace/name", o.Secret))
	}
	if o.Service == "" {
		errs = append(errs, errors.New("--serving-cert-service: must not be empty with --serving-cert-secret"))
	}
	if s != nil && (s.ServerCert.CertKey.CertFile != "" || s.ServerCert.CertKey.KeyFile != "") {
		errs = append(errs, fmt.Errorf("--serving-cert-secret %q and --tls-cert-file/--tls-private-key-file: give one or the other", o.Secret))
	}
	return errs
}

// DNSNames are the names the serving certificate is for.
func (o *ServingCertOptions) DNSNames(extra []string) []string {
	ns, _, _ := strings.Cut(o.Secret, "/")
	names := []string{o.Service + "." + ns + ".svc", o.Service + "." + ns + ".svc.cluster.local", o.Service + "." + ns, o.Service}
	for _, n := range extra {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// ServingCert is what a Secret holds: the CA and the serving certificate,
// PEM encoded.
type ServingCert struct {
	CACert, CAKey []byte
	Cert, Key     []byte
}

// EnsureServingCert returns cur when it is complete, consistent, for
// names and not due for renewal at now; else it returns a renewed one
// (the same CA when that is still fresh) and true.
func EnsureServingCert(cur ServingCert, names []string, now time.Time) (ServingCert, bool, error) {
	ca, caKey, caErr := parseCA(cur)
	if caErr == nil && fresh(ca, now) {
		if servingOK(cur, ca, names, now) == nil {
			return cur, false, nil
		}
	} else {
		old := ca
		var err error
		if ca, caKey, cur.CACert, cur.CAKey, err = newCA(now); err != nil {
			return ServingCert{}, false, err
		}
		// A renewed CA goes into the caBundle together with the old one
		// while that is valid: replicas still serving a certificate of the
		// old CA stay verifiable until they take the new one.
		if caErr == nil && now.Before(old.NotAfter) {
			cur.CACert = append(cur.CACert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.Raw})...)
		}
	}
	var err error
	if cur.Cert, cur.Key, err = newServing(ca, caKey, names, now); err != nil {
		return ServingCert{}, false, err
	}
	return cur, true, nil
}

// fresh says whether more than a third of c's lifetime is left at now.
func fresh(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return now.After(c.NotBefore.Add(-time.Hour)) && c.NotAfter.Sub(now) > life/3
}

func parseCA(s ServingCert) (*x509.Certificate, crypto.Signer, error) {
	ca, err := parseCert(s.CACert)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", SecretKeyCACert, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("%s: not a CA", SecretKeyCACert)
	}
	key, err := keyutil.ParsePrivateKeyPEM(s.CAKey)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", SecretKeyCAKey, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !publicKeysEqual(signer.Public(), ca.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not belong to %s", SecretKeyCAKey, SecretKeyCACert)
	}
	return ca, signer, nil
}

// servingOK checks that the serving certificate is signed by ca, fresh,
// for names, and goes with its key.
func servingOK(s ServingCert, ca *x509.Certificate, names []string, now time.Time) error {
	c, err := parseCert(s.Cert)
	if err != nil {
		return err
	}
	if err := c.CheckSignatureFrom(ca); err != nil {
		return err
	}
	if !fresh(c, now) {
		return errors.New("due for renewal")
	}
	if !slices.Equal(c.DNSNames, names) {
		return fmt.Errorf("for %q, want %q", c.DNSNames, names)
	}
	key, err := keyutil.ParsePrivateKeyPEM(s.Key)
	if err != nil {
		return err
	}
	if signer, ok := key.(crypto.Signer); !ok || !publicKeysEqual(signer.Public(), c.PublicKey) {
		return errors.New("tls.key does not belong to tls.crt")
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func parseCert(p []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE")
	}
	return x509.ParseCertificate(b.Bytes)
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: keyutil.ECPrivateKeyBlockType, Bytes: der}), nil
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newCA(now time.Time) (*x509.Certificate, crypto.Signer, []byte, []byte, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	sn, err := serialNumber()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("stargate-apiserver-ca@%d", now.Unix())},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return ca, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func newServing(ca *x509.Certificate, caKey crypto.Signer, names []string, now time.Time) ([]byte, []byte, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	sn, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(servingLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// servingCertKeeper keeps the Secret, the files the server serves and the
// APIService's caBundle in step.
type servingCertKeeper struct {
	o         *ServingCertOptions
	names     []string
	kube      kubernetes.Interface
	agg       aggregator.Interface
	certFile  string
	keyFile   string
	ns, name  string
	published []byte // the caBundle last seen on the APIService
}

// Start makes or loads the certificate, points the serving options at
// it (files in --cert-dir) and publishes the CA into the APIService; it
// then keeps doing so every ServingCertCheckInterval until ctx ends. A
// missing APIService (applied after the server started) is retried.
func (o *ServingCertOptions) Start(ctx context.Context, kubeconfig string, s *genericoptions.SecureServingOptionsWithLoopback, alternateDNS []string) error {
	if o.Secret == "" {
		return nil
	}
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return fmt.Errorf("--serving-cert-secret %s: client of the kube-apiserver: %w", o.Secret, err)
	}
	k := &servingCertKeeper{o: o, names: o.DNSNames(alternateDNS)}
	k.ns, k.name, _ = strings.Cut(o.Secret, "/")
	if k.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if k.agg, err = aggregator.NewForConfig(cfg); err != nil {
		return err
	}
	dir := s.ServerCert.CertDirectory
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--cert-dir %s: %w", dir, err)
	}
	k.certFile, k.keyFile = filepath.Join(dir, "serving-cert-secret.crt"), filepath.Join(dir, "serving-cert-secret.key")
	// The first pass must succeed: without a certificate there is nothing
	// to serve. Conflicts with other replicas starting are retried.
	var caPEM []byte
	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		if caPEM, err = k.syncSecret(ctx); err != nil {
			klog.ErrorS(err, "Serving certificate Secret not ready yet", "secret", o.Secret)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("--serving-cert-secret %s: could not load or create the serving certificate within a minute (see the log above): %w", o.Secret, err)
	}
	s.ServerCert.CertKey.CertFile, s.ServerCert.CertKey.KeyFile = k.certFile, k.keyFile
	if err := k.publish(ctx, caPEM); err != nil {
		klog.ErrorS(err, "Cannot publish the serving CA into the APIService yet; retrying", "apiService", o.APIService)
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		caPEM, err := k.syncSecret(ctx)
		if err != nil {
			klog.ErrorS(err, "Cannot check the serving certificate Secret", "secret", o.Secret)
			return
		}
		if err := k.publish(ctx, caPEM); err != nil {
			klog.ErrorS(err, "Cannot publish the serving CA into the APIService", "apiService", o.APIService)
		}
	}, ServingCertCheckInterval)
	// Until the APIService has the CA, look more often.
	go func() {
		_ = wait.PollUntilContextCancel(ctx, 5*time.Second, false, func(ctx context.Context) (bool, error) {
			if o.APIService == "" || k.published != nil {
				return true, nil
			}
			sec, err := k.kube.CoreV1().Secrets(k.ns).Get(ctx, k.name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			if err := k.publish(ctx, sec.Data[SecretKeyCACert]); err != nil {
				klog.V(2).InfoS("APIService not updated yet", "apiService", o.APIService, "err", err)
				return false, nil
			}
			return true, nil
		})
	}()
	return nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

// syncSecret loads the Secret, renews what is missing or due, writes it
// back (create, or update with its resourceVersion, so that of two replicas
// one wins and the other takes its result next time), writes the serving
// files when they changed, and returns the CA.
func (k *servingCertKeeper) syncSecret(ctx context.Context) ([]byte, error) {
	secrets := k.kube.CoreV1().Secrets(k.ns)
	sec, err := secrets.Get(ctx, k.name, metav1.GetOptions{})
	missing := apierrors.IsNotFound(err)
	if err != nil && !missing {
		return nil, fmt.Errorf("get Secret %s/%s: %w", k.ns, k.name, err)
	}
	if missing {
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: k.name, Namespace: k.ns, Labels: map[string]string{"app.kubernetes.io/name": "stargate-apiserver"}},
			Type:       corev1.SecretTypeTLS,
		}
	}
	cur := ServingCert{CACert: sec.Data[SecretKeyCACert], CAKey: sec.Data[SecretKeyCAKey], Cert: sec.Data[corev1.TLSCertKey], Key: sec.Data[corev1.TLSPrivateKeyKey]}
	next, changed, err := EnsureServingCert(cur, k.names, time.Now())
	if err != nil {
		return nil, err
	}
	if changed {
		if sec.Type != corev1.SecretTypeTLS && sec.Type != "" {
			return nil, fmt.Errorf("Secret %s/%s has type %q, want %s", k.ns, k.name, sec.Type, corev1.SecretTypeTLS)
		}
		sec.Data = map[string][]byte{SecretKeyCACert: next.CACert, SecretKeyCAKey: next.CAKey, corev1.TLSCertKey: next.Cert, corev1.TLSPrivateKeyKey: next.Key}
		if missing {
			_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		} else {
			_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		}
		if err != nil {
			// Another replica wrote it first: take its result next pass.
			return nil, fmt.Errorf("write Secret %s/%s: %w", k.ns, k.name, err)
		}
		klog.InfoS("Wrote a new serving certificate", "secret", k.ns+"/"+k.name, "dnsNames", k.names, "newCA", !bytes.Equal(cur.CACert, next.CACert))
	}
	if err := writeIfChanged(k.certFile, next.Cert, 0o644); err != nil {
		return nil, err
	}
	if err := writeIfChanged(k.keyFile, next.Key, 0o600); err != nil {
		return nil, err
	}
	return next.CACert, nil
}

// writeIfChanged replaces path by data through a rename, so the server's
// file watcher never reads half a file.
func writeIfChanged(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// publish makes the APIService's caBundle caPEM and clears
// insecureSkipTLSVerify (the API refuses both together).
func (k *servingCertKeeper) publish(ctx context.Context, caPEM []byte) error {
	if k.o.APIService == "" {
		return nil
	}
	if len(caPEM) == 0 {
		return errors.New("no CA to publish")
	}
	apis := k.agg.ApiregistrationV1().APIServices()
	as, err := apis.Get(ctx, k.o.APIService, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get APIService %s: %w", k.o.APIService, err)
	}
	if bytes.Equal(as.Spec.CABundle, caPEM) && !as.Spec.InsecureSkipTLSVerify {
		k.published = caPEM
		return nil
	}
	as.Spec.CABundle, as.Spec.InsecureSkipTLSVerify = caPEM, false
	if _, err := apis.Update(ctx, as, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set spec.caBundle of APIService %s: %w", k.o.APIService, err)
	}
	k.published = caPEM
	klog.InfoS("APIService now verifies this server with the CA of the serving certificate Secret", "apiService", k.o.APIService, "secret", k.o.Secret)
	return nil
}
