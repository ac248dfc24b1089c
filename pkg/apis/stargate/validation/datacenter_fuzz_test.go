package validation

import (
	"net/netip"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// FuzzValidateDatacenter fills a Datacenter's spec, and the address, router
// and pod CIDR of a Server in it, with values from the fuzzer. Validation
// must not panic and must name a field in every error, and what it accepts
// must hold what admission and the controllers rely on: canonical CIDRs
// and addresses, the gateway inside the worker subnet, a pod CIDR block
// apart from it. A Server the datacenter admits lies inside its network.
func FuzzValidateDatacenter(f *testing.F) {
	f.Add("dc-east", "10.50.1.0/24", "100.64.0.1", "10.50.1.1", "10.244.128.0/17", "10.50.1.11", "100.64.0.1", "10.244.130.0/24")
	f.Add("dc-v6", "fd00:50:1::/64", "fd7a:115c:a1e0::1", "fd00:50:1::1", "", "fd00:50:1::11", "fd7a:115c:a1e0::1", "")
	f.Add("dc.east", "10.50.1.7/24", "router", "10.50.2.1", "10.50.0.0/16", "10.9.9.9", "", "128.0.0.0/1")
	f.Add("", "0.0.0.0/0", "127.0.0.1", "10.50.1.0", "10.244.0.0/30", "::ffff:10.50.1.11", "100.64.0.2", "10.244.0.0/16")
	f.Add("dc-east", "::ffff:10.50.1.0/120", "010.0.0.1", "10.50.1.255", "10.50.1.128/25", "10.50.1.300", "100.64.0.1", "10.244.1.0/24")
	f.Fuzz(func(t *testing.T, ns, subnet, router, gateway, block, serverIP, serverRouter, podCIDR string) {
		d := &stargate.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: "dc"},
			Spec: stargate.DatacenterSpec{Namespace: ns, WorkerSubnet: subnet, Router: stargate.DatacenterRouter{IP: router},
				AgentGateway: gateway, PodCIDRBlock: block},
		}
		errs := ValidateDatacenter(d)
		checkErrors(t, errs, "metadata", "spec")
		if len(errs) > 0 {
			return
		}
		sub := canonicalPrefix(t, "workerSubnet", subnet)
		canonicalAddr(t, "router.ip", router)
		canonicalAddr(t, "agentGateway", gateway)
		if gw := netip.MustParseAddr(gateway); !sub.Contains(gw) {
			t.Errorf("accepted gateway %s outside the worker subnet %s", gateway, subnet)
		}
		if block != "" {
			if b := canonicalPrefix(t, "podCIDRBlock", block); b.Overlaps(sub) {
				t.Errorf("accepted pod CIDR block %s overlapping the worker subnet %s", block, subnet)
			}
		}

		s := &stargate.ServerSpec{IPAddress: serverIP, RouterIP: serverRouter, PodCIDR: podCIDR}
		serverErrs := ValidateServerInDatacenter(s, nil, d.Name, &d.Spec)
		checkErrors(t, serverErrs, "spec")
		if len(serverErrs) > 0 {
			return
		}
		if ip, err := netip.ParseAddr(serverIP); err != nil || !sub.Contains(ip) {
			t.Errorf("admitted server address %q outside the worker subnet %s", serverIP, subnet)
		}
		if serverRouter != router {
			t.Errorf("admitted router %q, the datacenter's is %s", serverRouter, router)
		}
		if podCIDR != "" && block != "" {
			p, err := netip.ParsePrefix(podCIDR)
			if b := netip.MustParsePrefix(block); err != nil || p.Bits() < b.Bits() || !b.Contains(p.Addr()) {
				t.Errorf("admitted pod CIDR %q outside the block %s", podCIDR, block)
			}
		}
	})
}

func canonicalPrefix(t *testing.T, fld, value string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(value)
	if err != nil || p.Masked().String() != value || p.Addr().Is4In6() {
		t.Fatalf("accepted %s %q is not a canonical CIDR (%v, %v)", fld, value, p, err)
	}
	return p
}
