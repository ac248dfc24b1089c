package framework

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	// BindAddress is the IP address kube-apiserver serves on (and
	// advertises as the endpoint of Service default/kubernetes); its serving
	// certificate covers it besides localhost. Empty is envtest's
	// 127.0.0.1. Real nodes in network namespaces (test/framework/nodes)
	// need an address they can reach, such as their bridge's.
	BindAddress string
	// ServiceClusterIPRange is kube-apiserver's --service-cluster-ip-range;
	// empty is envtest's 10.0.0.0/24. Real nodes need one that traffic may
	// be sent to (a documentation range).
	ServiceClusterIPRange string
	// AggregatorRouting makes the aggregator dial an APIService's Service
	// at an endpoint's address (--enable-aggregator-routing), as a control
	// plane outside the cluster network must: for an aggregated server that
	// runs as a pod on real nodes.
	AggregatorRouting bool
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// KubeletClientName is the user of the client certificate kube-apiserver
// presents to kubelets (logs, exec, port-forward, proxy), as kubeadm names
// it; it is in group system:masters.
const KubeletClientName = "kube-apiserver-kubelet-client"

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
	// KubeletClientCA signs the client certificate kube-apiserver presents
	// to kubelets (--kubelet-client-certificate); a kubelet trusts it with
	// authentication.x509.clientCAFile.
	KubeletClientCA *CA
	// ServiceClusterIPRange is the kube-apiserver's Service CIDR.
	ServiceClusterIPRange string

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

	// kube-apiserver authenticates to kubelets with a certificate of its
	// own CA, made before it starts; node client certificates come from the
	// client CA envtest makes (ClientCA), which exists only once it runs.
	cp.KubeletClientCA, err = NewCA("kubelet-client-ca")
	if err != nil {
		return nil, err
	}
	kubeletClient, err := cp.KubeletClientCA.ClientCert(KubeletClientName, "system:masters")
	if err != nil {
		return nil, err
	}
	kubeletClientCert, kubeletClientKey, err := kubeletClient.Write(pkiDir, KubeletClientName)
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
	if opts.BindAddress != "" {
		// envtest picks a port only together with an address, and then
		// always 127.0.0.1: pick a free port on the wanted address here.
		port, err := freePortOn(opts.BindAddress)
		if err != nil {
			return nil, fmt.Errorf("kube-apiserver bind address %s: %w", opts.BindAddress, err)
		}
		apiServer.SecureServing.Address = opts.BindAddress
		apiServer.SecureServing.Port = strconv.Itoa(port)
		// Pods reach kube-apiserver through Service default/kubernetes,
		// i.e. at the first Service IP, which envtest's serving certificate
		// does not cover: make the serving certificate (and, as envtest
		// makes both or neither, the service account signing key) here.
		if err := cp.servingCerts(apiServer, filepath.Join(pkiDir, "kube-apiserver"), opts); err != nil {
			return nil, err
		}
	}
	args := apiServer.Configure()
	// Node authorizes kubelets (system:nodes) as in a real cluster; RBAC
	// grants the group nothing by default.
	args.Set("authorization-mode", "Node,RBAC")
	// Kubelets are dialed at their InternalIP: their host names resolve
	// nowhere, and looking them up would ask the machine's DNS server.
	args.Set("kubelet-preferred-address-types", "InternalIP")
	args.Set("kubelet-client-certificate", kubeletClientCert)
	args.Set("kubelet-client-key", kubeletClientKey)
	if opts.AggregatorRouting {
		args.Set("enable-aggregator-routing", "true")
	}
	if opts.ServiceClusterIPRange != "" {
		args.Set("service-cluster-ip-range", opts.ServiceClusterIPRange)
		cp.ServiceClusterIPRange = opts.ServiceClusterIPRange
	} else {
		cp.ServiceClusterIPRange = "10.0.0.0/24"
	}
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

// servingCerts writes into dir (which becomes envtest's cert dir) the
// serving certificate of kube-apiserver, valid for localhost, 127.0.0.1,
// opts.BindAddress and the names and first IP of Service
// default/kubernetes, and the service account signing key pair.
func (cp *ControlPlane) servingCerts(apiServer *envtest.APIServer, dir string, opts ControlPlaneOptions) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	serviceRange := opts.ServiceClusterIPRange
	if serviceRange == "" {
		serviceRange = "10.0.0.0/24"
	}
	_, services, err := net.ParseCIDR(serviceRange)
	if err != nil {
		return fmt.Errorf("service cluster IP range %q: %w", serviceRange, err)
	}
	first := slices.Clone(services.IP.To4())
	if first == nil {
		return fmt.Errorf("service cluster IP range %q is not IPv4", serviceRange)
	}
	first[3]++
	ca, err := NewCA("kube-apiserver-serving-ca")
	if err != nil {
		return err
	}
	serving, err := ca.ServingCert("kube-apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(opts.BindAddress), first})
	if err != nil {
		return err
	}
	if _, _, err := serving.Write(dir, "apiserver"); err != nil {
		return err
	}
	sa, err := NewCA("service-account-signer")
	if err != nil {
		return err
	}
	saKey, err := x509.MarshalPKCS8PrivateKey(sa.key)
	if err != nil {
		return err
	}
	saPair := KeyPair{CertPEM: sa.CertPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saKey})}
	if _, _, err := saPair.Write(dir, "sa-signer"); err != nil {
		return err
	}
	apiServer.CertDir = dir
	apiServer.SecureServing.CA = ca.CertPEM
	return nil
}

// freePortOn asks the kernel for a free TCP port on address ip.
func freePortOn(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
