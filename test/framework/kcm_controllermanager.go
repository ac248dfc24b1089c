package framework

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"time"
	"unsafe"
)

// BootstrapTokenBinDir makes dir a bin directory like src whose
// kube-apiserver also authenticates bootstrap tokens
// (--enable-bootstrap-token-auth), which kubelet TLS bootstrap needs and
// envtest does not set. It is a wrapper script beside symlinks to the real
// programs; pass dir as WorldOptions.BinDir (with StargateBinary set).
func BootstrapTokenBinDir(src Binaries, dir string) (Binaries, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, err
	}
	for _, name := range []string{"etcd", "kubectl", "kube-controller-manager"} {
		target := filepath.Join(src.Dir, name)
		link := filepath.Join(dir, name)
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return Binaries{}, err
		}
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %q \"$@\" --enable-bootstrap-token-auth=true\n", src.KubeAPIServer)
	if err := os.WriteFile(filepath.Join(dir, "kube-apiserver"), []byte(wrapper), 0o755); err != nil {
		return Binaries{}, err
	}
	return FindBinaries(dir)
}

// ClientCA returns the PEM certificate and private key of the CA the test
// kube-apiserver trusts for client certificates (--client-ca-file). envtest
// keeps the key unexported; it is read through reflection because
// kube-controller-manager must sign kubelet client certificates with it.
func (cp *ControlPlane) ClientCA() (certPEM, keyPEM []byte, err error) {
	authn := reflect.ValueOf(cp.Env.ControlPlane.APIServer.SecureServing.Authn)
	if authn.Kind() != reflect.Pointer || authn.IsNil() {
		return nil, nil, errors.New("envtest has no certificate authenticator")
	}
	caField := authn.Elem().FieldByName("ca")
	if !caField.IsValid() || caField.IsNil() {
		return nil, nil, errors.New("envtest's certificate authenticator has no field ca (controller-runtime changed?)")
	}
	ca := reflect.NewAt(caField.Type(), unsafe.Pointer(caField.UnsafeAddr())).Elem().Elem()
	pair := ca.FieldByName("CA")
	cert, ok1 := pair.FieldByName("Cert").Interface().(*x509.Certificate)
	key := pair.FieldByName("Key").Interface()
	if !ok1 || key == nil {
		return nil, nil, errors.New("envtest's client CA has no certificate or key")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// ControllerManager is a running kube-controller-manager.
type ControllerManager struct {
	cmd  *exec.Cmd
	Log  string
	done chan error
}

// StartControllerManager runs bin/kube-controller-manager against the
// control plane with the CSR controllers (signing with the client CA,
// approving, cleaning) and whatever else controllers names.
func (cp *ControlPlane) StartControllerManager(ctx context.Context, controllers ...string) (*ControllerManager, error) {
	bin := filepath.Join(cp.Binaries.Dir, "kube-controller-manager")
	if err := isExecutable(bin); err != nil {
		return nil, fmt.Errorf("kube-controller-manager missing; run hack/install-test-bins.sh: %w", err)
	}
	dir := filepath.Join(cp.Dir, "kube-controller-manager")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := cp.ClientCA()
	if err != nil {
		return nil, err
	}
	caCert, caKey := filepath.Join(dir, "signing-ca.crt"), filepath.Join(dir, "signing-ca.key")
	if err := os.WriteFile(caCert, certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(caKey, keyPEM, 0o600); err != nil {
		return nil, err
	}
	user, err := cp.AddUser("system:kube-controller-manager", "system:masters")
	if err != nil {
		return nil, err
	}
	ctrls := "csrsigning,csrapproving,csrcleaner"
	for _, c := range controllers {
		ctrls += "," + c
	}
	kcm := &ControllerManager{Log: filepath.Join(dir, "kube-controller-manager.log"), done: make(chan error, 1)}
	logFile, err := os.Create(kcm.Log)
	if err != nil {
		return nil, err
	}
	kcm.cmd = exec.Command(bin,
		"--kubeconfig="+user.Kubeconfig,
		"--controllers="+ctrls,
		"--cluster-signing-cert-file="+caCert,
		"--cluster-signing-key-file="+caKey,
		"--cluster-signing-duration=24h",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0",
		"--v=2",
	)
	kcm.cmd.Stdout, kcm.cmd.Stderr = logFile, logFile
	if err := kcm.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() { kcm.done <- kcm.cmd.Wait(); logFile.Close() }()
	select {
	case err := <-kcm.done:
		return nil, fmt.Errorf("kube-controller-manager exited at once (%v):\n%s", err, tail(kcm.Log, 30))
	case <-time.After(time.Second):
	case <-ctx.Done():
		_ = kcm.Stop()
		return nil, ctx.Err()
	}
	return kcm, nil
}

// Stop ends kube-controller-manager.
func (k *ControllerManager) Stop() error {
	if k == nil || k.cmd == nil || k.cmd.Process == nil {
		return nil
	}
	StopProcess(k.cmd.Process, k.done, syscall.SIGTERM, 10*time.Second)
	return nil
}
