package validation

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// ClusterNetworks are the networks of the cluster Stargate serves, which
// no datacenter may claim: the pod CIDR pool Stargate allocates from, the
// Service range and the cloud networks (the AKS VNet). stargate-apiserver
// learns them from its flags, which must match stargate-controller's.
type ClusterNetworks struct {
	PodCIDRPool netip.Prefix
	ServiceCIDR netip.Prefix
	// Cloud are the cloud's own networks, e.g. the AKS VNet 10.224.0.0/12.
	Cloud []netip.Prefix
}

// NamedDatacenter is another Datacenter a new or changed one must not
// collide with.
type NamedDatacenter struct {
	Name string
	Spec *stargate.DatacenterSpec
}

// overlap says which of the cluster's networks p overlaps, "" when none.
func (n ClusterNetworks) overlap(p netip.Prefix) string {
	switch {
	case n.PodCIDRPool.IsValid() && n.PodCIDRPool.Overlaps(p):
		return fmt.Sprintf("overlaps the pod CIDR pool %s", n.PodCIDRPool)
	case n.ServiceCIDR.IsValid() && n.ServiceCIDR.Overlaps(p):
		return fmt.Sprintf("overlaps the Service range %s", n.ServiceCIDR)
	}
	for _, c := range n.Cloud {
		if c.Overlaps(p) {
			return fmt.Sprintf("overlaps the cloud network %s (the AKS VNet)", c)
		}
	}
	return ""
}

func prefixOf(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// ValidateDatacenterNetworks checks a Datacenter's declared network
// against the cluster's networks and the other Datacenters: its worker
// subnet must overlap none of the pod CIDR pool, the Service range, the
// cloud networks or another Datacenter's worker subnet or pod CIDR block;
// its router's address must lie in none of the cluster's networks; its pod
// CIDR block must lie inside the pod CIDR pool and overlap no other
// Datacenter's worker subnet. (agentGateway lies in the worker subnet,
// which ValidateDatacenter checks.) On update (old is not nil) only the
// fields the update changes are checked, so a Datacenter declared before
// the cluster's networks were known can still be deleted and relabelled.
// Fields that do not parse are left to ValidateDatacenter.
func ValidateDatacenterNetworks(spec, old *stargate.DatacenterSpec, nets ClusterNetworks, others []NamedDatacenter) field.ErrorList {
	var allErrs field.ErrorList
	fldPath := field.NewPath("spec")
	changed := func(get func(*stargate.DatacenterSpec) string) bool {
		return old == nil || get(old) != get(spec)
	}

	if subnet, err := netip.ParsePrefix(spec.WorkerSubnet); err == nil && changed(func(s *stargate.DatacenterSpec) string { return s.WorkerSubnet }) {
		p := fldPath.Child("workerSubnet")
		if why := nets.overlap(subnet); why != "" {
			allErrs = append(allErrs, field.Invalid(p, spec.WorkerSubnet, why+": the cluster routes that range itself"))
		}
		for _, o := range others {
			if os, err := netip.ParsePrefix(o.Spec.WorkerSubnet); err == nil && os.Overlaps(subnet) {
				allErrs = append(allErrs, field.Invalid(p, spec.WorkerSubnet,
					fmt.Sprintf("overlaps the worker subnet %s of Datacenter %s: each datacenter's servers have addresses of their own", os, o.Name)))
			}
			if ob, err := netip.ParsePrefix(o.Spec.PodCIDRBlock); err == nil && ob.Overlaps(subnet) {
				allErrs = append(allErrs, field.Invalid(p, spec.WorkerSubnet,
					fmt.Sprintf("overlaps the pod CIDR block %s of Datacenter %s", ob, o.Name)))
			}
		}
	}

	if ip, err := netip.ParseAddr(spec.Router.IP); err == nil && changed(func(s *stargate.DatacenterSpec) string { return s.Router.IP }) {
		if why := nets.overlap(prefixOf(ip.Unmap())); why != "" {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("router", "ip"), spec.Router.IP,
				"must not lie in "+strings.TrimPrefix(why, "overlaps ")+": the router is reached over the tailnet, not inside the cluster"))
		}
	}

	if block, err := netip.ParsePrefix(spec.PodCIDRBlock); err == nil && changed(func(s *stargate.DatacenterSpec) string { return s.PodCIDRBlock }) {
		p := fldPath.Child("podCIDRBlock")
		pool := nets.PodCIDRPool
		switch {
		case pool.IsValid() && (block.Bits() < pool.Bits() || !pool.Contains(block.Addr())):
			allErrs = append(allErrs, field.Invalid(p, spec.PodCIDRBlock,
				fmt.Sprintf("must lie inside the pod CIDR pool %s: the datacenter's pod CIDRs come from it", pool)))
		default:
			// Inside the pool, which overlaps neither the Service range
			// nor the cloud when the flags are right; check anyway.
			rest := ClusterNetworks{ServiceCIDR: nets.ServiceCIDR, Cloud: nets.Cloud}
			if why := rest.overlap(block); why != "" {
				allErrs = append(allErrs, field.Invalid(p, spec.PodCIDRBlock, why))
			}
		}
		for _, o := range others {
			if os, err := netip.ParsePrefix(o.Spec.WorkerSubnet); err == nil && os.Overlaps(block) {
				allErrs = append(allErrs, field.Invalid(p, spec.PodCIDRBlock,
					fmt.Sprintf("overlaps the worker subnet %s of Datacenter %s", os, o.Name)))
			}
		}
	}
	return allErrs
}

// ValidateServerNetworks checks a Server's pinned spec.podCIDR against the
// pod CIDR pool: a pin outside it (128.0.0.0/1, say) would have Stargate
// route that range to the Server. On update only a changed pin is checked.
func ValidateServerNetworks(spec, old *stargate.ServerSpec, nets ClusterNetworks) field.ErrorList {
	if spec.PodCIDR == "" || (old != nil && old.PodCIDR == spec.PodCIDR) || !nets.PodCIDRPool.IsValid() {
		return nil
	}
	pod, err := netip.ParsePrefix(spec.PodCIDR)
	if err != nil {
		return nil // ValidateServer says why
	}
	pool := nets.PodCIDRPool
	if pod.Bits() < pool.Bits() || !pool.Contains(pod.Addr()) {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "podCIDR"), spec.PodCIDR,
			fmt.Sprintf("not inside the pod CIDR pool %s: Stargate routes a Server's pod CIDR to it, so a pin must come from the pool", pool))}
	}
	return nil
}
