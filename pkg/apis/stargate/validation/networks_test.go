package validation

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

var testNets = ClusterNetworks{
	PodCIDRPool: netip.MustParsePrefix("10.244.0.0/16"),
	ServiceCIDR: netip.MustParsePrefix("10.0.0.0/16"),
	Cloud:       []netip.Prefix{netip.MustParsePrefix("10.224.0.0/12")},
}

func dcSpec(subnet, gw, block string) *stargate.DatacenterSpec {
	return &stargate.DatacenterSpec{Namespace: "dc", WorkerSubnet: subnet, AgentGateway: gw, PodCIDRBlock: block,
		Router: stargate.DatacenterRouter{IP: "100.64.0.1"}}
}

func TestValidateDatacenterNetworks(t *testing.T) {
	others := []NamedDatacenter{{Name: "dc-west", Spec: dcSpec("10.50.2.0/24", "10.50.2.1", "10.244.64.0/18")}}
	tests := []struct {
		name string
		spec *stargate.DatacenterSpec
		old  *stargate.DatacenterSpec
		want string // "" for valid, else a part of the error
	}{
		{"fits", dcSpec("10.50.1.0/24", "10.50.1.1", "10.244.128.0/17"), nil, ""},
		{"worker subnet in the AKS VNet", dcSpec("10.224.5.0/24", "10.224.5.1", ""), nil, `spec.workerSubnet: Invalid value: "10.224.5.0/24": overlaps the cloud network 10.224.0.0/12`},
		{"worker subnet around the AKS VNet", dcSpec("10.0.0.0/8", "10.50.1.1", ""), nil, "spec.workerSubnet"},
		{"worker subnet in the Service range", dcSpec("10.0.5.0/24", "10.0.5.1", ""), nil, "overlaps the Service range 10.0.0.0/16"},
		{"worker subnet in the pod pool", dcSpec("10.244.200.0/24", "10.244.200.1", ""), nil, "overlaps the pod CIDR pool 10.244.0.0/16"},
		{"worker subnet of another datacenter", dcSpec("10.50.2.0/25", "10.50.2.1", ""), nil, "overlaps the worker subnet 10.50.2.0/24 of Datacenter dc-west"},
		{"worker subnet wider than another's", dcSpec("10.50.0.0/16", "10.50.1.1", ""), nil, "of Datacenter dc-west"},
		{"router in the Service range", func() *stargate.DatacenterSpec {
			s := dcSpec("10.50.1.0/24", "10.50.1.1", "")
			s.Router.IP = "10.0.0.1"
			return s
		}(), nil, `spec.router.ip: Invalid value: "10.0.0.1": must not lie in the Service range`},
		{"router in the AKS VNet", func() *stargate.DatacenterSpec {
			s := dcSpec("10.50.1.0/24", "10.50.1.1", "")
			s.Router.IP = "10.224.0.4"
			return s
		}(), nil, "spec.router.ip"},
		{"pod block outside the pool", dcSpec("10.50.1.0/24", "10.50.1.1", "10.245.0.0/20"), nil, "must lie inside the pod CIDR pool 10.244.0.0/16"},
		{"pod block around the pool", dcSpec("10.50.1.0/24", "10.50.1.1", "10.240.0.0/12"), nil, "must lie inside the pod CIDR pool"},
		{"pod block on another datacenter's subnet", func() *stargate.DatacenterSpec {
			nets := dcSpec("10.50.1.0/24", "10.50.1.1", "10.50.2.0/28")
			return nets
		}(), nil, "spec.podCIDRBlock"},
		{"unchanged fields are not checked again", dcSpec("10.224.5.0/24", "10.224.5.1", ""), dcSpec("10.224.5.0/24", "10.224.5.2", ""), ""},
		{"a changed subnet is", dcSpec("10.224.6.0/24", "10.224.6.1", ""), dcSpec("10.224.5.0/24", "10.224.5.1", ""), "spec.workerSubnet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := ValidateDatacenterNetworks(tt.spec, tt.old, testNets, others)
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Fatalf("unexpected errors: %v", errs)
			case tt.want != "" && !strings.Contains(errs.ToAggregate().Error(), tt.want):
				t.Fatalf("errors %v do not say %q", errs, tt.want)
			}
		})
	}
}

func TestValidateServerNetworks(t *testing.T) {
	tests := []struct {
		pod, old string
		ok       bool
	}{
		{"", "", true},
		{"10.244.7.0/24", "", true},
		{"128.0.0.0/1", "", false},
		{"10.0.0.0/8", "", false},
		{"10.245.0.0/24", "", false},
		{"10.245.0.0/24", "10.245.0.0/24", true}, // unchanged
	}
	for _, tt := range tests {
		spec := &stargate.ServerSpec{PodCIDR: tt.pod}
		var old *stargate.ServerSpec
		if tt.old != "" {
			old = &stargate.ServerSpec{PodCIDR: tt.old}
		}
		errs := ValidateServerNetworks(spec, old, testNets)
		if (len(errs) == 0) != tt.ok {
			t.Errorf("podCIDR %q (old %q): errors %v, want ok %v", tt.pod, tt.old, errs, tt.ok)
		}
		if len(errs) > 0 && !strings.Contains(errs[0].Error(), "spec.podCIDR: Invalid value: \""+tt.pod+"\": not inside the pod CIDR pool 10.244.0.0/16") {
			t.Errorf("error %q does not name the field, value and pool", errs[0].Error())
		}
	}
}
