package dcsim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/crypto/ssh"

	"github.com/stargate-k8s/stargate/test/netns"
)

// SiteOptions configure StartSite.
type SiteOptions struct {
	// Dir holds keys, sshd configs and logs. It must exist.
	Dir string
	// Prefix starts the name of every namespace of the site; it must be
	// unique among the simulations running at once.
	Prefix string
	// WorkerSubnet is the site's worker subnet (e.g. 10.50.1.0/24): the
	// router has its first address, worker i (from 0) the address 10+i.
	WorkerSubnet netip.Prefix
	// Workers is the number of worker hosts (at most 200).
	Workers int
	// SSHD is the sshd program; /usr/sbin/sshd when empty.
	SSHD string
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// SubnetAddr is the n-th address of subnet p (n from 0, IPv4 only).
func SubnetAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// StartSite builds a datacenter like Start, on a worker subnet of the
// caller's choosing and without Start's cloud namespace and tail0 link:
// the router namespace (<prefix>-router) has only the bridge br0 of the
// worker subnet, and the caller connects it to its own network (for
// instance a tailnet's underlay, with real tailscaled in it). Several
// sites with different subnets can run at once. Router.IP starts as the
// router's subnet address; a caller that reaches the router at another
// address (its tailnet IP) sets Router.IP to it before KnownHosts.
// Stop removes everything.
func StartSite(ctx context.Context, o SiteOptions) (_ *Sim, err error) {
	if o.SSHD == "" {
		o.SSHD = "/usr/sbin/sshd"
	}
	if err := Check(o.SSHD); err != nil {
		return nil, err
	}
	if o.Workers < 0 || o.Workers > 200 {
		return nil, fmt.Errorf("workers must be between 0 and 200, not %d", o.Workers)
	}
	if !o.WorkerSubnet.Addr().Is4() || o.WorkerSubnet.Bits() > 24 {
		return nil, fmt.Errorf("worker subnet %s: want an IPv4 subnet of at least a /24", o.WorkerSubnet)
	}
	if o.Prefix == "" {
		return nil, errors.New("a site needs a namespace prefix")
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	s := &Sim{Dir: o.Dir, Prefix: o.Prefix, logf: logf}
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
	keysOf, stopKeys := generateHostKeys(1 + o.Workers)
	defer stopKeys()

	bits := o.WorkerSubnet.Bits()
	gw := SubnetAddr(o.WorkerSubnet, 1)
	routerNS := s.Prefix + "-router"
	if err := s.addNS(routerNS); err != nil {
		return nil, err
	}
	for _, st := range [][]string{
		{"-n", routerNS, "link", "add", "br0", "type", "bridge"},
		{"-n", routerNS, "addr", "add", fmt.Sprintf("%s/%d", gw, bits), "dev", "br0"},
		{"-n", routerNS, "link", "set", "br0", "up"},
	} {
		if err := netns.IP(st...); err != nil {
			return nil, err
		}
	}
	if s.Router, err = s.newHost("router", routerNS, gw.String(), true, keysOf(0)); err != nil {
		return nil, err
	}
	for i := 0; i < o.Workers; i++ {
		name := fmt.Sprintf("worker-%d", i+1)
		ns := fmt.Sprintf("%s-w%d", s.Prefix, i+1)
		addr := SubnetAddr(o.WorkerSubnet, 10+i)
		if err := s.addNS(ns); err != nil {
			return nil, err
		}
		port := fmt.Sprintf("w%d", i+1)
		for _, st := range [][]string{
			{"-n", routerNS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", routerNS, "link", "set", port, "master", "br0"},
			{"-n", routerNS, "link", "set", port, "up"},
			{"-n", ns, "addr", "add", fmt.Sprintf("%s/%d", addr, bits), "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "route", "add", "default", "via", gw.String()},
		} {
			if err := netns.IP(st...); err != nil {
				return nil, err
			}
		}
		h, err := s.newHost(name, ns, addr.String(), false, keysOf(1+i))
		if err != nil {
			return nil, err
		}
		s.Workers = append(s.Workers, h)
	}
	for _, h := range s.Hosts() {
		if err := s.startSSHD(o.SSHD, h); err != nil {
			return nil, err
		}
	}
	for _, h := range s.Hosts() {
		if err := s.waitSSHD(ctx, h); err != nil {
			return nil, err
		}
	}
	logf("site %s up: router %s, %d workers on %s", s.Prefix, gw, len(s.Workers), o.WorkerSubnet)
	return s, nil
}
