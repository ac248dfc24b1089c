package nodes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stargate-k8s/stargate/test/framework"
)

// Options configure StartCluster.
type Options struct {
	// Nodes are the nodes to run, at most MaxNodes.
	Nodes []NodeOptions
	// Images are image archives (OCI layout or docker-archive tars, such
	// as `make images` writes to bin/images) imported into every node's
	// containerd, besides SandboxImage and NetcheckImage.
	Images []string
	// ReadyTimeout bounds the wait for every Node to be Ready; 3 minutes
	// when zero.
	ReadyTimeout time.Duration
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// NodeOptions configure one node.
type NodeOptions struct {
	// Name is the Node's name (and hostname); short, DNS-label-like.
	Name string
	// Labels are the Node's labels (kubelet --node-labels).
	Labels map[string]string
	// BootstrapKubeconfig, when set, is a kubeconfig (e.g. with a bootstrap
	// token) the kubelet uses for TLS bootstrap (--bootstrap-kubeconfig):
	// it asks for its client certificate with a CSR that someone must
	// approve. Otherwise the node gets a client certificate
	// system:node:NAME (group system:nodes) from the kube-apiserver's
	// client CA.
	BootstrapKubeconfig string
	// ServerTLSBootstrap makes the kubelet ask for its serving certificate
	// with a CSR too (kubelet serverTLSBootstrap) instead of signing one
	// itself.
	ServerTLSBootstrap bool
	// PodBridge names the node's CNI bridge, the device its pod CIDR is
	// routed to; srncni0 when empty. A Stargate worker's node agent checks
	// that the pod CIDR is routed to Cilium's host device
	// (artifacts/nodeagent: --pod-cidr-device=cilium_host): naming the
	// bridge cilium_host lets that check hold on a node without Cilium.
	PodBridge string
	// SSH, when set, makes the node a server to provision (see AddNode):
	// sshd runs in its namespace and none of its daemons start until
	// someone logs in and runs its StartScript.
	SSH *SSHOptions
}

// Cluster is kube-scheduler and a set of real nodes against one control plane.
type Cluster struct {
	cp        *framework.ControlPlane
	scheduler *framework.Scheduler
	Nodes     []*Node
	logf      func(format string, args ...any)

	stopCNI context.CancelFunc
	cniDone chan struct{}
	// mu guards cniErr, and Nodes against AddNode while the CNI renderer
	// reads it.
	mu     sync.Mutex
	cniErr error

	bins  binaries
	creds *credentials
	// images are the archives every node imports, tags the names TagImage
	// gave, so that nodes added later hold the same images.
	images []string
	tags   [][2]string
	// jumpHosts are SSH hosts without a kubelet (StartJumpHost).
	jumpHosts []*Node
}

// Node is one real node: its network namespace, directory and processes.
type Node struct {
	Name  string
	IP    string
	NetNS string
	Dir   string

	// HostKey is the node's sshd host key (Ed25519, authorized_keys
	// form) when it runs sshd (NodeOptions.SSH, StartJumpHost).
	HostKey string
	// StartScript starts the node's daemons when it was added with
	// NodeOptions.SSH: see AddNode.
	StartScript string

	index  int
	paths  nodePaths
	bridge string
	procs  []*process // started in this order, stopped in reverse
	// podCIDR is the CIDR the CNI configuration and routes are rendered
	// for; "" until the Node has one.
	podCIDR string
}

// StartCluster starts kube-scheduler and the nodes of opts against cp,
// which must serve on BridgeIP (HostWorldOptions), and waits until every
// Node is Ready. On error everything started is stopped again.
func StartCluster(ctx context.Context, h *Host, cp *framework.ControlPlane, opts Options) (_ *Cluster, err error) {
	if h == nil || h.lock == nil {
		return nil, errors.New("StartCluster needs the Host of SetUpHost")
	}
	if len(opts.Nodes) == 0 || len(opts.Nodes) > MaxNodes {
		return nil, fmt.Errorf("%d nodes: want 1 to %d (the /%d pod CIDRs in %s)", len(opts.Nodes), MaxNodes, PodCIDRMaskSize, ClusterCIDR)
	}
	if !strings.Contains(cp.Config.Host, "//"+BridgeIP+":") {
		return nil, fmt.Errorf("kube-apiserver serves on %s, which nodes cannot reach: start the world with nodes.HostWorldOptions", cp.Config.Host)
	}
	bins, err := findBinaries(cp.Binaries.Dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cp: cp, logf: opts.Logf, bins: bins}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop(context.Background()))
		}
	}()

	c.logf("starting kube-scheduler")
	if c.scheduler, err = cp.StartScheduler(ctx); err != nil {
		return nil, err
	}

	shared := filepath.Join(BaseDir, "shared")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		return nil, err
	}
	creds, err := c.sharedCredentials(shared)
	if err != nil {
		return nil, err
	}
	c.creds = creds
	root, err := framework.RepoRoot()
	if err != nil {
		return nil, err
	}
	c.logf("building the sandbox and netcheck images")
	images, err := buildNodeImages(ctx, root, shared)
	if err != nil {
		return nil, err
	}
	images = append(images, opts.Images...)
	c.images = images

	for i, no := range opts.Nodes {
		if no.SSH != nil {
			return nil, fmt.Errorf("node %s: NodeOptions.SSH is for AddNode", no.Name)
		}
		n := newNode(no, i+1)
		c.Nodes = append(c.Nodes, n)
		c.logf("starting node %s (%s)", n.Name, n.IP)
		if err := c.startNode(ctx, n, no, bins, creds, images); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}

	for _, n := range c.Nodes {
		if err := c.startKubeProxy(ctx, n, bins); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}

	cniCtx, cancel := context.WithCancel(context.Background())
	c.stopCNI, c.cniDone = cancel, make(chan struct{})
	go c.renderPodNetworks(cniCtx)

	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	if err := c.WaitReady(ctx, timeout); err != nil {
		return nil, err
	}
	return c, nil
}

// binaries are the programs of a node.
type binaries struct {
	dir                                 string
	kubelet, kubeProxy, containerd, ctr string
}

func findBinaries(dir string) (binaries, error) {
	b := binaries{
		dir:        dir,
		kubelet:    filepath.Join(dir, "kubelet"),
		kubeProxy:  filepath.Join(dir, "kube-proxy"),
		containerd: filepath.Join(dir, "containerd"),
		ctr:        filepath.Join(dir, "ctr"),
	}
	var missing []string
	for _, p := range []string{b.kubelet, b.kubeProxy, b.containerd, b.ctr, filepath.Join(dir, "containerd-shim-runc-v2"), filepath.Join(dir, "kube-scheduler")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, filepath.Base(p))
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("%s missing in %s: run hack/install-node-bins.sh", strings.Join(missing, ", "), dir)
	}
	return b, nil
}

// credentials shared by all nodes.
type credentials struct {
	apiCA        string // verifies kube-apiserver's serving certificate
	kubeletCA    string // kube-apiserver's client certificate to kubelets
	clientCA     *framework.CA
	proxyConfig  string // kube-proxy's kubeconfig (system:kube-proxy)
	serverURL    string
	clientCAFile string
}

func (c *Cluster) sharedCredentials(dir string) (*credentials, error) {
	cr := &credentials{
		apiCA:     filepath.Join(dir, "apiserver-ca.crt"),
		kubeletCA: filepath.Join(dir, "kubelet-client-ca.crt"),
		serverURL: c.cp.Config.Host,
	}
	if err := os.WriteFile(cr.apiCA, c.cp.Config.CAData, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cr.kubeletCA, c.cp.KubeletClientCA.CertPEM, 0o644); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := c.cp.ClientCA()
	if err != nil {
		return nil, err
	}
	if cr.clientCA, err = framework.LoadCA(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("kube-apiserver's client CA: %w", err)
	}
	// The bootstrap ClusterRoleBinding system:node-proxier grants kube-proxy
	// its rights by this user name.
	kp, err := cr.clientCA.ClientCert("system:kube-proxy")
	if err != nil {
		return nil, err
	}
	cert, key, err := kp.Write(dir, "kube-proxy")
	if err != nil {
		return nil, err
	}
	cr.proxyConfig = filepath.Join(dir, "kube-proxy.kubeconfig")
	if err := writeFile(cr.proxyConfig, kubeconfig(cr.serverURL, cr.apiCA, cert, key)); err != nil {
		return nil, err
	}
	return cr, nil
}

// newNode is the index-th node (1-based) of a cluster.
func newNode(no NodeOptions, index int) *Node {
	n := &Node{
		Name:   no.Name,
		IP:     fmt.Sprintf("198.51.100.%d", 10+index),
		NetNS:  netnsName(no.Name),
		index:  index,
		paths:  pathsOf(no.Name),
		bridge: no.PodBridge,
	}
	if n.bridge == "" {
		n.bridge = "srncni0"
	}
	n.Dir = n.paths.dir
	return n
}

func (c *Cluster) startNode(ctx context.Context, n *Node, no NodeOptions, bins binaries, cr *credentials, images []string) error {
	kubeletArgs, err := c.prepareNode(n, no, cr)
	if err != nil {
		return err
	}
	env := []string{"PATH=" + bins.dir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	containerd, err := n.start("containerd", env, bins.containerd, "--config", n.paths.containerdCfg)
	if err != nil {
		return err
	}
	if err := waitSocket(ctx, containerd, n.paths.socket, 30*time.Second); err != nil {
		return err
	}
	for _, img := range images {
		if err := n.importImage(ctx, bins.ctr, img); err != nil {
			return err
		}
	}
	if _, err := n.start("kubelet", env, bins.kubelet, kubeletArgs...); err != nil {
		return err
	}
	return nil
}

// prepareNode makes the node's network, cgroups, directories and
// configuration files, and returns the kubelet's arguments.
func (c *Cluster) prepareNode(n *Node, no NodeOptions, cr *credentials) ([]string, error) {
	p := n.paths
	for _, d := range []string{p.containerd, p.state, p.runcRoot, p.cniConfDir, p.cniDataDir, p.kubeletRoot, p.podLogs, p.volumePlugins, p.pki} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The node's network: a veth from the host bridge into its namespace,
	// forwarding on inside it (for its pods), no default route. The
	// Service range is routed onto the bridge (no gateway) so that a
	// connect from the node itself (a hostNetwork pod, e.g. an in-cluster
	// client to Service kubernetes) gets past the routing lookup to
	// kube-proxy's DNAT; a packet no rule rewrites finds no neighbour there
	// and goes nowhere.
	hostEnd := fmt.Sprintf("%sv%d", Prefix, n.index)
	if err := ipCmds(
		[]string{"netns", "add", n.NetNS},
		[]string{"link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", n.NetNS},
		[]string{"link", "set", hostEnd, "master", BridgeName, "up"},
		[]string{"-n", n.NetNS, "addr", "add", n.IP + "/25", "dev", "eth0"},
		[]string{"-n", n.NetNS, "link", "set", "eth0", "up"},
		[]string{"-n", n.NetNS, "link", "set", "lo", "up"},
		[]string{"-n", n.NetNS, "route", "add", ServiceCIDR, "dev", "eth0"},
	); err != nil {
		return nil, err
	}
	if err := n.nsRun("sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	if err := makeCgroups(cgroupName(n.Name)); err != nil {
		return nil, err
	}

	if err := writeFile(p.containerdCfg, containerdConfig(p)); err != nil {
		return nil, err
	}
	kubeletArgs := []string{
		"--config=" + p.kubeletCfg,
		"--kubeconfig=" + p.kubeconfig,
		"--cert-dir=" + p.pki,
		"--root-dir=" + p.kubeletRoot,
		"--hostname-override=" + n.Name,
		"--node-ip=" + n.IP,
		"--v=2",
	}
	switch {
	case no.SSH != nil:
		// The start script adds the bootstrap kubeconfig it is given.
	case no.BootstrapKubeconfig != "":
		kubeletArgs = append(kubeletArgs, "--bootstrap-kubeconfig="+no.BootstrapKubeconfig)
	default:
		kp, err := cr.clientCA.ClientCert("system:node:"+n.Name, "system:nodes")
		if err != nil {
			return nil, err
		}
		cert, key, err := kp.Write(p.pki, "kubelet-client")
		if err != nil {
			return nil, err
		}
		if err := writeFile(p.kubeconfig, kubeconfig(cr.serverURL, cr.apiCA, cert, key)); err != nil {
			return nil, err
		}
	}
	if len(no.Labels) > 0 {
		var l []string
		for k, v := range no.Labels {
			l = append(l, k+"="+v)
		}
		kubeletArgs = append(kubeletArgs, "--node-labels="+strings.Join(l, ","))
	}
	if err := writeFile(p.kubeletCfg, kubeletConfig(p, n.Name, n.IP, cr.kubeletCA, no.ServerTLSBootstrap)); err != nil {
		return nil, err
	}
	if err := writeFile(p.proxyCfg, kubeProxyConfig(n.Name, cr.proxyConfig)); err != nil {
		return nil, err
	}
	return kubeletArgs, nil
}

// startKubeProxy starts kube-proxy once the node's Node is registered with
// its InternalIP: a kube-proxy that starts earlier finds no node IP and
// exits as soon as the Node gets one.
func (c *Cluster) startKubeProxy(ctx context.Context, n *Node, bins binaries) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		node, err := c.cp.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err == nil && slices.ContainsFunc(node.Status.Addresses, func(a corev1.NodeAddress) bool {
			return a.Type == corev1.NodeInternalIP && a.Address == n.IP
		}) {
			break
		}
		for _, p := range n.procs {
			if p.exited() {
				return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, tailFile(p.log, 20))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Node %s not registered with InternalIP %s within 2m (last error: %v)", n.Name, n.IP, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	env := []string{"PATH=" + bins.dir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	_, err := n.start("kube-proxy", env, bins.kubeProxy, "--config="+n.paths.proxyCfg, "--v=2")
	return err
}

// ImportImage imports an image archive into every node's containerd
// (namespace k8s.io, where the kubelet looks).
func (c *Cluster) ImportImage(ctx context.Context, archive string) error {
	bins, err := findBinaries(c.cp.Binaries.Dir)
	if err != nil {
		return err
	}
	for _, n := range c.nodes() {
		if err := n.importImage(ctx, bins.ctr, archive); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.images = append(c.images, archive)
	c.mu.Unlock()
	return nil
}

// TagImage gives an image every node holds another name (ctr images tag),
// e.g. a tag other than latest, which the kubelet does not pull by default.
func (c *Cluster) TagImage(ctx context.Context, ref, newRef string) error {
	bins, err := findBinaries(c.cp.Binaries.Dir)
	if err != nil {
		return err
	}
	for _, n := range c.nodes() {
		cmd := exec.CommandContext(ctx, bins.ctr, "--address", n.paths.socket, "-n", "k8s.io", "images", "tag", "--force", ref, newRef)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ctr images tag %s %s on %s: %w: %s", ref, newRef, n.Name, err, strings.TrimSpace(string(out)))
		}
	}
	c.mu.Lock()
	c.tags = append(c.tags, [2]string{ref, newRef})
	c.mu.Unlock()
	return nil
}

// nodes is a copy of Nodes, taken under the lock AddNode appends under.
func (c *Cluster) nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.Nodes)
}

func (n *Node) importImage(ctx context.Context, ctr, archive string) error {
	cmd := exec.CommandContext(ctx, ctr, "--address", n.paths.socket, "-n", "k8s.io", "images", "import", archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr images import %s into %s: %w: %s", archive, n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nsRun runs a command in the node's network namespace.
func (n *Node) nsRun(args ...string) error {
	full := append([]string{"--net=" + filepath.Join(netnsDir, n.NetNS), "--"}, args...)
	if out, err := exec.Command("nsenter", full...).CombinedOutput(); err != nil {
		return fmt.Errorf("nsenter --net %s %s: %w: %s", n.NetNS, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// makeCgroups makes the node's cgroup root in every v1 hierarchy (cpuset
// with its parent's CPUs and memory nodes, without which nothing can join
// it) and NAME.daemons in the pids hierarchy for the node's daemons.
func makeCgroups(name string) error {
	hierarchies, err := os.ReadDir(cgroupMount)
	if err != nil {
		return err
	}
	for _, h := range hierarchies {
		top := filepath.Join(cgroupMount, h.Name())
		if _, err := os.Stat(filepath.Join(top, "cgroup.procs")); err != nil {
			continue // not a hierarchy
		}
		if _, err := os.Stat(filepath.Join(top, "cgroup.controllers")); err == nil {
			continue // the cgroup v2 side of a hybrid setup: the kubelet uses v1
		}
		dirs := []string{filepath.Join(top, name)}
		if h.Name() == "pids" {
			dirs = append(dirs, filepath.Join(top, name+".daemons"))
		}
		for _, d := range dirs {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("make cgroup %s: %w", d, err)
			}
			if h.Name() == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(top, f))
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
						return fmt.Errorf("%s: %w", filepath.Join(d, f), err)
					}
				}
			}
		}
	}
	return nil
}

// WaitReady waits until every node's Node is Ready.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var notReady []string
		for _, n := range c.Nodes {
			if why := c.notReady(ctx, n); why != "" {
				notReady = append(notReady, n.Name+": "+why)
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var logs strings.Builder
			for _, n := range c.Nodes {
				for _, p := range n.procs {
					fmt.Fprintf(&logs, "\n--- %s %s (%s):\n%s", n.Name, p.name, p.log, tailFile(p.log, 15))
				}
			}
			return fmt.Errorf("nodes not Ready within %s: %s%s", timeout, strings.Join(notReady, "; "), logs.String())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (c *Cluster) notReady(ctx context.Context, n *Node) string {
	for _, p := range n.procs {
		if p.exited() {
			return fmt.Sprintf("%s exited: %v", p.name, p.err)
		}
	}
	if err := c.cniError(); err != nil {
		return err.Error()
	}
	node, err := c.cp.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return ""
			}
			return fmt.Sprintf("Ready=%s %s: %s", cond.Status, cond.Reason, cond.Message)
		}
	}
	return "no Ready condition yet"
}

// Node returns the node named name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Stop tears the nodes down in order: the pods bound to them are deleted
// and waited for (so the kubelets stop their containers and release their
// addresses), kube-proxy, kubelet and containerd get SIGTERM, whatever is
// left in the node's cgroups (shims, containers) SIGKILL; then mounts
// under the node's directory are undone, the network namespace, Node
// object, cgroups and directory removed, and kube-scheduler stopped. It
// goes on past errors and returns them all.
func (c *Cluster) Stop(ctx context.Context) error {
	if c == nil {
		return nil
	}
	var errs []error
	if c.stopCNI != nil {
		c.stopCNI()
		<-c.cniDone
		c.stopCNI = nil
	}
	if len(c.Nodes) > 0 {
		if err := c.deletePods(ctx, 60*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(c.Nodes) - 1; i >= 0; i-- {
		if err := c.Nodes[i].stop(); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", c.Nodes[i].Name, err))
		}
		err := c.cp.Kube.CoreV1().Nodes().Delete(ctx, c.Nodes[i].Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete Node %s: %w", c.Nodes[i].Name, err))
		}
	}
	for _, j := range c.jumpHosts {
		if err := j.stop(); err != nil {
			errs = append(errs, fmt.Errorf("jump host %s: %w", j.Name, err))
		}
	}
	c.jumpHosts = nil
	c.mu.Lock()
	c.Nodes = nil
	c.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(BaseDir, "shared")); err != nil {
		errs = append(errs, err)
	}
	if err := c.scheduler.Stop(); err != nil {
		errs = append(errs, err)
	}
	c.scheduler = nil
	return errors.Join(errs...)
}

// deletePods cordons the nodes, deletes every pod bound to them and waits
// until they are gone; a pod still there after timeout (a DaemonSet's,
// made anew) is force-deleted (its containers die with the node's cgroups).
func (c *Cluster) deletePods(ctx context.Context, timeout time.Duration) error {
	// Cordoned first, so that what a controller makes anew in place of a
	// deleted pod (a ReplicaSet's) stays Pending instead of landing here.
	for _, n := range c.Nodes {
		patch := []byte(`{"spec":{"unschedulable":true}}`)
		if _, err := c.cp.Kube.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cordon %s: %w", n.Name, err)
		}
	}
	pods := c.cp.Kube.CoreV1().Pods(metav1.NamespaceAll)
	list := func() ([]corev1.Pod, error) {
		var all []corev1.Pod
		for _, n := range c.Nodes {
			l, err := pods.List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", n.Name).String()})
			if err != nil {
				return nil, err
			}
			all = append(all, l.Items...)
		}
		return all, nil
	}
	deadline := time.Now().Add(timeout)
	for {
		left, err := list()
		if err != nil {
			return fmt.Errorf("list pods of the nodes: %w", err)
		}
		if len(left) == 0 {
			return nil
		}
		force := time.Now().After(deadline)
		for _, p := range left {
			opts := metav1.DeleteOptions{}
			if force {
				zero := int64(0)
				opts.GracePeriodSeconds = &zero
			}
			if p.DeletionTimestamp == nil || force {
				if err := c.cp.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, opts); err != nil && !apierrors.IsNotFound(err) {
					return fmt.Errorf("delete pod %s/%s: %w", p.Namespace, p.Name, err)
				}
			}
		}
		if force {
			c.logf("pods still on the nodes after %s, force-deleted", timeout)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// stop ends the node's processes (newest first, SIGTERM, then SIGKILL),
// kills what is left in its cgroups, undoes its mounts and removes its
// network namespace, cgroups and directory.
func (n *Node) stop() error {
	var errs []error
	for i := len(n.procs) - 1; i >= 0; i-- {
		n.procs[i].stop(10 * time.Second)
	}
	cg := cgroupName(n.Name)
	if err := killAll(func() []int { return cgroupProcs(cg) }, 15*time.Second); err != nil {
		errs = append(errs, err)
	}
	for _, m := range nodeMounts() {
		if m == n.Dir || strings.HasPrefix(m, n.Dir+"/") || m == filepath.Join(netnsDir, n.NetNS) {
			if err := unmount(m); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := ipCmds([]string{"netns", "delete", n.NetNS}); err != nil {
		errs = append(errs, err)
	}
	var dirs []string
	for _, d := range nodeCgroups() {
		base := strings.SplitN(strings.TrimPrefix(d, cgroupMount+"/"), "/", 3)
		if len(base) >= 2 && (base[1] == cg || base[1] == cg+".daemons") {
			dirs = append(dirs, d)
		}
	}
	errs = append(errs, removeCgroups(dirs)...)
	if err := os.RemoveAll(n.Dir); err != nil {
		errs = append(errs, err)
	}
	for _, f := range cniCacheFiles() {
		if data, err := os.ReadFile(f); err == nil && strings.Contains(string(data), n.Dir+"/") || strings.HasPrefix(filepath.Base(f), cniNetwork(n.Name)+"-") {
			_ = os.Remove(f)
		}
	}
	return errors.Join(errs...)
}

// cgroupProcs lists the processes in the pids hierarchy's cgroups of a node.
func cgroupProcs(cg string) []int {
	var pids []int
	for _, root := range []string{filepath.Join(cgroupMount, "pids", cg), filepath.Join(cgroupMount, "pids", cg+".daemons")} {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			data, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			for _, f := range strings.Fields(string(data)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// RSS is the resident memory of the node's processes (its daemons, shims
// and containers: everything in its cgroups), in bytes.
func (n *Node) RSS() uint64 {
	var total uint64
	for _, pid := range cgroupProcs(cgroupName(n.Name)) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				var kb uint64
				if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb); err == nil {
					total += kb << 10
				}
			}
		}
	}
	return total
}

// ctr runs ctr against the node's containerd in namespace k8s.io.
func (n *Node) ctr(ctx context.Context, ctrBin string, args ...string) error {
	full := append([]string{"--address", n.paths.socket, "-n", "k8s.io"}, args...)
	if out, err := exec.CommandContext(ctx, ctrBin, full...).CombinedOutput(); err != nil {
		return fmt.Errorf("ctr %s on %s: %w: %s", strings.Join(args, " "), n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
