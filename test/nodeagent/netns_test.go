package nodeagent_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The test network, all in namespaces the test makes. Only documentation
// addresses carry packets (the probe's TCP connect, between the two
// namespaces); the cluster CIDRs are only named in routes.
//
//	worker ns                           router ns
//	  veth0 192.0.2.2/24  <-------->  veth1 192.0.2.1/24 (the DC router)
//	  cilium_host 10.244.5.1/32         lo 198.51.100.10/32 (the target across the tunnel)
//	  (veth peer cilium_net)
const (
	routerIP    = "192.0.2.1"
	workerIP    = "192.0.2.2"
	wrongHopIP  = "192.0.2.3"
	targetIP    = "198.51.100.10"
	aksPodCIDR  = "10.244.0.0/16"
	aksSvcCIDR  = "10.0.0.0/16"
	podCIDR     = "10.244.5.0/24"
	otherCIDR   = "10.244.9.0/24"
	podDevice   = "cilium_host"
	workerVeth  = "veth0"
	routerVeth  = "veth1"
	targetNet   = "198.51.100.0/24"
	fillerRoute = "10.200.0.0/16" // split into the extra routes of a big table
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test makes network namespaces and veth pairs and needs root (uid 0); it runs as uid %d. Run it as root, as CI does.", os.Geteuid())
	}
}

var nsSeq atomic.Int64

// testNet is a worker namespace wired to a router namespace.
type testNet struct {
	Name, RouterName string
	NS, Router       netns.NsHandle
	H, RH            *netlink.Handle
}

// newTestNet makes the two namespaces, the veth pair, Cilium's host
// device and the routes of a healthy worker, plus extra filler routes;
// t.Cleanup removes everything.
func newTestNet(t testing.TB, extraRoutes int) *testNet {
	t.Helper()
	requireRoot(t)
	n := nsSeq.Add(1)
	tn := &testNet{
		Name:       fmt.Sprintf("sgna-w-%d-%d", os.Getpid(), n),
		RouterName: fmt.Sprintf("sgna-r-%d-%d", os.Getpid(), n),
	}
	var err error
	if tn.NS, err = newNamedNS(tn.Name); err != nil {
		t.Fatalf("create network namespace %s: %v", tn.Name, err)
	}
	t.Cleanup(func() { tn.NS.Close(); _ = netns.DeleteNamed(tn.Name) })
	if tn.Router, err = newNamedNS(tn.RouterName); err != nil {
		t.Fatalf("create network namespace %s: %v", tn.RouterName, err)
	}
	t.Cleanup(func() { tn.Router.Close(); _ = netns.DeleteNamed(tn.RouterName) })
	if tn.H, err = netlink.NewHandleAt(tn.NS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.H.Close)
	if tn.RH, err = netlink.NewHandleAt(tn.Router); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.RH.Close)

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("add veth pair", tn.H.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: workerVeth}, PeerName: routerVeth, PeerNamespace: netlink.NsFd(int(tn.Router))}))
	// Cilium's host device is one end of a veth pair, as here.
	must("add cilium_host", tn.H.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: podDevice}, PeerName: "cilium_net"}))
	up := func(h *netlink.Handle, name, addr string) {
		t.Helper()
		l, err := h.LinkByName(name)
		must("find "+name, err)
		if addr != "" {
			a, err := netlink.ParseAddr(addr)
			must("parse "+addr, err)
			must("address "+name, h.AddrAdd(l, a))
		}
		must("up "+name, h.LinkSetUp(l))
	}
	up(tn.H, "lo", "")
	up(tn.H, workerVeth, workerIP+"/24")
	up(tn.H, "cilium_net", "")
	up(tn.H, podDevice, "10.244.5.1/32")
	up(tn.RH, "lo", targetIP+"/32")
	up(tn.RH, routerVeth, routerIP+"/24")

	for _, c := range []string{aksPodCIDR, aksSvcCIDR, targetNet} {
		tn.AddRoute(t, c, routerIP)
	}
	tn.AddLocalRoute(t, podCIDR)
	base := netip.MustParsePrefix(fillerRoute).Addr().As4()
	for i := range extraRoutes {
		// /28s out of the filler /16: 4096 fit.
		a := base
		a[2], a[3] = byte(i>>4), byte(i&15)<<4
		tn.AddRoute(t, netip.PrefixFrom(netip.AddrFrom4(a), 28).String(), routerIP)
	}
	return tn
}

// newNamedNS makes a namespace bound under /run/netns, from a locked
// thread that goes back to its own namespace afterwards.
func newNamedNS(name string) (netns.NsHandle, error) {
	errc := make(chan error, 1)
	var ns netns.NsHandle
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err = netns.NewNamed(name)
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the thread dies with this goroutine
		errc <- err
	}()
	return ns, <-errc
}

func (tn *testNet) link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := tn.H.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s in %s: %v", name, tn.Name, err)
	}
	return l
}

func cidr(t testing.TB, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// AddRoute adds dst via gw on veth0.
func (tn *testNet) AddRoute(t testing.TB, dst, gw string) {
	t.Helper()
	r := &netlink.Route{LinkIndex: tn.link(t, workerVeth).Attrs().Index, Dst: cidr(t, dst), Gw: net.ParseIP(gw)}
	if err := tn.H.RouteAdd(r); err != nil {
		t.Fatalf("ip route add %s via %s: %v", dst, gw, err)
	}
}

// ReplaceRoute is `ip route replace dst via gw`.
func (tn *testNet) ReplaceRoute(t testing.TB, dst, gw string) {
	t.Helper()
	r := &netlink.Route{LinkIndex: tn.link(t, workerVeth).Attrs().Index, Dst: cidr(t, dst), Gw: net.ParseIP(gw)}
	if err := tn.H.RouteReplace(r); err != nil {
		t.Fatalf("ip route replace %s via %s: %v", dst, gw, err)
	}
}

// AddLocalRoute routes dst to cilium_host.
func (tn *testNet) AddLocalRoute(t testing.TB, dst string) {
	t.Helper()
	r := &netlink.Route{LinkIndex: tn.link(t, podDevice).Attrs().Index, Dst: cidr(t, dst), Scope: netlink.SCOPE_LINK}
	if err := tn.H.RouteAdd(r); err != nil {
		t.Fatalf("ip route add %s dev %s: %v", dst, podDevice, err)
	}
}

// DelRoute deletes the main-table route to dst.
func (tn *testNet) DelRoute(t testing.TB, dst string) {
	t.Helper()
	// Scope nowhere matches a route of any scope, as `ip route del` does.
	r := &netlink.Route{Dst: cidr(t, dst), Table: unix.RT_TABLE_MAIN, Scope: netlink.SCOPE_NOWHERE}
	if err := tn.H.RouteDel(r); err != nil {
		t.Fatalf("ip route del %s: %v", dst, err)
	}
}

// ListenOnTarget listens on the target address inside the router
// namespace: the probe's TCP connect goes from the worker namespace,
// through the veth pair, to it.
func (tn *testNet) ListenOnTarget(t testing.TB) net.Listener {
	t.Helper()
	type result struct {
		l   net.Listener
		err error
	}
	rc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			rc <- result{nil, err}
			return
		}
		defer orig.Close()
		if err := netns.Set(tn.Router); err != nil {
			runtime.UnlockOSThread()
			rc <- result{nil, err}
			return
		}
		l, err := net.Listen("tcp", net.JoinHostPort(targetIP, "0"))
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		rc <- result{l, err}
	}()
	r := <-rc
	if r.err != nil {
		t.Fatalf("listen on %s in %s: %v", targetIP, tn.RouterName, r.err)
	}
	go func() {
		for {
			c, err := r.l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { r.l.Close() })
	return r.l
}
