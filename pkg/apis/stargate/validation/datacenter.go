package validation

import (
	"fmt"
	"net/netip"

	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// ValidateDatacenter validates a new Datacenter. Its name is free (a DNS
// subdomain); what ties it to its Servers is spec.namespace.
func ValidateDatacenter(d *stargate.Datacenter) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&d.ObjectMeta, false, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, validateDatacenterSpec(&d.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateDatacenterUpdate validates an update of a Datacenter's metadata
// and spec: its namespace cannot change.
func ValidateDatacenterUpdate(d, old *stargate.Datacenter) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&d.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	specPath := field.NewPath("spec")
	allErrs = append(allErrs, validateDatacenterSpec(&d.Spec, specPath)...)
	if d.Spec.Namespace != old.Spec.Namespace {
		allErrs = append(allErrs, field.Invalid(specPath.Child("namespace"), d.Spec.Namespace,
			fmt.Sprintf("field is immutable (was %q): the datacenter's Servers, Nodes and routes belong to that namespace; create another Datacenter for another namespace", old.Spec.Namespace)))
	}
	return allErrs
}

// ValidateDatacenterStatusUpdate validates an update of a Datacenter's status.
func ValidateDatacenterStatusUpdate(d, old *stargate.Datacenter) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&d.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("status")
	if d.Status.ObservedGeneration < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("observedGeneration"), d.Status.ObservedGeneration, "must not be negative"))
	}
	allErrs = append(allErrs, validateConditions(d.Status.Conditions, fldPath.Child("conditions"))...)
	allErrs = append(allErrs, validateDatacenterTailscaleStatus(d.Status.Tailscale, fldPath.Child("tailscale"))...)
	return allErrs
}

func validateDatacenterSpec(spec *stargate.DatacenterSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList

	nsPath := fldPath.Child("namespace")
	if spec.Namespace == "" {
		allErrs = append(allErrs, field.Required(nsPath, "the namespace of the datacenter's Servers"))
	} else {
		for _, msg := range apimachineryvalidation.ValidateNamespaceName(spec.Namespace, false) {
			allErrs = append(allErrs, field.Invalid(nsPath, spec.Namespace, msg))
		}
	}

	subnetPath := fldPath.Child("workerSubnet")
	subnet, errs := parseCIDR(spec.WorkerSubnet, subnetPath, "the CIDR of the servers' own addresses, e.g. 10.50.1.0/24")
	allErrs = append(allErrs, errs...)
	if subnet.IsValid() && subnet.Bits() == 0 {
		allErrs = append(allErrs, field.Invalid(subnetPath, spec.WorkerSubnet, "must not be a default route: it would admit a Server at any address"))
		subnet = netip.Prefix{}
	}

	// The router is reached over the tailnet, so its address is not
	// required to lie in the worker subnet; agentGateway is its address
	// there.
	routerPath := fldPath.Child("router", "ip")
	if spec.Router.IP == "" {
		allErrs = append(allErrs, field.Required(routerPath, "the router's tailnet address, which the datacenter's Servers name as spec.routerIP"))
	} else {
		allErrs = append(allErrs, validateUnicastIP(spec.Router.IP, routerPath)...)
	}

	gwPath := fldPath.Child("agentGateway")
	switch {
	case spec.AgentGateway == "":
		allErrs = append(allErrs, field.Required(gwPath, "the router's address in the worker subnet, the next hop the node agent checks"))
	default:
		if errs := validateUnicastIP(spec.AgentGateway, gwPath); len(errs) > 0 {
			allErrs = append(allErrs, errs...)
			break
		}
		if !subnet.IsValid() {
			break
		}
		gw, _ := netip.ParseAddr(spec.AgentGateway)
		switch {
		case !subnet.Contains(gw):
			allErrs = append(allErrs, field.Invalid(gwPath, spec.AgentGateway,
				fmt.Sprintf("must be inside spec.workerSubnet %s: the workers reach their gateway directly", subnet)))
		case isReservedIPv4(subnet, gw):
			allErrs = append(allErrs, field.Invalid(gwPath, spec.AgentGateway,
				fmt.Sprintf("must not be the network or broadcast address of spec.workerSubnet %s", subnet)))
		}
	}

	if spec.PodCIDRBlock != "" {
		blockPath := fldPath.Child("podCIDRBlock")
		block, errs := parseCIDR(spec.PodCIDRBlock, blockPath, "")
		allErrs = append(allErrs, errs...)
		if block.IsValid() {
			allErrs = append(allErrs, validatePodCIDR(spec.PodCIDRBlock, blockPath)...)
			if subnet.IsValid() && subnet.Overlaps(block) {
				allErrs = append(allErrs, field.Invalid(blockPath, spec.PodCIDRBlock,
					fmt.Sprintf("must not overlap spec.workerSubnet %s: pod traffic would be routed to the servers' own addresses", subnet)))
			}
		}
	}
	return allErrs
}

// parseCIDR checks that value is a CIDR in canonical form (the network
// address as Go prints it, e.g. 10.50.1.0/24 and not 10.50.1.7/24 or
// 10.050.1.0/24), since CIDRs are compared as strings, and parses it. The
// prefix is invalid (the zero Prefix) when there are errors.
func parseCIDR(value string, fldPath *field.Path, what string) (netip.Prefix, field.ErrorList) {
	if value == "" {
		return netip.Prefix{}, field.ErrorList{field.Required(fldPath, what)}
	}
	if errs := utilvalidation.IsValidCIDR(fldPath, value); len(errs) > 0 {
		return netip.Prefix{}, errs
	}
	p, err := netip.ParsePrefix(value)
	if err != nil || p.Addr().Is4In6() || p.Masked().String() != value {
		return netip.Prefix{}, field.ErrorList{field.Invalid(fldPath, value, "must be a CIDR in canonical form, e.g. 10.50.1.0/24")}
	}
	return p, nil
}

// isReservedIPv4 says whether a is the network or broadcast address of an
// IPv4 subnet that has those (prefixes up to /30).
func isReservedIPv4(subnet netip.Prefix, a netip.Addr) bool {
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return false
	}
	if a == subnet.Addr() {
		return true
	}
	b := subnet.Addr().As4()
	host := 32 - subnet.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<host - 1
	return a == netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ValidateServerInDatacenter checks a Server's spec against the network
// that its namespace's Datacenter, named dcName, declares: spec.ipAddress
// inside the worker subnet, spec.routerIP the datacenter's router, and a
// pinned spec.podCIDR inside the pod CIDR block when one is declared. On
// update (old is not nil) only the fields the update changes are checked,
// so a Server made before its Datacenter, or before the network changed,
// can still have its metadata written (finalizers removed, say) and be
// deleted; Stargate reports it in its status instead.
func ValidateServerInDatacenter(spec, old *stargate.ServerSpec, dcName string, dc *stargate.DatacenterSpec) field.ErrorList {
	var allErrs field.ErrorList
	fldPath := field.NewPath("spec")
	changed := func(get func(*stargate.ServerSpec) string) bool {
		return old == nil || get(old) != get(spec)
	}
	if changed(func(s *stargate.ServerSpec) string { return s.IPAddress }) {
		subnet, err := netip.ParsePrefix(dc.WorkerSubnet)
		ip, ipErr := netip.ParseAddr(spec.IPAddress)
		if err != nil || ipErr != nil || !subnet.Contains(ip) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("ipAddress"), spec.IPAddress,
				fmt.Sprintf("not inside the worker subnet %s of Datacenter %s", dc.WorkerSubnet, dcName)))
		}
	}
	if changed(func(s *stargate.ServerSpec) string { return s.RouterIP }) && spec.RouterIP != dc.Router.IP {
		p := fldPath.Child("routerIP")
		if spec.RouterIP == "" {
			allErrs = append(allErrs, field.Required(p, fmt.Sprintf("the servers of Datacenter %s are reached through its router %s", dcName, dc.Router.IP)))
		} else {
			allErrs = append(allErrs, field.Invalid(p, spec.RouterIP, fmt.Sprintf("must be %s, the router of Datacenter %s", dc.Router.IP, dcName)))
		}
	}
	if spec.PodCIDR != "" && dc.PodCIDRBlock != "" && changed(func(s *stargate.ServerSpec) string { return s.PodCIDR }) {
		block, err := netip.ParsePrefix(dc.PodCIDRBlock)
		pod, podErr := netip.ParsePrefix(spec.PodCIDR)
		if err != nil || podErr != nil || pod.Bits() < block.Bits() || !block.Contains(pod.Addr()) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("podCIDR"), spec.PodCIDR,
				fmt.Sprintf("not inside the pod CIDR block %s of Datacenter %s", dc.PodCIDRBlock, dcName)))
		}
	}
	return allErrs
}
