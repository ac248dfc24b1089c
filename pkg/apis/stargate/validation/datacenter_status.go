package validation

import (
	"net/netip"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// Bounds of a Datacenter's status.tailscale: a datacenter has its own
// router and the AKS router, a few more when a router was replaced; each
// carries at most a route per Server and the worker subnet.
const (
	MaxTailscaleRecords      = 16
	MaxTailscaleRecordRoutes = 4096
	maxDeviceIDLength        = 128
)

// validateDatacenterTailscaleStatus checks status.tailscale: one record per
// tailnet address, each an IP, and every route a canonical CIDR, in bounded
// numbers.
func validateDatacenterTailscaleStatus(recs []stargate.TailscaleRouteRecord, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(recs) > MaxTailscaleRecords {
		allErrs = append(allErrs, field.TooMany(fldPath, len(recs), MaxTailscaleRecords))
		return allErrs
	}
	seen := map[string]bool{}
	for i, r := range recs {
		p := fldPath.Index(i)
		if a, err := netip.ParseAddr(r.TailnetIP); err != nil || a.Zone() != "" || a.String() != r.TailnetIP {
			allErrs = append(allErrs, field.Invalid(p.Child("tailnetIP"), r.TailnetIP, "must be an IP address in canonical form, the tailnet address of a device"))
		} else if seen[r.TailnetIP] {
			allErrs = append(allErrs, field.Duplicate(p.Child("tailnetIP"), r.TailnetIP))
		}
		seen[r.TailnetIP] = true
		if len(r.DeviceID) > maxDeviceIDLength {
			allErrs = append(allErrs, field.TooLong(p.Child("deviceID"), "", maxDeviceIDLength))
		}
		allErrs = append(allErrs, validateRouteSet(r.Enabled, p.Child("enabled"))...)
		allErrs = append(allErrs, validateRouteSet(r.Advertised, p.Child("advertised"))...)
	}
	return allErrs
}

func validateRouteSet(routes []string, fldPath *field.Path) field.ErrorList {
	if len(routes) > MaxTailscaleRecordRoutes {
		return field.ErrorList{field.TooMany(fldPath, len(routes), MaxTailscaleRecordRoutes)}
	}
	var allErrs field.ErrorList
	seen := map[string]bool{}
	for i, r := range routes {
		p, err := netip.ParsePrefix(r)
		switch {
		case err != nil || p.Masked().String() != r:
			allErrs = append(allErrs, field.Invalid(fldPath.Index(i), r, "must be a CIDR in canonical form, e.g. 10.244.3.0/24"))
		case seen[r]:
			allErrs = append(allErrs, field.Duplicate(fldPath.Index(i), r))
		}
		seen[r] = true
	}
	return allErrs
}
