package nodeagent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// RouteWant is what the worker's routing table must hold.
type RouteWant struct {
	// Remote are the AKS pod and service CIDRs; each must leave through
	// NextHopGateway and/or NextHopDevice.
	Remote         []netip.Prefix
	NextHopGateway netip.Addr
	NextHopDevice  string
	// RemoteTable is the routing table the remote routes are in: main
	// (254), or e.g. 52 where Tailscale runs on the worker.
	RemoteTable int
	// PodCIDR is the worker's own pod CIDR, routed locally through
	// PodCIDRDevice (Cilium's host device) in the main table. Invalid means
	// not allocated yet.
	PodCIDR       netip.Prefix
	PodCIDRDevice string
}

// Problem is one thing wrong with the routing table.
type Problem struct {
	Reason  string
	Message string
}

// RouteReport is the outcome of one look at the routing table.
type RouteReport struct {
	// Desired and Observed are the routes wanted and those found, in
	// iproute2's words; they are stable between passes while nothing
	// changes, so they can be compared to decide whether to write.
	Desired  []string
	Observed []string
	// Problems are empty when every route is right.
	Problems []Problem
}

// Healthy says whether every route is right.
func (r *RouteReport) Healthy() bool { return len(r.Problems) == 0 }

// foundRoute is the most specific route covering one wanted prefix.
type foundRoute struct {
	dst      netip.Prefix
	typ      int
	table    int
	priority int
	hops     []hop
}

type hop struct {
	gw   netip.Addr
	link int
}

// target is a prefix looked up in a table during one pass.
type target struct {
	prefix netip.Prefix
	table  int
	found  bool
	best   foundRoute
}

// offer keeps r when it covers the target and is more specific (or as
// specific with a lower metric) than the best route seen so far, as the
// kernel's longest-prefix match would.
func (t *target) offer(dst netip.Prefix, r *netlink.Route) {
	if r.Table != t.table || dst.Bits() > t.prefix.Bits() || !dst.Contains(t.prefix.Addr()) {
		return
	}
	if t.found && (dst.Bits() < t.best.dst.Bits() || dst.Bits() == t.best.dst.Bits() && r.Priority >= t.best.priority) {
		return
	}
	t.found = true
	t.best = foundRoute{dst: dst, typ: r.Type, table: r.Table, priority: r.Priority, hops: t.best.hops[:0]}
	if len(r.MultiPath) == 0 {
		t.best.hops = append(t.best.hops, hop{gw: addrOf(r.Gw), link: r.LinkIndex})
	}
	for _, nh := range r.MultiPath {
		t.best.hops = append(t.best.hops, hop{gw: addrOf(nh.Gw), link: nh.LinkIndex})
	}
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

// RouteTable reads the kernel routing table of one network namespace.
type RouteTable struct {
	h *netlink.Handle
	// targets is reused across passes so a pass allocates little.
	targets []target
}

// OpenRouteTable opens a netlink handle in ns, or in the agent's own
// network namespace when ns is not open.
func OpenRouteTable(ns netns.NsHandle) (*RouteTable, error) {
	var h *netlink.Handle
	var err error
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	return &RouteTable{h: h}, nil
}

// Close closes the netlink handle.
func (t *RouteTable) Close() { t.h.Close() }

// Check dumps the routing table once and reports how it meets want.
func (t *RouteTable) Check(want *RouteWant) (*RouteReport, error) {
	t.targets = t.targets[:0]
	for _, p := range want.Remote {
		t.targets = append(t.targets, target{prefix: p, table: want.RemoteTable})
	}
	if want.PodCIDR.IsValid() {
		t.targets = append(t.targets, target{prefix: want.PodCIDR, table: unix.RT_TABLE_MAIN})
	}
	var err error
	// A dump interrupted by a concurrent change is retried; the change
	// itself triggers another pass anyway.
	for range 3 {
		for i := range t.targets {
			t.targets[i].found = false
		}
		err = t.h.RouteListFilteredIter(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE,
			func(r netlink.Route) bool {
				if r.Table == unix.RT_TABLE_LOCAL {
					return true
				}
				dst, ok := prefixOf(r.Dst)
				if !ok {
					return true
				}
				for i := range t.targets {
					t.targets[i].offer(dst, &r)
				}
				return true
			})
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return evaluate(want, t.targets, t.linkName), nil
}

func (t *RouteTable) linkName(index int) string {
	if index == 0 {
		return ""
	}
	l, err := t.h.LinkByIndex(index)
	if err != nil {
		return "if" + strconv.Itoa(index)
	}
	return l.Attrs().Name
}

// evaluate turns the routes found for each target into a report. Targets
// are want.Remote in order, then the pod CIDR when it is known.
func evaluate(want *RouteWant, targets []target, linkName func(int) string) *RouteReport {
	rep := &RouteReport{}
	names := map[int]string{}
	name := func(i int) string {
		n, ok := names[i]
		if !ok {
			n = linkName(i)
			names[i] = n
		}
		return n
	}
	for i, p := range want.Remote {
		t := &targets[i]
		rep.Desired = append(rep.Desired, desiredRemote(p, want))
		if !t.found {
			rep.Problems = append(rep.Problems, Problem{stargate.ReasonRouteMissing,
				fmt.Sprintf("no route to %s in table %s", p, tableName(want.RemoteTable))})
			continue
		}
		rep.Observed = append(rep.Observed, describeRoute(p, &t.best, name))
		if msg := wrongHop(p, &t.best, want, name); msg != "" {
			rep.Problems = append(rep.Problems, Problem{stargate.ReasonWrongNextHop,
				fmt.Sprintf("%s %s, want %s", p, msg, strings.TrimPrefix(desiredRemote(p, want), p.String()+" "))})
		}
	}
	if !want.PodCIDR.IsValid() {
		return rep
	}
	p := want.PodCIDR
	rep.Desired = append(rep.Desired, fmt.Sprintf("%s dev %s", p, want.PodCIDRDevice))
	t := &targets[len(want.Remote)]
	switch {
	case !t.found:
		rep.Problems = append(rep.Problems, Problem{stargate.ReasonPodCIDRRouteMiss,
			fmt.Sprintf("no local route to pod CIDR %s (want dev %s)", p, want.PodCIDRDevice)})
	case t.best.dst != p:
		rep.Observed = append(rep.Observed, describeRoute(p, &t.best, name))
		rep.Problems = append(rep.Problems, Problem{stargate.ReasonPodCIDRRouteMiss,
			fmt.Sprintf("no local route to pod CIDR %s (want dev %s); it is routed by %s", p, want.PodCIDRDevice, routeText(&t.best, name))})
	default:
		rep.Observed = append(rep.Observed, describeRoute(p, &t.best, name))
		if t.best.typ != unix.RTN_UNICAST || len(t.best.hops) != 1 || name(t.best.hops[0].link) != want.PodCIDRDevice {
			rep.Problems = append(rep.Problems, Problem{stargate.ReasonPodCIDRWrongDevice,
				fmt.Sprintf("pod CIDR %s is routed %s, want dev %s", p, strings.TrimPrefix(routeText(&t.best, name), p.String()+" "), want.PodCIDRDevice)})
		}
	}
	return rep
}

// wrongHop says how the route misses the wanted next hop, or "".
func wrongHop(p netip.Prefix, r *foundRoute, want *RouteWant, name func(int) string) string {
	if r.typ != unix.RTN_UNICAST {
		return "is routed by " + routeText(r, name)
	}
	for _, h := range r.hops {
		gwOK := !want.NextHopGateway.IsValid() || h.gw == want.NextHopGateway
		devOK := want.NextHopDevice == "" || name(h.link) == want.NextHopDevice
		if gwOK && devOK {
			return ""
		}
	}
	if r.dst != p {
		return "is routed by " + routeText(r, name)
	}
	return "leaves " + strings.TrimPrefix(routeText(r, name), r.dst.String()+" ")
}

func desiredRemote(p netip.Prefix, want *RouteWant) string {
	s := p.String()
	if want.NextHopGateway.IsValid() {
		s += " via " + want.NextHopGateway.String()
	}
	if want.NextHopDevice != "" {
		s += " dev " + want.NextHopDevice
	}
	if want.RemoteTable != unix.RT_TABLE_MAIN {
		s += " table " + tableName(want.RemoteTable)
	}
	return s
}

// describeRoute is the route found for p; a broader route says which
// prefix it was looked up for.
func describeRoute(p netip.Prefix, r *foundRoute, name func(int) string) string {
	s := routeText(r, name)
	if r.dst != p {
		s += " (covers " + p.String() + ")"
	}
	return s
}

// routeText writes a route as `ip route` does: "10.0.0.0/16 via 192.0.2.1 dev eth0".
func routeText(r *foundRoute, name func(int) string) string {
	var b strings.Builder
	if r.typ != unix.RTN_UNICAST {
		b.WriteString(routeType(r.typ))
		b.WriteByte(' ')
	}
	if r.dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(r.dst.String())
	}
	for i, h := range r.hops {
		if len(r.hops) > 1 {
			if i == 0 {
				b.WriteString(" nexthop")
			} else {
				b.WriteString(", nexthop")
			}
		}
		if h.gw.IsValid() {
			b.WriteString(" via ")
			b.WriteString(h.gw.String())
		}
		if n := name(h.link); n != "" {
			b.WriteString(" dev ")
			b.WriteString(n)
		}
	}
	if r.table != unix.RT_TABLE_MAIN {
		b.WriteString(" table ")
		b.WriteString(tableName(r.table))
	}
	return b.String()
}

func routeType(t int) string {
	switch t {
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_THROW:
		return "throw"
	}
	return "type-" + strconv.Itoa(t)
}

func tableName(t int) string {
	if t == unix.RT_TABLE_MAIN {
		return "main"
	}
	return strconv.Itoa(t)
}

// ParseTable reads a routing table as "main" or a number.
func ParseTable(s string) (int, error) {
	if s == "main" || s == "" {
		return unix.RT_TABLE_MAIN, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n >= unix.RT_TABLE_MAX || n == unix.RT_TABLE_LOCAL {
		return 0, fmt.Errorf("routing table %q: want \"main\" or a number from 1 to %d other than %d (local)", s, unix.RT_TABLE_MAX-1, unix.RT_TABLE_LOCAL)
	}
	return n, nil
}
