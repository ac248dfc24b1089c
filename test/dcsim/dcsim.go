// Package dcsim simulates a remote datacenter on one Linux machine with
// network namespaces: a "cloud" namespace standing for the cluster side of
// the tailnet, a router host (the DC router and SSH jump host) and worker
// hosts on a subnet behind it, each running OpenSSH's sshd. The workers are
// reachable only through the router, so code under test really takes the
// jump-host path. Every address lives inside a namespace the simulation
// made, from the documentation ranges (RFC 5737); the host's own network
// is never touched beyond loopback.
//
// It needs root, iproute2 and openssh-server (hack/install-deps.sh).
package dcsim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/stargate-k8s/stargate/test/netns"
)

// Addresses of the simulated networks.
const (
	// CloudIP is the cloud side's address on the tailnet link.
	CloudIP = "203.0.113.2"
	// RouterTailnetIP is the router's tailnet address: a Server's routerIP.
	RouterTailnetIP = "203.0.113.1"
	// RouterSubnetIP is the router's address on the worker subnet.
	RouterSubnetIP = "192.0.2.1"
	// WorkerSubnet is the datacenter's worker subnet.
	WorkerSubnet = "192.0.2.0/24"
	// UnusedWorkerIP is an address in the worker subnet no host has.
	UnusedWorkerIP = "192.0.2.250"
)

// HostKeyTypes are the types of the host keys every simulated host has, in
// the order of its sshd_config's HostKey lines: those of a stock Ubuntu
// host (RSA of 3072 bits, ECDSA on P-256, Ed25519), so a client meets a
// server that could present any of the three.
var HostKeyTypes = []string{ssh.KeyAlgoRSA, ssh.KeyAlgoECDSA256, ssh.KeyAlgoED25519}

// hostKeyFiles are the files of the host keys by type, named as on Ubuntu.
var hostKeyFiles = map[string]string{
	ssh.KeyAlgoRSA:      "ssh_host_rsa_key",
	ssh.KeyAlgoECDSA256: "ssh_host_ecdsa_key",
	ssh.KeyAlgoED25519:  "ssh_host_ed25519_key",
}

// Options configure Start.
type Options struct {
	// Dir holds keys, sshd configs and logs. It must exist.
	Dir string
	// Workers is the number of worker hosts (at most 200).
	Workers int
	// SSHD is the sshd program; /usr/sbin/sshd when empty.
	SSHD string
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// Host is one simulated machine with its own network namespace and sshd.
type Host struct {
	Name  string
	NetNS string
	// IP is the address the host's sshd is reached at: the tailnet address
	// for the router, the worker-subnet address for a worker.
	IP string
	// HostKey is the host's Ed25519 public key in authorized_keys form:
	// the key Fixtures pins and KnownHosts lists.
	HostKey string
	// HostSigner is the host's Ed25519 private key (to build a wrong key
	// in tests).
	HostSigner ssh.Signer
	// HostSigners are all the host's private keys by type, one of each of
	// HostKeyTypes; HostKeyOf gives their public keys.
	HostSigners map[string]ssh.Signer
	// SSHDLog is sshd's log file (LogLevel VERBOSE).
	SSHDLog string
	Dir     string

	cmd *exec.Cmd
}

// HostKeyOf returns the host's public key of type typ (one of
// HostKeyTypes) in authorized_keys form, or "" when it has none.
func (h *Host) HostKeyOf(typ string) string {
	sig, ok := h.HostSigners[typ]
	if !ok {
		return ""
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sig.PublicKey())))
}

// Sim is a running simulated datacenter.
type Sim struct {
	Dir     string
	Prefix  string
	CloudNS string
	Router  *Host
	Workers []*Host
	// ClientKeyPEM is the OpenSSH private key every host authorizes for root.
	ClientKeyPEM []byte
	ClientSigner ssh.Signer

	logf       func(string, ...any)
	mu         sync.Mutex
	forwarders []*Forwarder
	namespaces []string
}

// Check says what is missing to run a simulation, or nil.
func Check(sshd string) error {
	if sshd == "" {
		sshd = "/usr/sbin/sshd"
	}
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("the datacenter simulation needs root (network namespaces)"))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		errs = append(errs, errors.New("iproute2's ip is missing; run hack/install-deps.sh"))
	}
	if _, err := os.Stat(sshd); err != nil {
		errs = append(errs, fmt.Errorf("%s is missing; run hack/install-deps.sh (openssh-server)", sshd))
	}
	return errors.Join(errs...)
}

// Start builds the namespaces and links and starts sshd on every host. On
// error everything made so far is removed again.
func Start(ctx context.Context, opts Options) (_ *Sim, err error) {
	if opts.SSHD == "" {
		opts.SSHD = "/usr/sbin/sshd"
	}
	if err := Check(opts.SSHD); err != nil {
		return nil, err
	}
	if opts.Workers < 0 || opts.Workers > 200 {
		return nil, fmt.Errorf("workers must be between 0 and 200, not %d", opts.Workers)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rnd := make([]byte, 3)
	_, _ = rand.Read(rnd)
	s := &Sim{Dir: opts.Dir, Prefix: "sg" + hex.EncodeToString(rnd), logf: logf}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Stop())
		}
	}()
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}

	_, clientKey, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(clientKey, "stargate-dcsim")
	if err != nil {
		return nil, err
	}
	s.ClientKeyPEM = pem.EncodeToMemory(block)
	if s.ClientSigner, err = ssh.NewSignerFromKey(clientKey); err != nil {
		return nil, err
	}

	// RSA keys take a while to generate: the hosts' keys are made in the
	// background while the namespaces are built.
	keysOf, stopKeys := generateHostKeys(1 + opts.Workers)
	defer stopKeys()

	s.CloudNS = s.Prefix + "-cloud"
	routerNS := s.Prefix + "-router"
	for _, ns := range []string{s.CloudNS, routerNS} {
		if err := s.addNS(ns); err != nil {
			return nil, err
		}
	}
	// The tailnet link: cloud <-> router.
	steps := [][]string{
		{"-n", s.CloudNS, "link", "add", "tail0", "type", "veth", "peer", "name", "tail0", "netns", routerNS},
		{"-n", s.CloudNS, "addr", "add", CloudIP + "/24", "dev", "tail0"},
		{"-n", s.CloudNS, "link", "set", "tail0", "up"},
		{"-n", routerNS, "addr", "add", RouterTailnetIP + "/24", "dev", "tail0"},
		{"-n", routerNS, "link", "set", "tail0", "up"},
		{"-n", routerNS, "link", "add", "br0", "type", "bridge"},
		{"-n", routerNS, "addr", "add", RouterSubnetIP + "/24", "dev", "br0"},
		{"-n", routerNS, "link", "set", "br0", "up"},
	}
	for _, st := range steps {
		if err := netns.IP(st...); err != nil {
			return nil, err
		}
	}
	if s.Router, err = s.newHost("router", routerNS, RouterTailnetIP, true, keysOf(0)); err != nil {
		return nil, err
	}
	for i := 0; i < opts.Workers; i++ {
		name := fmt.Sprintf("worker-%d", i+1)
		ns := fmt.Sprintf("%s-w%d", s.Prefix, i+1)
		addr := fmt.Sprintf("192.0.2.%d", 10+i)
		if err := s.addNS(ns); err != nil {
			return nil, err
		}
		port := fmt.Sprintf("w%d", i+1)
		for _, st := range [][]string{
			{"-n", routerNS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", routerNS, "link", "set", port, "master", "br0"},
			{"-n", routerNS, "link", "set", port, "up"},
			{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "route", "add", "default", "via", RouterSubnetIP},
		} {
			if err := netns.IP(st...); err != nil {
				return nil, err
			}
		}
		h, err := s.newHost(name, ns, addr, false, keysOf(1+i))
		if err != nil {
			return nil, err
		}
		s.Workers = append(s.Workers, h)
	}
	for _, h := range s.Hosts() {
		if err := s.startSSHD(opts.SSHD, h); err != nil {
			return nil, err
		}
	}
	for _, h := range s.Hosts() {
		if err := s.waitSSHD(ctx, h); err != nil {
			return nil, err
		}
	}
	logf("datacenter %s up: router %s, %d workers on %s", s.Prefix, RouterTailnetIP, len(s.Workers), WorkerSubnet)
	return s, nil
}

// Hosts lists the router and the workers.
func (s *Sim) Hosts() []*Host {
	if s.Router == nil {
		return s.Workers
	}
	return append([]*Host{s.Router}, s.Workers...)
}

func (s *Sim) addNS(ns string) error {
	if err := netns.IP("netns", "add", ns); err != nil {
		return err
	}
	s.namespaces = append(s.namespaces, ns)
	return netns.IP("-n", ns, "link", "set", "lo", "up")
}

// hostKeys is one host's private keys by type.
type hostKeys struct {
	keys map[string]crypto.Signer
	err  error
}

// generateHostKeys starts generating the keys of n hosts, as many hosts
// at a time as this process may use CPUs. keysOf waits for the keys of
// host i. After stop, hosts not begun get an error instead, so a Start
// that failed does not leave key generation running.
func generateHostKeys(n int) (keysOf func(i int) hostKeys, stop func()) {
	results := make([]chan hostKeys, n)
	for i := range results {
		results[i] = make(chan hostKeys, 1)
	}
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	done := make(chan struct{})
	for range min(n, runtime.GOMAXPROCS(0)) {
		go func() {
			for i := range next {
				select {
				case <-done:
					results[i] <- hostKeys{err: errors.New("simulation stopped")}
				default:
					results[i] <- newHostKeys()
				}
			}
		}()
	}
	return func(i int) hostKeys { return <-results[i] }, sync.OnceFunc(func() { close(done) })
}

func newHostKeys() hostKeys {
	keys := map[string]crypto.Signer{}
	var err error
	for _, typ := range HostKeyTypes {
		switch typ {
		case ssh.KeyAlgoRSA:
			keys[typ], err = rsa.GenerateKey(rand.Reader, 3072)
		case ssh.KeyAlgoECDSA256:
			keys[typ], err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case ssh.KeyAlgoED25519:
			_, keys[typ], err = ed25519.GenerateKey(rand.Reader)
		}
		if err != nil {
			return hostKeys{err: fmt.Errorf("generate %s host key: %w", typ, err)}
		}
	}
	return hostKeys{keys: keys}
}

func (s *Sim) newHost(name, ns, addr string, router bool, keys hostKeys) (*Host, error) {
	if keys.err != nil {
		return nil, keys.err
	}
	h := &Host{Name: name, NetNS: ns, IP: addr, Dir: filepath.Join(s.Dir, name), HostSigners: map[string]ssh.Signer{}}
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return nil, err
	}
	// The HostKey lines of Ubuntu's sshd_config.
	var hostKeyLines []string
	for _, typ := range HostKeyTypes {
		block, err := ssh.MarshalPrivateKey(keys.keys[typ], name)
		if err != nil {
			return nil, err
		}
		file := filepath.Join(h.Dir, hostKeyFiles[typ])
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
		hostKeyLines = append(hostKeyLines, "HostKey "+file)
		if h.HostSigners[typ], err = ssh.NewSignerFromKey(keys.keys[typ]); err != nil {
			return nil, err
		}
	}
	h.HostSigner = h.HostSigners[ssh.KeyAlgoED25519]
	h.HostKey = h.HostKeyOf(ssh.KeyAlgoED25519)
	if err := os.WriteFile(filepath.Join(h.Dir, "authorized_keys"), ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey()), 0o600); err != nil {
		return nil, err
	}
	forwarding := "no"
	if router {
		forwarding = "yes"
	}
	// Each host has a home of its own: the hosts share this machine's file
	// system, and a session's shell would otherwise run whatever the
	// machine's root keeps in ~/.bashrc (a real server's root has its own,
	// which returns at once for commands that come over SSH).
	home := filepath.Join(h.Dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	h.SSHDLog = filepath.Join(h.Dir, "sshd.log")
	cfg := fmt.Sprintf(`Port 22
ListenAddress 0.0.0.0
%[4]s
PidFile %[1]s/sshd.pid
AuthorizedKeysFile %[1]s/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding %[2]s
X11Forwarding no
PrintMotd no
UseDNS no
LogLevel VERBOSE
MaxStartups 200
MaxSessions 100
Subsystem sftp internal-sftp
SetEnv HOME=%[3]s
`, h.Dir, forwarding, home, strings.Join(hostKeyLines, "\n"))
	if err := os.WriteFile(filepath.Join(h.Dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	return h, nil
}

func (s *Sim) startSSHD(sshd string, h *Host) error {
	cmd := exec.Command("ip", "netns", "exec", h.NetNS, sshd, "-D", "-f", filepath.Join(h.Dir, "sshd_config"), "-E", h.SSHDLog)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd of %s: %w", h.Name, err)
	}
	h.cmd = cmd
	return nil
}

func (s *Sim) waitSSHD(ctx context.Context, h *Host) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := netns.Dial(ctx, h.NetNS, "tcp", net.JoinHostPort(h.IP, "22"))
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(h.SSHDLog)
			return fmt.Errorf("sshd of %s did not come up: %w\n%s", h.Name, err, log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// KnownHosts returns known_hosts lines for the router and every worker,
// one per host with its Ed25519 key (HostKey).
func (s *Sim) KnownHosts() []byte {
	return s.KnownHostsOf(ssh.KeyAlgoED25519)
}

// KnownHostsOf returns known_hosts lines for the router and every worker
// with their keys of the types given (of HostKeyTypes), as
// "ssh-keyscan -t" would print them.
func (s *Sim) KnownHostsOf(types ...string) []byte {
	var b bytes.Buffer
	for _, h := range s.Hosts() {
		for _, typ := range types {
			if k := h.HostKeyOf(typ); k != "" {
				fmt.Fprintf(&b, "%s %s\n", h.IP, k)
			}
		}
	}
	return b.Bytes()
}

// DialContext dials from the cloud namespace, as the controller would
// through the tailnet.
func (s *Sim) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return netns.Dial(ctx, s.CloudNS, network, addr)
}

// ExposeToWorkers makes hostAddr (a loopback address of the host, e.g. the
// test kube-apiserver) reachable from the workers at RouterSubnetIP:port.
func (s *Sim) ExposeToWorkers(port int, hostAddr string) (*Forwarder, error) {
	f, err := ForwardIntoNS(s.Router.NetNS, net.JoinHostPort(RouterSubnetIP, strconv.Itoa(port)), hostAddr)
	if err != nil {
		return nil, err
	}
	s.track(f)
	return f, nil
}

// ExposeToCloud makes hostAddr (a loopback address of the host) reachable
// inside the cloud namespace at the same loopback address, so a process
// started with Command can use an unchanged kubeconfig.
func (s *Sim) ExposeToCloud(hostAddr string) (*Forwarder, error) {
	f, err := ForwardIntoNS(s.CloudNS, hostAddr, hostAddr)
	if err != nil {
		return nil, err
	}
	s.track(f)
	return f, nil
}

func (s *Sim) track(f *Forwarder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forwarders = append(s.forwarders, f)
}

// Command returns a command that runs in the cloud namespace (e.g.
// stargate-controller).
func (s *Sim) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", s.CloudNS, name}, args...)...)
}

// Exec runs a command on host h and returns its combined output.
func (s *Sim) Exec(h *Host, name string, args ...string) ([]byte, error) {
	return exec.Command("ip", append([]string{"netns", "exec", h.NetNS, name}, args...)...).CombinedOutput()
}

// Stop ends every process in the simulation's namespaces (sshd and what
// the hosts started) and removes the namespaces.
func (s *Sim) Stop() error {
	var errs []error
	s.mu.Lock()
	fws := s.forwarders
	s.forwarders = nil
	s.mu.Unlock()
	for _, f := range fws {
		_ = f.Close()
	}
	for _, ns := range s.namespaces {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, h := range s.Hosts() {
		if h.cmd != nil {
			_ = h.cmd.Wait()
		}
	}
	for i := len(s.namespaces) - 1; i >= 0; i-- {
		if err := netns.IP("netns", "del", s.namespaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	s.namespaces = nil
	return errors.Join(errs...)
}
