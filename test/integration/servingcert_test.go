package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"

	"github.com/stargate-k8s/stargate/test/framework"
)

const servingCertSecret = "stargate-apiserver-serving-cert"

// stargateAPIServerKubeconfig applies the shipped namespace, ServiceAccount
// and RBAC of stargate-apiserver and writes a kubeconfig with a token of
// that ServiceAccount: the server then runs with exactly what a deployment
// gives it.
func stargateAPIServerKubeconfig(t *testing.T, ctx context.Context) string {
	t.Helper()
	dir := filepath.Join(world.RepoRoot, "artifacts")
	kubectl(t, "apply", "-f", filepath.Join(dir, "namespace.yaml"), "-f", filepath.Join(dir, "serviceaccount.yaml"), "-f", filepath.Join(dir, "rbac-apiserver.yaml"))
	expiry := int64(time.Hour.Seconds())
	tr, err := world.ControlPlane.Kube.CoreV1().ServiceAccounts(framework.StargateNamespace).CreateToken(ctx, "stargate-apiserver",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := world.ControlPlane.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["stargate-apiserver"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "stargate-apiserver"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "stargate-apiserver.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// servingCertServer is a stargate-apiserver run as the shipped deployment
// runs it: --serving-cert-secret and --apiservice-name, no certificate
// files, its ServiceAccount's token.
type servingCertServer struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startServingCertServer(t *testing.T, kubeconfig, dir string) *servingCertServer {
	t.Helper()
	log := filepath.Join(dir, "stargate-apiserver.log")
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(world.StargateBinary,
		"--secure-port="+strconv.Itoa(world.Stargate.Port),
		"--bind-address=127.0.0.1",
		"--serving-cert-secret="+framework.StargateNamespace+"/"+servingCertSecret,
		"--apiservice-name="+framework.StargateAPIService,
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--data-dir="+filepath.Join(dir, "data"),
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
		"--kubeconfig="+kubeconfig,
	)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &servingCertServer{cmd: cmd, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); f.Close(); close(s.done) }()
	t.Cleanup(s.stop)
	return s
}

func (s *servingCertServer) stop() {
	framework.StopProcess(s.cmd.Process, s.done, syscall.SIGTERM, 30*time.Second)
}

func (s *servingCertServer) logTail() string {
	b, _ := os.ReadFile(s.log)
	lines := strings.Split(string(b), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// apiServiceState says whether the APIService is Available, and why not.
func apiServiceState(ctx context.Context, agg aggregator.Interface) (*apiregistrationv1.APIService, bool, string) {
	as, err := agg.ApiregistrationV1().APIServices().Get(ctx, framework.StargateAPIService, metav1.GetOptions{})
	if err != nil {
		return nil, false, err.Error()
	}
	for _, c := range as.Status.Conditions {
		if c.Type == apiregistrationv1.Available {
			return as, c.Status == apiregistrationv1.ConditionTrue, c.Reason + ": " + c.Message
		}
	}
	return as, false, "no Available condition"
}

// stargate-apiserver, started as the shipped Deployment starts it, makes
// its CA and serving certificate, keeps them in its Secret and writes the
// CA into the APIService, which becomes Available with TLS verified (no
// insecureSkipTLSVerify); a restart keeps the same CA. A server on the
// Service's endpoint whose certificate that CA did not sign (a stand-in for
// whoever takes over the endpoints) is refused by the aggregator.
func TestAPIServiceVerifiesTheServersOwnCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	agg, err := aggregator.NewForConfig(world.ControlPlane.Config)
	if err != nil {
		t.Fatal(err)
	}
	kube := world.ControlPlane.Kube
	kubeconfig := stargateAPIServerKubeconfig(t, ctx)

	// The shipped APIService, as kubectl apply -k artifacts/ makes it,
	// replaces the test world's registration (its caBundle is the test
	// world's CA): no caBundle, no insecureSkipTLSVerify.
	shipped, err := os.ReadFile(filepath.Join(world.RepoRoot, "artifacts", "apiservice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(shipped, []byte("\n  insecureSkipTLSVerify: true")) {
		t.Fatal("artifacts/apiservice.yaml skips TLS verification")
	}
	if err := world.Stargate.Stop(); err != nil {
		t.Fatal(err)
	}
	// Afterwards the test world's server and registration come back for
	// the other tests.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if !world.Stargate.Running() {
			if err := world.Stargate.Start(ctx); err != nil {
				t.Errorf("restart the test world's stargate-apiserver: %v", err)
				return
			}
		}
		if err := world.Stargate.Register(ctx); err != nil {
			t.Errorf("register the test world's stargate-apiserver again: %v", err)
		}
	})
	if err := agg.ApiregistrationV1().APIServices().Delete(ctx, framework.StargateAPIService, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	_ = kube.CoreV1().Secrets(framework.StargateNamespace).Delete(ctx, servingCertSecret, metav1.DeleteOptions{})
	kubectl(t, "apply", "-f", filepath.Join(world.RepoRoot, "artifacts", "apiservice.yaml"))
	// The shipped Service selects pods on port 443; the test world's
	// ExternalName Service of the same name points at loopback, on the
	// server's port.
	kubectl(t, "patch", "apiservice", framework.StargateAPIService, "--type=merge",
		"-p", fmt.Sprintf(`{"spec":{"service":{"port":%d}}}`, world.Stargate.Port))

	dir := t.TempDir()
	srv := startServingCertServer(t, kubeconfig, dir)
	var as *apiregistrationv1.APIService
	start := time.Now()
	eventually(t, 3*time.Minute, func() error {
		select {
		case <-srv.done:
			t.Fatalf("stargate-apiserver exited:\n%s", srv.logTail())
		default:
		}
		var ok bool
		var why string
		if as, ok, why = apiServiceState(ctx, agg); !ok {
			return fmt.Errorf("APIService %s not Available: %s (caBundle %d bytes)\n%s", framework.StargateAPIService, why, len(as.Spec.CABundle), srv.logTail())
		}
		return nil
	})
	t.Logf("APIService Available %s after the server started", time.Since(start).Round(100*time.Millisecond))
	if as.Spec.InsecureSkipTLSVerify {
		t.Fatal("APIService Available with insecureSkipTLSVerify")
	}
	sec, err := kube.CoreV1().Secrets(framework.StargateNamespace).Get(ctx, servingCertSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the server kept no Secret %s: %v", servingCertSecret, err)
	}
	if sec.Type != corev1.SecretTypeTLS || !bytes.Equal(sec.Data["ca.crt"], as.Spec.CABundle) {
		t.Fatalf("Secret %s: type %s; its ca.crt is the APIService's caBundle: %v", sec.Name, sec.Type, bytes.Equal(sec.Data["ca.crt"], as.Spec.CABundle))
	}
	// Served through the aggregator, which verified the certificate.
	eventually(t, time.Minute, func() error {
		if r := world.Kubectl.Run(ctx, "get", "servers", "-A"); r.Err != nil {
			return fmt.Errorf("through the aggregator: %s", r)
		}
		return nil
	})

	// A TLS client with the caBundle verifies the server as the Service's
	// DNS name, as the aggregator does; under another name it does not.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(as.Spec.CABundle) {
		t.Fatal("caBundle holds no certificate")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(world.Stargate.Port))
	dial := func(name string) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(framework.StargateServiceName + "." + framework.StargateNamespace + ".svc"); err != nil {
		t.Errorf("TLS with the caBundle as %s.%s.svc: %v", framework.StargateServiceName, framework.StargateNamespace, err)
	}
	if err := dial("kubernetes.default.svc"); err == nil {
		t.Error("the serving certificate also verifies as kubernetes.default.svc")
	}

	// A restart (or a second replica) takes the same CA from the Secret.
	srv.stop()
	srv = startServingCertServer(t, kubeconfig, t.TempDir())
	eventually(t, 3*time.Minute, func() error {
		if _, ok, why := apiServiceState(ctx, agg); !ok {
			return fmt.Errorf("after a restart: not Available: %s\n%s", why, srv.logTail())
		}
		return nil
	})
	after, err := agg.ApiregistrationV1().APIServices().Get(ctx, framework.StargateAPIService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after.Spec.CABundle, as.Spec.CABundle) {
		t.Error("a restart changed the caBundle: replicas would not share one CA")
	}
	// The aggregator may report the old state for a moment: served again
	// once a list works.
	eventually(t, time.Minute, func() error {
		if r := world.Kubectl.Run(ctx, "get", "servers", "-A"); r.Err != nil {
			return fmt.Errorf("after a restart: %s", r)
		}
		return nil
	})

	// The attack: another server answers on the endpoint with a certificate
	// of a CA the APIService does not name (the test world's server, its own
	// CA). The aggregator refuses it.
	srv.stop()
	if err := world.Stargate.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, func() error {
		_, ok, why := apiServiceState(ctx, agg)
		if ok {
			return fmt.Errorf("APIService still Available with a server whose certificate the caBundle does not verify")
		}
		if !strings.Contains(why, "x509") && !strings.Contains(why, "certificate") {
			return fmt.Errorf("not Available, but not for the certificate: %s", why)
		}
		return nil
	})
	if r := world.Kubectl.Run(ctx, "get", "servers", "-A"); r.Err == nil {
		t.Errorf("the aggregator proxied to a server it cannot verify:\n%s", r)
	}
}
