package twin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/azure/azurefake"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/pkg/sshexec"
	"github.com/stargate-k8s/stargate/test/dcsim"
	"github.com/stargate-k8s/stargate/test/framework"
	"github.com/stargate-k8s/stargate/test/netns"
	"github.com/stargate-k8s/stargate/test/tailnet"
)

// The twin's networks. Everything lives in namespaces the twin makes.
var (
	VNetSubnet     = netip.MustParsePrefix("10.224.0.0/16")
	vnetGateway    = netip.MustParseAddr("10.224.0.1")
	AKSRouterIP    = netip.MustParseAddr("10.224.0.4")
	aksNodeIP      = netip.MustParseAddr("10.224.0.5")
	AKSNodePodCIDR = netip.MustParsePrefix("10.244.0.0/24")
	// AKSRoutes are what the AKS router advertises: the AKS pods (the
	// lower half of 10.244.0.0/16) and services.
	AKSRoutes = []string{"10.244.0.0/17", "10.0.0.0/16"}
	// DCPodPool is where Stargate's IPAM takes the DC workers' pod CIDRs.
	DCPodPool = "10.244.128.0/17"
	// apiVIP is where workers reach the kube-apiserver: an address on
	// every DC router, forwarded to the host's loopback.
	apiVIP = netip.MustParseAddr("198.51.100.10")
)

const (
	apiPort        = 6443
	ResourceGroup  = "rg-twin"
	RouteTableName = "rt-twin"
	standinBeat    = 5 * time.Second
)

// Options shape the twin.
type Options struct {
	// DCs and WorkersPerDC: 2 and 2 when zero. PodsPerNode: 1.
	DCs, WorkersPerDC, PodsPerNode int
	Logf                           func(format string, args ...any)
}

// Site is one datacenter: a dcsim site whose router runs real tailscaled.
type Site struct {
	Name      string // also the Kubernetes namespace and Datacenter
	Subnet    netip.Prefix
	Sim       *dcsim.Sim
	Router    *tailnet.Router
	TailnetIP netip.Addr
	Nodes     []*Node // one per worker; PodCIDR set by AddDCPods
}

// World is the network twin: the real control plane, a real tailnet, the
// AKS VNet and node, the DC sites, and stargate-controller.
type World struct {
	Prefix string
	Dir    string
	Kube   *framework.World
	Client client.Client

	Tailnet     *tailnet.Control
	AKSRouter   *tailnet.Router
	AKSRouterNS string
	VNetNS      string
	AKSNode     *Node
	Sites       []*Site

	Table  *azurefake.Table
	ARM    *ARM
	VNet   *VNet
	Routes *NodeRoutes
	Pods   *Pods

	Controller *Process
	// Bins are the built programs.
	ControllerBin, StandinBin, NodeAgentBin string
	// NodeAgents run per DC worker once StartNodeAgents ran.
	NodeAgents       []*Process
	caFile, stateDir string

	opts    Options
	logf    func(string, ...any)
	netns   []string
	closers []func() error
	mu      sync.Mutex
	fwd     []string
}

// Start builds the twin. On error everything made so far is torn down.
func Start(ctx context.Context, o Options) (_ *World, err error) {
	if o.DCs == 0 {
		o.DCs = 2
	}
	if o.WorkersPerDC == 0 {
		o.WorkersPerDC = 2
	}
	if o.PodsPerNode == 0 {
		o.PodsPerNode = 1
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the network twin makes network namespaces and TUN devices: run it as root")
	}
	if err := dcsim.Check(""); err != nil {
		return nil, err
	}
	if _, err := tailnet.FindBinaries(""); err != nil {
		return nil, err
	}
	// Short: tailscaled's socket path must fit a unix socket.
	dir, err := os.MkdirTemp("", "tw")
	if err != nil {
		return nil, err
	}
	w := &World{Prefix: "tw" + randHex(2), Dir: dir, opts: o, logf: o.Logf, Pods: &Pods{ProbeTimeout: 400 * time.Millisecond}}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.Close())
		}
	}()
	if err := w.startKube(ctx); err != nil {
		return nil, err
	}
	if err := framework.InstallCiliumNodeCRD(ctx, w.Kube.ControlPlane.Config); err != nil {
		return nil, err
	}
	w.logf("starting the tailnet")
	if w.Tailnet, err = tailnet.StartControl(filepath.Join(dir, "ts"), tailnet.ControlOptions{Prefix: w.Prefix + "t"}); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, w.Tailnet.Close)
	if err := w.startAKS(ctx); err != nil {
		return nil, err
	}
	for i := 1; i <= o.DCs; i++ {
		if err := w.startSite(ctx, i); err != nil {
			return nil, err
		}
	}
	if err := w.startAzure(); err != nil {
		return nil, err
	}
	segs := []Segment{{Gateway: w.VNetNS, Nodes: []*Node{w.AKSNode}}}
	for _, s := range w.Sites {
		segs = append(segs, Segment{Gateway: s.Sim.Router.NetNS, Nodes: s.Nodes})
	}
	w.Routes = &NodeRoutes{Client: w.Client, Segments: segs}
	w.Routes.Start()
	w.closers = append(w.closers, func() error { w.Routes.Stop(); return nil })
	if err := w.Pods.AddPods(w.Prefix, w.AKSNode, o.PodsPerNode); err != nil {
		return nil, err
	}
	if err := w.fixtures(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *World) startKube(ctx context.Context) error {
	root, err := framework.RepoRoot()
	if err != nil {
		return err
	}
	bins, err := framework.FindBinaries("")
	if err != nil {
		return err
	}
	binDir := filepath.Join(w.Dir, "bin")
	if _, err := framework.BootstrapTokenBinDir(bins, binDir); err != nil {
		return err
	}
	w.logf("building stargate-controller, kubelet-standin and stargate-apiserver")
	w.ControllerBin, w.StandinBin, w.NodeAgentBin = filepath.Join(binDir, "stargate-controller"), filepath.Join(binDir, "kubelet-standin"), filepath.Join(binDir, "stargate-nodeagent")
	for pkg, out := range map[string]string{"./cmd/controller": w.ControllerBin, "./test/kubelet-standin": w.StandinBin, "./cmd/nodeagent": w.NodeAgentBin} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
	}
	apiserver, err := framework.BuildStargate(ctx, root, binDir)
	if err != nil {
		return err
	}
	w.Kube, err = framework.StartWorld(ctx, framework.WorldOptions{
		Dir: filepath.Join(w.Dir, "kube"), BinDir: binDir, StargateBinary: apiserver, Logf: w.logf,
		ControllerManager: framework.ControllerManagerOptions{NodeMonitorGracePeriod: 15 * time.Second},
	})
	if err != nil {
		return err
	}
	w.closers = append(w.closers, func() error { w.Kube.KeepDir = true; return w.Kube.Stop() })
	if w.Client, err = client.New(w.Kube.ControlPlane.Config, client.Options{Scheme: manager.Scheme}); err != nil {
		return err
	}
	w.caFile = filepath.Join(w.Dir, "cluster-ca.crt")
	w.stateDir = filepath.Join(w.Dir, "nodes")
	return os.WriteFile(w.caFile, w.Kube.ControlPlane.Config.CAData, 0o644)
}

func (w *World) addNS(ns string) error {
	if err := netns.Add(ns); err != nil {
		return err
	}
	w.mu.Lock()
	w.netns = append(w.netns, ns)
	w.mu.Unlock()
	return nil
}

// startAKS makes the VNet (a bridge in its own namespace, which routes by
// the Azure route table), the AKS router on it and on the underlay with
// real tailscaled advertising the AKS routes, and the AKS node.
func (w *World) startAKS(ctx context.Context) error {
	w.VNetNS, w.AKSRouterNS = w.Prefix+"-vnet", w.Prefix+"-aksr"
	node := &Node{Name: "aks-node-1", Site: "aks", NetNS: w.Prefix + "-aksn", IP: aksNodeIP, PodCIDR: AKSNodePodCIDR}
	for _, ns := range []string{w.VNetNS, w.AKSRouterNS, node.NetNS} {
		if err := w.addNS(ns); err != nil {
			return err
		}
	}
	bits := fmt.Sprint(VNetSubnet.Bits())
	if err := ipSteps(
		[]string{w.VNetNS, "link", "add", "vnet0", "type", "bridge"},
		[]string{w.VNetNS, "addr", "add", vnetGateway.String() + "/" + bits, "dev", "vnet0"},
		[]string{w.VNetNS, "link", "set", "vnet0", "up"},
	); err != nil {
		return err
	}
	for _, h := range []struct {
		port, ns string
		ip       netip.Addr
	}{{"aksr", w.AKSRouterNS, AKSRouterIP}, {"aksn", node.NetNS, aksNodeIP}} {
		if err := ipSteps(
			[]string{w.VNetNS, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.ns},
			[]string{w.VNetNS, "link", "set", h.port, "master", "vnet0", "up"},
			[]string{h.ns, "addr", "add", h.ip.String() + "/" + bits, "dev", "eth0"},
			[]string{h.ns, "link", "set", "eth0", "up"},
			[]string{h.ns, "route", "add", "default", "via", vnetGateway.String()},
		); err != nil {
			return err
		}
	}
	// No ICMP redirects: every packet takes the VNet's routes, as in Azure.
	for _, ns := range []string{w.VNetNS, w.AKSRouterNS, node.NetNS} {
		if err := sysctlIn(ns, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
			"net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.all.accept_redirects=0"); err != nil {
			return err
		}
	}
	w.AKSNode = node
	r, err := w.Tailnet.StartRouter("aks", tailnet.RouterOptions{NetNS: w.AKSRouterNS, Addr: netip.MustParsePrefix("203.0.113.194/26"), Hostname: "aks-router"})
	if err != nil {
		return err
	}
	w.AKSRouter = r
	uctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return r.Up(uctx, AKSRoutes)
}

// startSite makes datacenter i: a dcsim site on 10.50.i.0/24 whose router
// joins the tailnet, with the API's address (apiVIP) for its workers.
func (w *World) startSite(ctx context.Context, i int) error {
	s := &Site{Name: fmt.Sprintf("dc%d", i), Subnet: netip.MustParsePrefix(fmt.Sprintf("10.50.%d.0/24", i))}
	simDir := filepath.Join(w.Dir, s.Name)
	if err := os.MkdirAll(simDir, 0o755); err != nil {
		return err
	}
	sim, err := dcsim.StartSite(ctx, dcsim.SiteOptions{Dir: simDir, Prefix: fmt.Sprintf("%s-d%d", w.Prefix, i), WorkerSubnet: s.Subnet, Workers: w.opts.WorkersPerDC, Logf: w.logf})
	if err != nil {
		return err
	}
	s.Sim = sim
	w.Sites = append(w.Sites, s)
	w.closers = append(w.closers, sim.Stop)
	rns := sim.Router.NetNS
	if err := sysctlIn(rns, "net.ipv4.conf.all.send_redirects=0"); err != nil {
		return err
	}
	if s.Router, err = w.Tailnet.StartRouter(s.Name, tailnet.RouterOptions{NetNS: rns, Addr: netip.MustParsePrefix(fmt.Sprintf("203.0.113.%d/26", 194+i)), Hostname: s.Name + "-router"}); err != nil {
		return err
	}
	uctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := s.Router.Up(uctx, nil); err != nil {
		return err
	}
	if s.TailnetIP, err = s.Router.IP(uctx); err != nil {
		return err
	}
	// The controller reaches the router at its tailnet IP; the advertise
	// command finds this router's tailscaled through $HOME/ts.sock.
	sim.Router.IP = s.TailnetIP.String()
	if err := os.Symlink(s.Router.Socket, filepath.Join(sim.Router.Dir, "home", "ts.sock")); err != nil {
		return err
	}
	if err := netns.In(rns, "addr", "add", apiVIP.String()+"/32", "dev", "lo"); err != nil {
		return err
	}
	u, err := url.Parse(w.Kube.ControlPlane.Config.Host)
	if err != nil {
		return err
	}
	f, err := dcsim.ForwardIntoNS(rns, net.JoinHostPort(apiVIP.String(), fmt.Sprint(apiPort)), u.Host)
	if err != nil {
		return err
	}
	w.closers = append(w.closers, f.Close)
	for k, h := range sim.Workers {
		s.Nodes = append(s.Nodes, &Node{Name: fmt.Sprintf("%s-w%d", s.Name, k+1), Site: s.Name, NetNS: h.NetNS, IP: netip.MustParseAddr(h.IP)})
	}
	w.logf("site %s: router %s on the tailnet, workers %d", s.Name, s.TailnetIP, len(sim.Workers))
	return nil
}

func (w *World) startAzure() error {
	w.Table = azurefake.New(ResourceGroup, RouteTableName)
	// Someone else's route: rendered, and never touched by Stargate.
	w.Table.Set("corp-default", "0.0.0.0/0", "10.224.0.9")
	var err error
	if w.ARM, err = StartARM(w.Dir, w.Table); err != nil {
		return err
	}
	w.closers = append(w.closers, w.ARM.Close)
	w.VNet = &VNet{NetNS: w.VNetNS, Table: w.Table, Subnet: VNetSubnet.String()}
	w.VNet.Start()
	w.closers = append(w.closers, func() error { w.VNet.Stop(); return nil })
	return nil
}

// fixtures declares the datacenters and their Servers to Stargate.
func (w *World) fixtures(ctx context.Context) error {
	objs := []client.Object{
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "twin:nodes"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"}},
		},
		// The AKS node, as AKS registers it (Cilium's CIDR from the Node).
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: w.AKSNode.Name}, Spec: corev1.NodeSpec{PodCIDR: AKSNodePodCIDR.String(), PodCIDRs: []string{AKSNodePodCIDR.String()}}},
	}
	script := dcsim.StandinScriptWithHeartbeat(w.stateDir, w.StandinBin, 0, standinBeat)
	for _, s := range w.Sites {
		ns := s.Name
		objs = append(objs,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			&v1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: ns}, Spec: v1.DatacenterSpec{
				Namespace: ns, WorkerSubnet: s.Subnet.String(), Router: v1.DatacenterRouter{IP: s.TailnetIP.String()},
				AgentGateway: dcsim.SubnetAddr(s.Subnet, 1).String(),
			}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: dcsim.SSHSecret, Namespace: ns}, Type: corev1.SecretTypeSSHAuth,
				Data: map[string][]byte{corev1.SSHAuthPrivateKey: s.Sim.ClientKeyPEM, "known_hosts": s.Sim.KnownHosts()}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: dcsim.ScriptsConfigMap, Namespace: ns}, Data: map[string]string{"standin.sh": script}},
			&v1.ProvisioningProfile{ObjectMeta: metav1.ObjectMeta{Name: "standin", Namespace: ns}, Spec: v1.ProvisioningProfileSpec{
				KubernetesVersion: "1.37", AdminUsername: "root",
				SSHCredentialsSecretRef: &v1.LocalObjectReference{Name: dcsim.SSHSecret},
				BootstrapScriptRef:      &v1.ConfigMapKeyReference{Name: dcsim.ScriptsConfigMap, Key: "standin.sh"},
			}},
		)
		for k, h := range s.Sim.Workers {
			objs = append(objs, &v1.Server{ObjectMeta: metav1.ObjectMeta{Name: s.Nodes[k].Name, Namespace: ns}, Spec: v1.ServerSpec{
				Hostname: s.Nodes[k].Name, IPAddress: h.IP, RouterIP: s.TailnetIP.String(), SSHPort: 22, HostKey: h.HostKey,
				ProvisioningProfileRef: &v1.LocalObjectReference{Name: "standin"},
			}})
		}
	}
	for _, o := range objs {
		if err := w.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// ControllerArgs are stargate-controller's flags in the twin: every
// route layer on, against the Azure fake, the tailnet's REST API and the
// CiliumNode CRD, with the DC routers told what to advertise over SSH by
// the real tailscale CLI.
func (w *World) ControllerArgs() []string {
	return []string{
		"--kubeconfig=" + w.Kube.ControlPlane.AdminKubeconfig,
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:0",
		"--control-plane-mode=aks",
		"--api-server-url=https://" + net.JoinHostPort(apiVIP.String(), fmt.Sprint(apiPort)),
		"--api-server-ca-file=" + w.caFile,
		"--api-server-tls-server-name=localhost",
		"--remote-work-dir=" + filepath.Join(w.Dir, "remote"),
		"--ssh-connect-attempts=3",
		"--ssh-retry-backoff=200ms",
		"--ssh-handshake-timeout=3s",
		"--node-ready-timeout=90s",
		"--pod-cidr-pool=" + DCPodPool,
		"--enable-azure-routes",
		"--azure-subscription-id=00000000-0000-0000-0000-000000000000",
		"--azure-resource-group=" + ResourceGroup,
		"--azure-route-table=" + RouteTableName,
		"--aks-router-ip=" + AKSRouterIP.String(),
		"--azure-poll-interval=1s",
		"--enable-tailscale-routes",
		"--aks-router-tailnet-ip=" + w.aksTailnetIP(),
		"--aks-router-routes=" + strings.Join(AKSRoutes, ","),
		"--tailscale-api-url=" + w.Tailnet.APIURL,
		"--advertise-routes-command=" + sshexec.Quote(w.Tailnet.Binaries().Tailscale) + ` --socket="$HOME/ts.sock" set --advertise-routes=`,
		"--v=2",
	}
}

func (w *World) aksTailnetIP() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ip, err := w.AKSRouter.IP(ctx)
	if err != nil {
		return ""
	}
	return ip.String()
}

// StartController runs stargate-controller in the AKS router's namespace
// (where the cluster reaches the DC routers: over the tailnet), with the
// host's loopback services it needs forwarded in, and extra flags
// appended (e.g. a shorter --route-resync-period).
func (w *World) StartController(extra ...string) (*Process, error) {
	for _, hostAddr := range []string{mustHost(w.Kube.ControlPlane.Config.Host), mustHost(w.Tailnet.APIURL), w.ARM.ProxyAddr, w.ARM.IdentityAddr} {
		if w.forwarded(hostAddr) {
			continue
		}
		f, err := dcsim.ForwardIntoNS(w.AKSRouterNS, hostAddr, hostAddr)
		if err != nil {
			return nil, err
		}
		w.closers = append(w.closers, f.Close)
	}
	env := append(w.ARM.Env(), "TS_API_KEY="+w.Tailnet.APIKey, "TS_TAILNET="+w.Tailnet.Tailnet)
	p, err := startProcess(w.AKSRouterNS, filepath.Join(w.Dir, "controller.log"), env, w.ControllerBin, append(w.ControllerArgs(), extra...)...)
	if err != nil {
		return nil, err
	}
	w.Controller = p
	return p, nil
}

func (w *World) forwarded(addr string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.fwd {
		if a == addr {
			return true
		}
	}
	w.fwd = append(w.fwd, addr)
	return false
}

func mustHost(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Host
}

// AddDCPods gives every DC worker whose Server has a pod CIDR its pods.
func (w *World) AddDCPods(ctx context.Context) error {
	for _, s := range w.Sites {
		for _, n := range s.Nodes {
			if n.PodCIDR.IsValid() {
				continue
			}
			var srv v1.Server
			if err := w.Client.Get(ctx, client.ObjectKey{Namespace: s.Name, Name: n.Name}, &srv); err != nil {
				return err
			}
			p, err := netip.ParsePrefix(srv.Status.PodCIDR)
			if err != nil {
				return fmt.Errorf("Server %s/%s has no pod CIDR yet (%q)", s.Name, n.Name, srv.Status.PodCIDR)
			}
			n.PodCIDR = p
			if err := w.Pods.AddPods(w.Prefix, n, w.opts.PodsPerNode); err != nil {
				return err
			}
		}
	}
	return nil
}

// StartNodeAgents runs stargate-nodeagent for every DC worker that has
// pods, checking the worker's namespace (--netns) from the host's, where
// it reaches the API on loopback: the AKS routes must leave through the
// datacenter's gateway, the pod CIDR must be on the pod bridge, and the
// CiliumNode must carry the Server's CIDR. It checks every interval.
func (w *World) StartNodeAgents(interval time.Duration) error {
	for _, s := range w.Sites {
		for _, n := range s.Nodes {
			if len(n.Pods) == 0 {
				continue
			}
			p, err := startProcess("", filepath.Join(w.Dir, "nodeagent-"+n.Name+".log"), nil, w.NodeAgentBin,
				"--kubeconfig="+w.Kube.ControlPlane.AdminKubeconfig, "--node-name="+n.Name, "--netns="+n.NetNS,
				"--remote-cidrs="+strings.Join(AKSRoutes, ","), "--pod-cidr-device=cbr0",
				"--interval="+interval.String(), "--heartbeat=1m", "--listen-address=")
			if err != nil {
				return err
			}
			w.NodeAgents = append(w.NodeAgents, p)
		}
	}
	return nil
}

// SiteOf is the site of a pod by its name.
func (w *World) SiteOf(pod string) string {
	for _, p := range w.Pods.All() {
		if p.Name == pod {
			return p.Node.Site
		}
	}
	return "?"
}

// Close stops everything and deletes every namespace, in reverse order.
func (w *World) Close() error {
	var errs []error
	if w.Controller != nil {
		errs = append(errs, w.Controller.Stop())
	}
	for _, p := range w.NodeAgents {
		errs = append(errs, p.Stop())
	}
	errs = append(errs, w.Pods.Close())
	for i := len(w.closers) - 1; i >= 0; i-- {
		errs = append(errs, w.closers[i]())
	}
	for i := len(w.netns) - 1; i >= 0; i-- {
		errs = append(errs, netns.Delete(w.netns[i]))
	}
	return errors.Join(errs...)
}
