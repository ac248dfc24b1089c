package nodes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stargate-k8s/stargate/test/framework"
)

// The address plan (see the package doc) and the names this package gives
// what it makes.
const (
	BridgeName      = "srnbr0"
	BridgeIP        = "198.51.100.1"
	NodeNetwork     = "198.51.100.0/25"
	ServiceCIDR     = "198.51.100.128/26"
	ClusterCIDR     = "198.51.100.192/26"
	PodCIDRMaskSize = 28
	// MaxNodes is how many /28 pod CIDRs ClusterCIDR holds.
	MaxNodes = 4
	// Prefix starts the name of every network namespace, link and cgroup
	// made here.
	Prefix = "srn"
	// BaseDir holds every node's files. Paths under it must stay short:
	// containerd's socket path is limited to 107 bytes.
	BaseDir = "/var/lib/stargate-test-nodes"

	cgroupMount = "/sys/fs/cgroup"
	netnsDir    = "/run/netns"
	// cniCacheDir is where libcni (in containerd) caches results, named
	// after the network: srn-NAME-...
	cniCacheDir = "/var/lib/cni/results"
	// shimSockets is where containerd's shims put their sockets (fixed in
	// containerd, named by a hash); a shim that was killed leaves its
	// socket behind.
	shimSockets = "/run/containerd/s"
	// containerLogLinks is where every kubelet links its containers' logs
	// (fixed in the kubelet); the links of these nodes point into BaseDir.
	containerLogLinks = "/var/log/containers"
)

// Host is the part of the host a run of real nodes owns: the lock, the
// bridge and BaseDir.
type Host struct {
	lock *os.File
	logf func(format string, args ...any)
}

// HostOptions configure SetUpHost.
type HostOptions struct {
	// LockTimeout bounds the wait for another run's lock; 10 minutes when zero.
	LockTimeout time.Duration
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// SetUpHost takes the lock of real nodes on this machine, sweeps leftovers
// of an earlier run that was killed, and makes the host bridge srnbr0 with
// BridgeIP. Call it before starting the control plane, which binds to
// BridgeIP (see HostWorldOptions); Close undoes it.
func SetUpHost(ctx context.Context, opts HostOptions) (_ *Host, err error) {
	if err := framework.RequireRoot("real nodes (network namespaces, cgroups, mounts)"); err != nil {
		return nil, err
	}
	for _, tool := range []string{"ip", "nsenter", "runc", "iptables", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: run hack/install-deps.sh (as root): %w", tool, err)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return nil, fmt.Errorf("CNI plugins missing (/usr/lib/cni/bridge): run hack/install-deps.sh (as root): %w", err)
	}
	h := &Host{logf: opts.Logf}
	if h.logf == nil {
		h.logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(BaseDir, 0o755); err != nil {
		return nil, err
	}
	if h.lock, err = os.OpenFile(filepath.Join(BaseDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644); err != nil {
		return nil, err
	}
	timeout := opts.LockTimeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	for waited := false; ; waited = true {
		err := syscall.Flock(int(h.lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			h.lock.Close()
			return nil, fmt.Errorf("lock %s (another run of real nodes holds it?): %w", h.lock.Name(), err)
		}
		if !waited {
			h.logf("another run of real nodes holds %s; waiting for it", h.lock.Name())
		}
		select {
		case <-ctx.Done():
			h.lock.Close()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, h.Close())
		}
	}()
	if left := Leftovers(); len(left) > 0 {
		h.logf("sweeping leftovers of an earlier run: %s", strings.Join(left, "; "))
		if err := Sweep(); err != nil {
			return nil, fmt.Errorf("sweep leftovers of an earlier run: %w", err)
		}
	}
	if err := ipCmds(
		[]string{"link", "add", BridgeName, "type", "bridge"},
		[]string{"addr", "add", BridgeIP + "/25", "dev", BridgeName},
		[]string{"link", "set", BridgeName, "up"},
	); err != nil {
		return nil, err
	}
	return h, nil
}

// HostWorldOptions sets the address plan on opts: kube-apiserver on
// BridgeIP with ServiceCIDR, kube-controller-manager allocating /28 pod
// CIDRs out of ClusterCIDR.
func HostWorldOptions(opts *framework.WorldOptions) {
	opts.APIServerBindAddress = BridgeIP
	opts.ServiceClusterIPRange = ServiceCIDR
	opts.ControllerManager.ClusterCIDR = ClusterCIDR
	opts.ControllerManager.NodeCIDRMaskSize = PodCIDRMaskSize
}

// Close sweeps everything of real nodes that is left (the bridge with its
// routes included) and releases the lock. Stop every Cluster first.
func (h *Host) Close() error {
	if h == nil || h.lock == nil {
		return nil
	}
	err := Sweep()
	_ = syscall.Flock(int(h.lock.Fd()), syscall.LOCK_UN)
	h.lock.Close()
	h.lock = nil
	return err
}

// Leftovers lists what real nodes leave on the host: processes in srn-*
// cgroups or running from BaseDir, mounts under BaseDir or of srn-*
// network namespaces, srn-* network namespaces and links, srn-* cgroups,
// files in BaseDir (but its lock) and libcni cache entries of srn-*
// networks. Empty means clean.
func Leftovers() []string {
	var left []string
	for _, pid := range nodeProcesses() {
		left = append(left, fmt.Sprintf("process %d (%s)", pid, procName(pid)))
	}
	for _, m := range nodeMounts() {
		left = append(left, "mount "+m)
	}
	for _, ns := range prefixed(netnsDir) {
		left = append(left, "network namespace "+ns)
	}
	for _, l := range hostLinks() {
		left = append(left, "link "+l)
	}
	for _, cg := range nodeCgroups() {
		left = append(left, "cgroup "+cg)
	}
	entries, _ := os.ReadDir(BaseDir)
	for _, e := range entries {
		if e.Name() != ".lock" {
			left = append(left, "file "+filepath.Join(BaseDir, e.Name()))
		}
	}
	for _, f := range cniCacheFiles() {
		left = append(left, "file "+f)
	}
	for _, l := range logLinks() {
		left = append(left, "log link "+l)
	}
	for _, s := range staleShimSockets() {
		left = append(left, "stale shim socket "+s)
	}
	return left
}

// Sweep removes everything Leftovers finds, in order: processes (SIGKILL,
// until none is left), mounts (deepest first, lazily), network namespaces,
// links, cgroups (deepest first), files.
func Sweep() error {
	var errs []error
	if err := killAll(nodeProcesses, 15*time.Second); err != nil {
		errs = append(errs, err)
	}
	for _, m := range nodeMounts() {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	// Links first: deleting a host end of a veth deletes its peer in the
	// namespace; a link that went away meanwhile is no error.
	for _, l := range hostLinks() {
		if err := ipCmds([]string{"link", "delete", l}); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	for _, ns := range prefixed(netnsDir) {
		if err := ipCmds([]string{"netns", "delete", ns}); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, removeCgroups(nodeCgroups())...)
	entries, _ := os.ReadDir(BaseDir)
	for _, e := range entries {
		if e.Name() != ".lock" {
			if err := os.RemoveAll(filepath.Join(BaseDir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, f := range append(append(cniCacheFiles(), logLinks()...), staleShimSockets()...) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killAll SIGKILLs what list returns until it returns nothing, or fails
// after timeout.
func killAll(list func() []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids := list()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var names []string
			for _, p := range pids {
				names = append(names, fmt.Sprintf("%d (%s)", p, procName(p)))
			}
			return fmt.Errorf("processes still running after SIGKILL: %s", strings.Join(names, ", "))
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nodeProcesses are the processes in an srn-* cgroup of the pids hierarchy
// (every node's daemons and containers) and any process whose command line
// names BaseDir (a daemon that a killed run started but had not yet moved).
func nodeProcesses() []int {
	seen := map[int]bool{}
	for _, cg := range nodeCgroups() {
		if !strings.HasPrefix(cg, filepath.Join(cgroupMount, "pids")+"/") {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				seen[pid] = true
			}
		}
	}
	procs, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte(BaseDir+"/")) {
			seen[pid] = true
		}
	}
	var pids []int
	for pid := range seen {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

func procName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// nodeMounts are this mount namespace's mounts under BaseDir or of srn-*
// network namespaces, deepest first.
func nodeMounts() []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if strings.HasPrefix(mp, BaseDir+"/") || strings.HasPrefix(mp, netnsDir+"/"+Prefix+"-") {
			mounts = append(mounts, mp)
		}
	}
	// Later mounts may stack on earlier ones: undo them in reverse order,
	// deepest paths first.
	sort.SliceStable(mounts, func(i, j int) bool { return strings.Count(mounts[i], "/") > strings.Count(mounts[j], "/") })
	return mounts
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// nodeCgroups are the srn-* cgroups (and everything under them) of every
// hierarchy, deepest first.
func nodeCgroups() []string {
	hierarchies, _ := os.ReadDir(cgroupMount)
	var dirs []string
	for _, h := range hierarchies {
		top := filepath.Join(cgroupMount, h.Name())
		for _, name := range prefixed(top) {
			root := filepath.Join(top, name)
			_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, path)
				}
				return nil
			})
		}
	}
	sort.SliceStable(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

// removeCgroups removes cgroup directories (deepest first), retrying a
// moment while the kernel still releases a dying one.
func removeCgroups(dirs []string) []error {
	var errs []error
	for _, d := range dirs {
		var err error
		for i := 0; i < 50; i++ {
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errs
}

// prefixed lists the entries of dir whose names start with Prefix.
func prefixed(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), Prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// hostLinks are the srn* links of the host's network namespace.
func hostLinks() []string {
	entries, _ := os.ReadDir("/sys/class/net")
	var links []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), Prefix) {
			links = append(links, e.Name())
		}
	}
	return links
}

// cniCacheFiles are libcni's cached results of the nodes' pods: those of
// their networks (srn-NAME) and of the loopback network, whose files name
// the pod's network namespace under BaseDir.
func cniCacheFiles() []string {
	entries, _ := os.ReadDir(cniCacheDir)
	var files []string
	for _, e := range entries {
		path := filepath.Join(cniCacheDir, e.Name())
		if strings.HasPrefix(e.Name(), Prefix) {
			files = append(files, path)
			continue
		}
		if data, err := os.ReadFile(path); err == nil && bytes.Contains(data, []byte(BaseDir+"/")) {
			files = append(files, path)
		}
	}
	return files
}

// staleShimSockets are shim sockets nothing listens on any more.
func staleShimSockets() []string {
	entries, _ := os.ReadDir(shimSockets)
	var stale []string
	for _, e := range entries {
		path := filepath.Join(shimSockets, e.Name())
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			stale = append(stale, path)
		}
	}
	return stale
}

// logLinks are the links in /var/log/containers into BaseDir.
func logLinks() []string {
	entries, _ := os.ReadDir(containerLogLinks)
	var links []string
	for _, e := range entries {
		path := filepath.Join(containerLogLinks, e.Name())
		if target, err := os.Readlink(path); err == nil && strings.HasPrefix(target, BaseDir+"/") {
			links = append(links, path)
		}
	}
	return links
}

// ipCmds runs ip with each argument list in turn.
func ipCmds(cmds ...[]string) error {
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}
