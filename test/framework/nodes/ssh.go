package nodes

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// JumpHostIP is the address of the jump host (StartJumpHost) on the node
// network, outside the nodes' addresses.
const JumpHostIP = "198.51.100.30"

// sshd is OpenSSH's server (hack/install-deps.sh: openssh-server).
const sshd = "/usr/sbin/sshd"

// SSHOptions configure the sshd of a node added with AddNode or of a jump
// host.
type SSHOptions struct {
	// AuthorizedKey is the public key, in authorized_keys form, that may
	// log in as root.
	AuthorizedKey string
}

// AddNode adds a node to a running cluster. Without NodeOptions.SSH it
// starts like the nodes of StartCluster and waits until every Node is
// Ready. With it, the node is a server waiting to be provisioned: its
// namespace, cgroups, directories and configuration are made and sshd
// runs on port 22 of its IP (host key Node.HostKey), but containerd,
// kubelet and kube-proxy start only when someone logs in and runs
//
//	Node.StartScript BOOTSTRAP_KUBECONFIG [NODE_LABELS]
//
// as a provisioning tool's bootstrap script does on a real server: the
// kubelet does TLS bootstrap with that kubeconfig (someone must approve its
// CSRs), and its Node becomes Ready once something sets its
// spec.podCIDR. The images of the cluster (and the tags TagImage gave) are
// imported by the script before the kubelet starts. Either way the node is
// in Nodes from the start, so Stop tears it down, also after an error.
func (c *Cluster) AddNode(ctx context.Context, no NodeOptions) (*Node, error) {
	c.mu.Lock()
	if len(c.Nodes) >= MaxNodes {
		c.mu.Unlock()
		return nil, fmt.Errorf("node %s: the cluster has %d nodes already, the most the pod CIDRs of %s allow", no.Name, len(c.Nodes), ClusterCIDR)
	}
	for _, n := range c.Nodes {
		if n.Name == no.Name {
			c.mu.Unlock()
			return nil, fmt.Errorf("node %s exists already", no.Name)
		}
	}
	n := newNode(no, len(c.Nodes)+1)
	c.Nodes = append(c.Nodes, n)
	images, tags := slices.Clone(c.images), slices.Clone(c.tags)
	c.mu.Unlock()

	if no.SSH == nil {
		c.logf("starting node %s (%s)", n.Name, n.IP)
		if err := c.startNode(ctx, n, no, c.bins, c.creds, images); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		for _, t := range tags {
			if err := c.tagOn(ctx, n, t[0], t[1]); err != nil {
				return nil, err
			}
		}
		if err := c.startKubeProxy(ctx, n, c.bins); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		return n, c.WaitReady(ctx, 3*time.Minute)
	}

	c.logf("preparing node %s (%s) to be provisioned over SSH", n.Name, n.IP)
	kubeletArgs, err := c.prepareNode(n, no, c.creds)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	n.StartScript = filepath.Join(n.Dir, "start-node.sh")
	if err := os.WriteFile(n.StartScript, []byte(c.startScript(n, kubeletArgs, images, tags)), 0o700); err != nil {
		return nil, err
	}
	if err := c.startSSHD(ctx, n, *no.SSH, false); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return n, nil
}

func (c *Cluster) tagOn(ctx context.Context, n *Node, ref, newRef string) error {
	return n.ctr(ctx, c.bins.ctr, "images", "tag", "--force", ref, newRef)
}

// StartJumpHost runs an SSH jump host at JumpHostIP on the node network:
// a network namespace srn-NAME with sshd (TCP forwarding allowed, host key
// in the returned Node's HostKey) and nothing else, e.g. a datacenter's
// router through which a provisioning tool reaches its servers. Stop
// removes it.
func (c *Cluster) StartJumpHost(ctx context.Context, name string, opts SSHOptions) (*Node, error) {
	if len(c.jumpHosts) > 0 {
		return nil, errors.New("one jump host per cluster: it has JumpHostIP")
	}
	n := &Node{Name: name, IP: JumpHostIP, NetNS: netnsName(name), paths: pathsOf(name)}
	n.Dir = n.paths.dir
	c.jumpHosts = append(c.jumpHosts, n)
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := ipCmds(
		[]string{"netns", "add", n.NetNS},
		[]string{"link", "add", Prefix + "j1", "type", "veth", "peer", "name", "eth0", "netns", n.NetNS},
		[]string{"link", "set", Prefix + "j1", "master", BridgeName, "up"},
		[]string{"-n", n.NetNS, "addr", "add", n.IP + "/25", "dev", "eth0"},
		[]string{"-n", n.NetNS, "link", "set", "eth0", "up"},
		[]string{"-n", n.NetNS, "link", "set", "lo", "up"},
	); err != nil {
		return nil, err
	}
	if err := makeCgroups(cgroupName(n.Name)); err != nil {
		return nil, err
	}
	if err := c.startSSHD(ctx, n, opts, true); err != nil {
		return nil, fmt.Errorf("jump host %s: %w", name, err)
	}
	c.logf("jump host %s up at %s", name, n.IP)
	return n, nil
}

// startSSHD gives the node an Ed25519 host key and runs sshd in its
// namespace and daemons cgroup, root's home in its directory.
func (c *Cluster) startSSHD(ctx context.Context, n *Node, opts SSHOptions, forwarding bool) error {
	if _, err := os.Stat(sshd); err != nil {
		return fmt.Errorf("%s missing: run hack/install-deps.sh (openssh-server): %w", sshd, err)
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(opts.AuthorizedKey)); err != nil {
		return fmt.Errorf("SSHOptions.AuthorizedKey: %w", err)
	}
	// sshd's privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	dir := filepath.Join(n.Dir, "ssh")
	home := filepath.Join(n.Dir, "home")
	for _, d := range []string{dir, home} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(key, n.Name)
	if err != nil {
		return err
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(hostKey, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return err
	}
	n.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(strings.TrimSpace(opts.AuthorizedKey)+"\n"), 0o600); err != nil {
		return err
	}
	fwd := "no"
	if forwarding {
		fwd = "yes"
	}
	// SetEnv HOME: the nodes share this machine's file system, and root's
	// own ~/.bashrc is no business of a node's sessions.
	cfg := fmt.Sprintf(`Port 22
ListenAddress %[1]s
HostKey %[2]s
PidFile %[3]s/sshd.pid
AuthorizedKeysFile %[3]s/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding %[4]s
X11Forwarding no
PrintMotd no
UseDNS no
LogLevel VERBOSE
Subsystem sftp internal-sftp
SetEnv HOME=%[5]s
`, n.IP, hostKey, dir, fwd, home)
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return err
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	p, err := n.start("sshd", env, sshd, "-D", "-e", "-f", cfgFile)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(n.IP, "22")
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("sshd exited (%v):\n%s", p.err, tailFile(p.log, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd not listening on %s within 20s: %w\n%s", addr, err, tailFile(p.log, 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startScript is the script that starts a node's daemons (see AddNode).
func (c *Cluster) startScript(n *Node, kubeletArgs, images []string, tags [][2]string) string {
	p := n.paths
	q := shellQuote
	procs := filepath.Join(cgroupMount, "pids", cgroupName(n.Name)+".daemons", "cgroup.procs")
	ctr := q(c.bins.ctr) + " --address " + q(p.socket) + " -n k8s.io"
	var imports strings.Builder
	for _, img := range images {
		fmt.Fprintf(&imports, "%s images import %s >/dev/null\n", ctr, q(img))
	}
	for _, t := range tags {
		fmt.Fprintf(&imports, "%s images tag --force %s %s >/dev/null\n", ctr, q(t[0]), q(t[1]))
	}
	var args []string
	for _, a := range kubeletArgs {
		args = append(args, q(a))
	}
	bootstrap := filepath.Join(n.Dir, "bootstrap-kubelet.conf")
	return fmt.Sprintf(`#!/bin/bash
# Starts containerd, kubelet and kube-proxy of test node %[1]s, as a
# server's bootstrap script starts the ones it installed.
# Usage: start-node.sh BOOTSTRAP_KUBECONFIG [NODE_LABELS]
set -euo pipefail
bootstrap=${1:?usage: start-node.sh BOOTSTRAP_KUBECONFIG [NODE_LABELS]}
labels=${2:-}
# The umask of daemons systemd starts. Stargate runs bootstrap scripts with
# umask 077 (its payload holds secrets), which would make containerd's
# snapshots 0700: no container running as a user other than root could
# reach its own root file system.
umask 022
# From here on everything runs in the node's daemons cgroup, where the
# test framework finds and stops it.
echo $$ >%[2]s
export PATH=%[3]s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
dir=%[4]s
# A repave starts afresh: the daemons of an earlier run and the kubelet's
# credentials go.
for f in "$dir"/*.pid; do
  if [ -e "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
done
rm -f %[5]s %[6]s/kubelet-client-* %[6]s/kubelet-server-*
install -m 0600 "$bootstrap" %[7]s

setsid %[8]s --config %[9]s >>"$dir/containerd.log" 2>&1 </dev/null &
echo $! >"$dir/containerd.pid"
for _ in $(seq 300); do [ -S %[10]s ] && break; sleep 0.1; done
if ! [ -S %[10]s ]; then
  echo "containerd did not come up:" >&2
  tail -n 20 "$dir/containerd.log" >&2
  exit 1
fi
%[11]s
labelArgs=()
if [ -n "$labels" ]; then labelArgs=(--node-labels="$labels"); fi
setsid %[12]s %[13]s --bootstrap-kubeconfig=%[7]s "${labelArgs[@]}" >>"$dir/kubelet.log" 2>&1 </dev/null &
echo $! >"$dir/kubelet.pid"

# kube-proxy once the Node has its InternalIP: one that starts earlier
# finds none and exits as soon as it appears.
start_proxy() {
  until [ "$(%[14]s --kubeconfig=%[15]s get node %[1]s -o 'jsonpath={.status.addresses[?(@.type=="InternalIP")].address}' 2>/dev/null)" = %[16]s ]; do
    sleep 0.5
  done
  exec %[17]s --config=%[18]s --v=2
}
export -f start_proxy
setsid bash -c start_proxy >>"$dir/kube-proxy.log" 2>&1 </dev/null &
echo $! >"$dir/kube-proxy.pid"
echo "containerd, kubelet and kube-proxy of node %[1]s started"
`, n.Name, q(procs), q(c.bins.dir), q(n.Dir), q(p.kubeconfig), q(p.pki), q(bootstrap),
		q(c.bins.containerd), q(p.containerdCfg), q(p.socket), imports.String(),
		q(c.bins.kubelet), strings.Join(args, " "),
		q(c.cp.Binaries.Kubectl), q(c.creds.proxyConfig), q(n.IP), q(c.bins.kubeProxy), q(p.proxyCfg))
}

// shellQuote quotes s for bash.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
