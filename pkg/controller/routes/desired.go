package routes

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/azure"
	"github.com/stargate-k8s/stargate/pkg/ipam"
	"github.com/stargate-k8s/stargate/pkg/tailscale"
)

// member is one Server taking part in routing: it is not being deleted and
// has its pod CIDR.
type member struct {
	key     string // namespace/name
	dc      string
	dcName  string // the Datacenter's name
	server  *v1alpha1.Server
	podCIDR netip.Prefix
	// podRoute is the CIDR the cloud routes for it: its pod CIDR, or its
	// datacenter block when blocks are on.
	podRoute netip.Prefix
	subnet   netip.Prefix
	routerIP string
}

// plan is the desired state of the global layers. The Tailscale routers
// are planned from the members and the Datacenters' records
// (tailscaleDevices).
type plan struct {
	members []member
	azure   []azure.Route
	routers []tailscale.Router
}

// routeName is the Azure route name for a CIDR: prefix + kind + the CIDR
// with dots and slash as dashes, e.g. stargate-pod-10-244-3-0-24. Names
// follow from the CIDR alone, so every controller agrees on them.
func routeName(prefix, kind string, p netip.Prefix) string {
	return prefix + kind + "-" + strings.NewReplacer(".", "-", ":", "-", "/", "-").Replace(p.String())
}

// buildPlan routes the Servers that are in their datacenter (inside maps
// namespace/name to its Datacenter; see pkg/controller/datacenter) and
// hold a pod CIDR; the worker subnet is the one their Datacenter declares.
func (o *Options) buildPlan(servers []v1alpha1.Server, cfg ipam.Config, inside map[string]*v1alpha1.Datacenter) plan {
	var pl plan
	for i := range servers {
		s := &servers[i]
		if !s.DeletionTimestamp.IsZero() || s.Status.PodCIDR == "" {
			continue
		}
		dc := inside[s.Namespace+"/"+s.Name]
		if dc == nil {
			continue
		}
		p, err := netip.ParsePrefix(s.Status.PodCIDR)
		if err != nil {
			continue
		}
		m := member{key: s.Namespace + "/" + s.Name, dc: s.Namespace, dcName: dc.Name, server: s, podCIDR: p.Masked(), podRoute: p.Masked(), routerIP: s.Spec.RouterIP}
		if b, ok := cfg.BlockOf(m.podCIDR); ok {
			m.podRoute = b
		}
		if subnet, err := netip.ParsePrefix(dc.Spec.WorkerSubnet); err == nil {
			m.subnet = subnet.Masked()
		}
		pl.members = append(pl.members, m)
	}
	sort.Slice(pl.members, func(i, j int) bool { return pl.members[i].key < pl.members[j].key })

	az := map[string]azure.Route{}
	for _, m := range pl.members {
		r := routeName(o.RoutePrefix, kindOf(m), m.podRoute)
		az[r] = azure.Route{Name: r, AddressPrefix: m.podRoute.String(), NextHop: o.AzureNextHop}
		if m.subnet.IsValid() {
			r := routeName(o.RoutePrefix, "subnet", m.subnet)
			az[r] = azure.Route{Name: r, AddressPrefix: m.subnet.String(), NextHop: o.AzureNextHop}
		}
	}
	for _, r := range az {
		pl.azure = append(pl.azure, r)
	}
	sort.Slice(pl.azure, func(i, j int) bool { return pl.azure[i].Name < pl.azure[j].Name })

	return pl
}

func kindOf(m member) string {
	if m.podRoute != m.podCIDR {
		return "block"
	}
	return "pod"
}

// azureWanted are the Azure routes that carry m's traffic.
func (o *Options) azureWanted(m member) []string {
	out := []string{m.podRoute.String() + " via " + o.AzureNextHop}
	if m.subnet.IsValid() {
		out = append(out, m.subnet.String()+" via "+o.AzureNextHop)
	}
	return out
}

func tailscaleWanted(m member) []string {
	out := []string{m.podRoute.String()}
	if m.subnet.IsValid() {
		out = append(out, m.subnet.String())
	}
	return out
}

func describe(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	return fmt.Sprint(strings.Join(ss, ", "))
}
