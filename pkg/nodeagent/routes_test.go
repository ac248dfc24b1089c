package nodeagent

import (
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// table is a fake routing table: routes offered to the targets in order,
// as a dump would.
func lookup(want *RouteWant, routes []netlink.Route) []target {
	var ts []target
	for _, p := range want.Remote {
		ts = append(ts, target{prefix: p, table: want.RemoteTable})
	}
	if want.PodCIDR.IsValid() {
		ts = append(ts, target{prefix: want.PodCIDR, table: unix.RT_TABLE_MAIN})
	}
	for i := range routes {
		r := &routes[i]
		if r.Table == 0 {
			r.Table = unix.RT_TABLE_MAIN
		}
		if r.Type == 0 {
			r.Type = unix.RTN_UNICAST
		}
		dst, _ := prefixOf(r.Dst)
		for j := range ts {
			ts[j].offer(dst, r)
		}
	}
	return ts
}

func route(dst, gw string, link int) netlink.Route {
	_, n, err := net.ParseCIDR(dst)
	if err != nil {
		panic(err)
	}
	r := netlink.Route{Dst: n, LinkIndex: link}
	if gw != "" {
		r.Gw = net.ParseIP(gw)
	}
	return r
}

var links = map[int]string{1: "lo", 2: "eth0", 3: "cilium_host", 4: "tailscale0"}

func linkName(i int) string { return links[i] }

func TestEvaluate(t *testing.T) {
	gw := netip.MustParseAddr("192.0.2.1")
	pod := netip.MustParsePrefix("10.244.5.0/24")
	remote := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.0.0.0/16")}
	viaRouter := RouteWant{Remote: remote, NextHopGateway: gw, RemoteTable: unix.RT_TABLE_MAIN, PodCIDR: pod, PodCIDRDevice: "cilium_host"}
	healthy := []netlink.Route{
		route("192.0.2.0/24", "", 2),
		route("10.244.0.0/16", "192.0.2.1", 2),
		route("10.0.0.0/16", "192.0.2.1", 2),
		route("10.244.5.0/24", "10.244.5.1", 3),
	}
	without := func(dst string) []netlink.Route {
		var out []netlink.Route
		for _, r := range healthy {
			if r.Dst.String() != dst {
				out = append(out, r)
			}
		}
		return out
	}
	with := func(rs []netlink.Route, more ...netlink.Route) []netlink.Route {
		return append(append([]netlink.Route{}, rs...), more...)
	}
	blackhole := route("10.0.0.0/16", "", 0)
	blackhole.Type = unix.RTN_BLACKHOLE
	lowMetric := route("10.244.0.0/16", "192.0.2.3", 2)
	highMetric := route("10.244.0.0/16", "192.0.2.1", 2)
	lowMetric.Priority, highMetric.Priority = 10, 100
	multipath := route("10.0.0.0/16", "", 0)
	multipath.MultiPath = []*netlink.NexthopInfo{{Gw: net.ParseIP("192.0.2.7"), LinkIndex: 2}, {Gw: net.ParseIP("192.0.2.1"), LinkIndex: 2}}
	tailnet := RouteWant{Remote: remote, NextHopDevice: "tailscale0", RemoteTable: 52, PodCIDR: pod, PodCIDRDevice: "cilium_host"}
	inTable52 := func(r netlink.Route) netlink.Route { r.Table = 52; return r }

	tests := []struct {
		name     string
		want     RouteWant
		routes   []netlink.Route
		reasons  []string
		messages []string
		observed []string
	}{
		{
			name: "healthy", want: viaRouter, routes: healthy,
			observed: []string{"10.244.0.0/16 via 192.0.2.1 dev eth0", "10.0.0.0/16 via 192.0.2.1 dev eth0", "10.244.5.0/24 via 10.244.5.1 dev cilium_host"},
		},
		{
			name: "pod CIDR route missing", want: viaRouter, routes: without("10.244.5.0/24"),
			reasons:  []string{stargate.ReasonPodCIDRRouteMiss},
			messages: []string{"no local route to pod CIDR 10.244.5.0/24 (want dev cilium_host); it is routed by 10.244.0.0/16 via 192.0.2.1 dev eth0"},
			observed: []string{"10.244.0.0/16 via 192.0.2.1 dev eth0", "10.0.0.0/16 via 192.0.2.1 dev eth0", "10.244.0.0/16 via 192.0.2.1 dev eth0 (covers 10.244.5.0/24)"},
		},
		{
			name: "remote route missing", want: viaRouter, routes: without("10.244.0.0/16"),
			reasons:  []string{stargate.ReasonRouteMissing},
			messages: []string{"no route to 10.244.0.0/16 in table main"},
			observed: []string{"10.0.0.0/16 via 192.0.2.1 dev eth0", "10.244.5.0/24 via 10.244.5.1 dev cilium_host"},
		},
		{
			name: "both remote routes and pod route missing", want: viaRouter, routes: healthy[:1],
			reasons: []string{stargate.ReasonRouteMissing, stargate.ReasonRouteMissing, stargate.ReasonPodCIDRRouteMiss},
		},
		{
			name: "wrong next hop", want: viaRouter, routes: with(without("10.0.0.0/16"), route("10.0.0.0/16", "192.0.2.3", 2)),
			reasons:  []string{stargate.ReasonWrongNextHop},
			messages: []string{"10.0.0.0/16 leaves via 192.0.2.3 dev eth0, want via 192.0.2.1"},
		},
		{
			name: "default route through the router covers a missing route", want: viaRouter,
			routes:   with(without("10.0.0.0/16"), route("0.0.0.0/0", "192.0.2.1", 2)),
			observed: []string{"10.244.0.0/16 via 192.0.2.1 dev eth0", "default via 192.0.2.1 dev eth0 (covers 10.0.0.0/16)", "10.244.5.0/24 via 10.244.5.1 dev cilium_host"},
		},
		{
			name: "default route elsewhere is a wrong next hop", want: viaRouter,
			routes:   with(without("10.0.0.0/16"), route("0.0.0.0/0", "192.0.2.254", 2)),
			reasons:  []string{stargate.ReasonWrongNextHop},
			messages: []string{"10.0.0.0/16 is routed by default via 192.0.2.254 dev eth0, want via 192.0.2.1"},
		},
		{
			name: "a more specific route inside the CIDR is not the CIDR's route", want: viaRouter,
			routes:  with(without("10.0.0.0/16"), route("10.0.5.0/24", "192.0.2.1", 2)),
			reasons: []string{stargate.ReasonRouteMissing},
		},
		{
			name: "blackhole", want: viaRouter, routes: with(without("10.0.0.0/16"), blackhole),
			reasons:  []string{stargate.ReasonWrongNextHop},
			messages: []string{"10.0.0.0/16 is routed by blackhole 10.0.0.0/16, want via 192.0.2.1"},
		},
		{
			name: "lowest metric wins", want: viaRouter, routes: with(without("10.244.0.0/16"), highMetric, lowMetric),
			reasons: []string{stargate.ReasonWrongNextHop},
		},
		{
			name: "multipath with the router among the hops", want: viaRouter, routes: with(without("10.0.0.0/16"), multipath),
			observed: []string{"10.244.0.0/16 via 192.0.2.1 dev eth0", "10.0.0.0/16 nexthop via 192.0.2.7 dev eth0, nexthop via 192.0.2.1 dev eth0", "10.244.5.0/24 via 10.244.5.1 dev cilium_host"},
		},
		{
			name: "pod CIDR on the wrong device", want: viaRouter, routes: with(without("10.244.5.0/24"), route("10.244.5.0/24", "", 2)),
			reasons:  []string{stargate.ReasonPodCIDRWrongDevice},
			messages: []string{"pod CIDR 10.244.5.0/24 is routed dev eth0, want dev cilium_host"},
		},
		{
			name: "pod CIDR not allocated yet",
			want: RouteWant{Remote: remote, NextHopGateway: gw, RemoteTable: unix.RT_TABLE_MAIN, PodCIDRDevice: "cilium_host"}, routes: healthy,
			observed: []string{"10.244.0.0/16 via 192.0.2.1 dev eth0", "10.0.0.0/16 via 192.0.2.1 dev eth0"},
		},
		{
			name: "tailnet device in table 52", want: tailnet,
			routes: []netlink.Route{inTable52(route("10.244.0.0/16", "", 4)), inTable52(route("10.0.0.0/16", "", 4)), route("10.244.5.0/24", "", 3)},
		},
		{
			name: "tailnet routes only in main are missing from table 52", want: tailnet,
			routes:   []netlink.Route{route("10.244.0.0/16", "", 4), inTable52(route("10.0.0.0/16", "", 2)), route("10.244.5.0/24", "", 3)},
			reasons:  []string{stargate.ReasonRouteMissing, stargate.ReasonWrongNextHop},
			messages: []string{"no route to 10.244.0.0/16 in table 52", "10.0.0.0/16 leaves dev eth0 table 52, want dev tailscale0 table 52"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := evaluate(&tt.want, lookup(&tt.want, tt.routes), linkName)
			var reasons, messages []string
			for _, p := range rep.Problems {
				reasons, messages = append(reasons, p.Reason), append(messages, p.Message)
			}
			if !reflect.DeepEqual(reasons, tt.reasons) {
				t.Errorf("reasons = %q, want %q (messages %q)", reasons, tt.reasons, messages)
			}
			if tt.messages != nil && !reflect.DeepEqual(messages, tt.messages) {
				t.Errorf("messages = %q, want %q", messages, tt.messages)
			}
			if tt.observed != nil && !reflect.DeepEqual(rep.Observed, tt.observed) {
				t.Errorf("observed = %q, want %q", rep.Observed, tt.observed)
			}
			if rep.Healthy() != (len(tt.reasons) == 0) {
				t.Errorf("Healthy() = %v with problems %v", rep.Healthy(), rep.Problems)
			}
		})
	}
}

func TestDesired(t *testing.T) {
	want := RouteWant{
		Remote:         []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		NextHopGateway: netip.MustParseAddr("192.0.2.1"), NextHopDevice: "eth0", RemoteTable: 52,
		PodCIDR: netip.MustParsePrefix("10.244.5.0/24"), PodCIDRDevice: "cilium_host",
	}
	rep := evaluate(&want, lookup(&want, nil), linkName)
	wantDesired := []string{"10.244.0.0/16 via 192.0.2.1 dev eth0 table 52", "10.244.5.0/24 dev cilium_host"}
	if !reflect.DeepEqual(rep.Desired, wantDesired) {
		t.Errorf("desired = %q, want %q", rep.Desired, wantDesired)
	}
}

func TestParseTable(t *testing.T) {
	for s, want := range map[string]int{"main": 254, "": 254, "52": 52, "1": 1} {
		if got, err := ParseTable(s); err != nil || got != want {
			t.Errorf("ParseTable(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"local", "255", "0", "-1", "x", "4294967296"} {
		if _, err := ParseTable(s); err == nil {
			t.Errorf("ParseTable(%q) accepted", s)
		}
	}
}
