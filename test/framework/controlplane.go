package framework

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

func init() {
	// envtest logs through controller-runtime's global logger and complains
	// with a stack trace when none is set; what matters is in the
	// components' log files.
	ctrllog.SetLogger(logr.Discard())
}

// FrontProxyClientName is the common name of the client certificate the
// aggregator presents to aggregated servers; it is the only name
// --requestheader-allowed-names accepts.
const FrontProxyClientName = "front-proxy-client"

// ControlPlaneOptions configure StartControlPlane.
type ControlPlaneOptions struct {
	// Dir holds the front-proxy certificates, kubeconfigs and logs (and
	// etcd's data when PersistEtcd is set). It must exist.
	Dir string
	// Binaries are the programs to run; see FindBinaries.
	Binaries Binaries
	// PersistEtcd keeps etcd's data in Dir/etcd across starts, as `make dev`
	// wants; otherwise etcd starts empty in a temporary directory.
	PersistEtcd bool
	// ServiceAccountAdmission turns the ServiceAccount admission plugin back
	// on (envtest turns it off because nothing makes default
	// ServiceAccounts); set it when kube-controller-manager will run, as in
	// a real cluster.
	ServiceAccountAdmission bool
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// ControlPlane is a running etcd and kube-apiserver with the aggregation
// layer on and RBAC authorization.
type ControlPlane struct {
	Env      *envtest.Environment
	Binaries Binaries
	Dir      string
	// Config is a system:masters client config of the kube-apiserver.
	Config *rest.Config
	// AdminKubeconfig is the path of a kubeconfig file for Config.
	AdminKubeconfig string
	// Kube is a clientset on Config.
	Kube kubernetes.Interface
	// FrontProxyCA signs the aggregator's proxy client certificate; the
	// kube-apiserver publishes it in kube-system/extension-apiserver-authentication.
	FrontProxyCA *CA

	logs []*os.File
}

// StartControlPlane starts etcd and kube-apiserver from opts.Binaries
// through envtest, with the front-proxy (aggregation) flags set.
func StartControlPlane(opts ControlPlaneOptions) (_ *ControlPlane, err error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cp := &ControlPlane{Binaries: opts.Binaries, Dir: opts.Dir}
	defer func() {
		if err != nil {
			cp.closeLogs()
		}
	}()

	pkiDir := filepath.Join(opts.Dir, "pki")
	logDir := filepath.Join(opts.Dir, "logs")
	for _, d := range []string{pkiDir, logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}

	// The aggregator authenticates itself to stargate-apiserver with this
	// client certificate and passes the user in X-Remote-* headers; the
	// aggregated server trusts the headers because the certificate chains to
	// the requestheader CA it reads from extension-apiserver-authentication.
	cp.FrontProxyCA, err = NewCA("front-proxy-ca")
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(pkiDir, "front-proxy-ca.crt")
	if err := os.WriteFile(caFile, cp.FrontProxyCA.CertPEM, 0o644); err != nil {
		return nil, err
	}
	proxyClient, err := cp.FrontProxyCA.ClientCert(FrontProxyClientName)
	if err != nil {
		return nil, err
	}
	proxyCert, proxyKey, err := proxyClient.Write(pkiDir, FrontProxyClientName)
	if err != nil {
		return nil, err
	}

	apiLog, err := cp.openLog(filepath.Join(logDir, "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}
	etcdLog, err := cp.openLog(filepath.Join(logDir, "etcd.log"))
	if err != nil {
		return nil, err
	}

	etcd := &envtest.Etcd{Path: opts.Binaries.Etcd, Out: etcdLog, Err: etcdLog}
	if opts.PersistEtcd {
		etcd.DataDir = filepath.Join(opts.Dir, "etcd")
		if err := os.MkdirAll(etcd.DataDir, 0o700); err != nil {
			return nil, err
		}
	}
	apiServer := &envtest.APIServer{Path: opts.Binaries.KubeAPIServer, Out: apiLog, Err: apiLog}
	args := apiServer.Configure()
	args.Set("authorization-mode", "RBAC")
	args.Set("requestheader-client-ca-file", caFile)
	args.Set("requestheader-allowed-names", FrontProxyClientName)
	args.Set("requestheader-username-headers", "X-Remote-User")
	args.Set("requestheader-group-headers", "X-Remote-Group")
	args.Set("requestheader-extra-headers-prefix", "X-Remote-Extra-")
	args.Set("proxy-client-cert-file", proxyCert)
	args.Set("proxy-client-key-file", proxyKey)
	if opts.ServiceAccountAdmission {
		args.Disable("disable-admission-plugins")
	}

	cp.Env = &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			APIServer:   apiServer,
			Etcd:        etcd,
			KubectlPath: opts.Binaries.Kubectl,
		},
		BinaryAssetsDirectory:    opts.Binaries.Dir,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	logf("starting etcd and kube-apiserver (logs in %s)", logDir)
	cp.Config, err = cp.Env.Start()
	if err != nil {
		return nil, fmt.Errorf("start etcd and kube-apiserver (see %s): %w\n%s", logDir, err, tail(filepath.Join(logDir, "kube-apiserver.log"), 30))
	}
	defer func() {
		if err != nil {
			_ = cp.Env.Stop()
		}
	}()
	cp.AdminKubeconfig = filepath.Join(opts.Dir, "admin.kubeconfig")
	if err := os.WriteFile(cp.AdminKubeconfig, cp.Env.KubeConfig, 0o600); err != nil {
		return nil, err
	}
	cp.Kube, err = kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return nil, err
	}
	logf("kube-apiserver is up at %s", cp.Config.Host)
	return cp, nil
}

// Stop stops kube-apiserver and etcd.
func (cp *ControlPlane) Stop() error {
	defer cp.closeLogs()
	if cp.Env == nil {
		return nil
	}
	return cp.Env.Stop()
}

// EtcdURL is the client URL of the control plane's etcd, for a
// stargate-apiserver that uses an external etcd.
func (cp *ControlPlane) EtcdURL() string {
	return cp.Env.ControlPlane.Etcd.URL.String()
}

// User is a client identity of the test kube-apiserver, authenticated by a
// client certificate.
type User struct {
	Name       string
	Groups     []string
	Config     *rest.Config
	Kubeconfig string
}

// AddUser provisions a user with a client certificate and writes a
// kubeconfig for it. The user has no permissions beyond what RBAC grants
// its name or groups.
func (cp *ControlPlane) AddUser(name string, groups ...string) (*User, error) {
	au, err := cp.Env.AddUser(envtest.User{Name: name, Groups: groups}, &rest.Config{QPS: 1000, Burst: 2000})
	if err != nil {
		return nil, fmt.Errorf("add user %s: %w", name, err)
	}
	kc, err := au.KubeConfig()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cp.Dir, "kubeconfigs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, safeFileName(name)+".kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		return nil, err
	}
	return &User{Name: name, Groups: groups, Config: au.Config(), Kubeconfig: path}, nil
}

func (cp *ControlPlane) openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "==== started by test/framework at %s\n", time.Now().Format(time.RFC3339))
	cp.logs = append(cp.logs, f)
	return f, nil
}

func (cp *ControlPlane) closeLogs() {
	for _, f := range cp.logs {
		_ = f.Close()
	}
	cp.logs = nil
}

func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ':' || r == ' ' {
			return '_'
		}
		return r
	}, s)
}
