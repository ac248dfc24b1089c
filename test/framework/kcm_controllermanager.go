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
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// Controllers is kube-controller-manager's --controllers as a kubeadm
// control plane sets it: every controller that is on by default, plus the
// two that are off by default and that a cluster using bootstrap tokens
// needs (bootstrap-signer signs kube-public/cluster-info; token-cleaner
// deletes expired bootstrap tokens, which keeps Stargate's tokens
// short-lived on the server side too).
//
// Nothing has to be turned off here. The controllers that need a cloud
// provider (cloud node lifecycle, routes, service load balancers) are no
// longer part of kube-controller-manager (a cloud-controller-manager runs
// them; AKS runs its own, and none runs here: Stargate's nodes are not
// cloud VMs). Node IPAM is on but idle: without --allocate-node-cidrs it
// allocates nothing, and Stargate gives each Node its pod CIDR.
var Controllers = []string{"*", "bootstrap-signer-controller", "token-cleaner-controller"}

// ControllerManagerOptions configure StartControllerManager.
type ControllerManagerOptions struct {
	// NodeMonitorGracePeriod is how long a Node may go without a heartbeat
	// before the node lifecycle controller marks it NotReady (Unknown).
	// Zero keeps kube-controller-manager's default (50s).
	NodeMonitorGracePeriod time.Duration
	// ClusterCIDR, when set, turns on node IPAM (--allocate-node-cidrs):
	// every Node gets a spec.podCIDR of NodeCIDRMaskSize bits (24 when
	// zero) out of it. Stargate's own IPAM gives Stargate's nodes theirs.
	ClusterCIDR      string
	NodeCIDRMaskSize int
}

// ControllerManager is a running kube-controller-manager.
type ControllerManager struct {
	cmd  *exec.Cmd
	Log  string
	done chan error
}

// StartControllerManager runs bin/kube-controller-manager against the
// control plane the way a kubeadm control plane runs it on one machine:
// the default controller set (see Controllers), each controller with its
// own ServiceAccount's credentials, the service-account key and root CA of
// the kube-apiserver, cluster signing with the client CA, leader election
// off. It returns once the controllers work, i.e. the serviceaccount
// controller has made the default ServiceAccount of namespace default.
func (cp *ControlPlane) StartControllerManager(ctx context.Context, opts ControllerManagerOptions) (*ControllerManager, error) {
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
	rootCA := filepath.Join(dir, "root-ca.crt")
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{caCert, certPEM, 0o644}, {caKey, keyPEM, 0o600}, {rootCA, cp.Config.CAData, 0o644}} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return nil, err
		}
	}
	// The key kube-apiserver verifies service account tokens with
	// (--service-account-key-file) is the public half of this one, which
	// envtest generated in the kube-apiserver's cert dir.
	saKey := filepath.Join(cp.Env.ControlPlane.APIServer.CertDir, "sa-signer.key")
	if _, err := os.Stat(saKey); err != nil {
		return nil, fmt.Errorf("the kube-apiserver's service account signing key (envtest changed?): %w", err)
	}
	// No system:masters: the bootstrap ClusterRole
	// system:kube-controller-manager is what a real one has, and each
	// controller acts as its own ServiceAccount under its
	// system:controller:* role.
	user, err := cp.AddUser("system:kube-controller-manager")
	if err != nil {
		return nil, err
	}
	kcm := &ControllerManager{Log: filepath.Join(dir, "kube-controller-manager.log"), done: make(chan error, 1)}
	logFile, err := os.OpenFile(kcm.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := []string{
		"--kubeconfig=" + user.Kubeconfig,
		"--controllers=" + strings.Join(Controllers, ","),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + saKey,
		"--root-ca-file=" + rootCA,
		"--cluster-name=kubernetes",
		"--cluster-signing-cert-file=" + caCert,
		"--cluster-signing-key-file=" + caKey,
		"--cluster-signing-duration=24h",
		"--leader-elect=false",
		"--secure-port=0",
		"--v=2",
	}
	if opts.NodeMonitorGracePeriod > 0 {
		args = append(args, "--node-monitor-grace-period="+opts.NodeMonitorGracePeriod.String())
	}
	if opts.ClusterCIDR != "" {
		mask := opts.NodeCIDRMaskSize
		if mask == 0 {
			mask = 24
		}
		args = append(args, "--allocate-node-cidrs=true", "--cluster-cidr="+opts.ClusterCIDR,
			"--node-cidr-mask-size="+strconv.Itoa(mask), "--service-cluster-ip-range="+cp.ServiceClusterIPRange)
	}
	kcm.cmd = exec.Command(bin, args...)
	kcm.cmd.Stdout, kcm.cmd.Stderr = logFile, logFile
	if err := kcm.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() { kcm.done <- kcm.cmd.Wait(); logFile.Close() }()
	if err := kcm.waitWorking(ctx, cp); err != nil {
		_ = kcm.Stop()
		return nil, err
	}
	return kcm, nil
}

// waitWorking waits until the serviceaccount controller has made
// default/default: then informers are synced and controllers run.
func (k *ControllerManager) waitWorking(ctx context.Context, cp *ControlPlane) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case err := <-k.done:
			k.done <- err
			return fmt.Errorf("kube-controller-manager exited (%v):\n%s", err, tail(k.Log, 30))
		case <-ctx.Done():
			return fmt.Errorf("kube-controller-manager made no default ServiceAccount in namespace default: %w\n%s", ctx.Err(), tail(k.Log, 30))
		case <-t.C:
			if _, err := cp.Kube.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err == nil {
				return nil
			}
		}
	}
}

// Stop ends kube-controller-manager.
func (k *ControllerManager) Stop() error {
	if k == nil || k.cmd == nil || k.cmd.Process == nil {
		return nil
	}
	StopProcess(k.cmd.Process, k.done, syscall.SIGTERM, 10*time.Second)
	return nil
}
