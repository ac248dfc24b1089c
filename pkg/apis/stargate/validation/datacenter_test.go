package validation

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

func validDatacenter() *stargate.Datacenter {
	return &stargate.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: "dc-east", ResourceVersion: "1"},
		Spec: stargate.DatacenterSpec{
			Namespace:    "dc-east",
			WorkerSubnet: "10.50.1.0/24",
			Router:       stargate.DatacenterRouter{IP: "100.64.0.1"},
			AgentGateway: "10.50.1.1",
			PodCIDRBlock: "10.244.128.0/17",
		},
	}
}

func TestValidateDatacenter(t *testing.T) {
	cases := []struct {
		name      string
		mutate    func(*stargate.Datacenter)
		wantField string // "" means accepted
		wantType  field.ErrorType
	}{
		{"the sample", func(*stargate.Datacenter) {}, "", ""},
		{"no pod CIDR block", func(d *stargate.Datacenter) { d.Spec.PodCIDRBlock = "" }, "", ""},
		{"name other than the namespace", func(d *stargate.Datacenter) { d.Name = "east.example.com" }, "", ""},
		{"IPv6 network", func(d *stargate.Datacenter) {
			d.Spec.WorkerSubnet, d.Spec.AgentGateway, d.Spec.Router.IP, d.Spec.PodCIDRBlock = "fd00:50:1::/64", "fd00:50:1::1", "fd7a:115c:a1e0::1", "fd00:244::/56"
		}, "", ""},
		{"router inside the worker subnet", func(d *stargate.Datacenter) { d.Spec.Router.IP = "10.50.1.1" }, "", ""},
		{"gateway is the last host of a /30", func(d *stargate.Datacenter) {
			d.Spec.WorkerSubnet, d.Spec.AgentGateway = "10.50.1.0/30", "10.50.1.2"
		}, "", ""},
		{"gateway in a /31", func(d *stargate.Datacenter) {
			d.Spec.WorkerSubnet, d.Spec.AgentGateway = "10.50.1.0/31", "10.50.1.0"
		}, "", ""},

		{"name invalid", func(d *stargate.Datacenter) { d.Name = "DC East" }, "metadata.name", field.ErrorTypeInvalid},
		{"namespaced", func(d *stargate.Datacenter) { d.Namespace = "dc-east" }, "metadata.namespace", field.ErrorTypeForbidden},
		{"namespace missing", func(d *stargate.Datacenter) { d.Spec.Namespace = "" }, "spec.namespace", field.ErrorTypeRequired},
		{"namespace not a DNS label", func(d *stargate.Datacenter) { d.Spec.Namespace = "dc.east" }, "spec.namespace", field.ErrorTypeInvalid},
		{"namespace too long", func(d *stargate.Datacenter) { d.Spec.Namespace = strings.Repeat("d", 64) }, "spec.namespace", field.ErrorTypeInvalid},
		{"worker subnet missing", func(d *stargate.Datacenter) { d.Spec.WorkerSubnet = "" }, "spec.workerSubnet", field.ErrorTypeRequired},
		{"worker subnet not a CIDR", func(d *stargate.Datacenter) { d.Spec.WorkerSubnet = "10.50.1.0" }, "spec.workerSubnet", field.ErrorTypeInvalid},
		{"worker subnet with host bits", func(d *stargate.Datacenter) { d.Spec.WorkerSubnet = "10.50.1.7/24" }, "spec.workerSubnet", field.ErrorTypeInvalid},
		{"worker subnet with leading zeros", func(d *stargate.Datacenter) { d.Spec.WorkerSubnet = "10.050.1.0/24" }, "spec.workerSubnet", field.ErrorTypeInvalid},
		{"worker subnet a default route", func(d *stargate.Datacenter) {
			d.Spec.WorkerSubnet, d.Spec.PodCIDRBlock = "0.0.0.0/0", ""
		}, "spec.workerSubnet", field.ErrorTypeInvalid},
		{"router missing", func(d *stargate.Datacenter) { d.Spec.Router.IP = "" }, "spec.router.ip", field.ErrorTypeRequired},
		{"router not an address", func(d *stargate.Datacenter) { d.Spec.Router.IP = "router.example" }, "spec.router.ip", field.ErrorTypeInvalid},
		{"router loopback", func(d *stargate.Datacenter) { d.Spec.Router.IP = "127.0.0.1" }, "spec.router.ip", field.ErrorTypeInvalid},
		{"gateway missing", func(d *stargate.Datacenter) { d.Spec.AgentGateway = "" }, "spec.agentGateway", field.ErrorTypeRequired},
		{"gateway not canonical", func(d *stargate.Datacenter) { d.Spec.AgentGateway = "10.50.1.01" }, "spec.agentGateway", field.ErrorTypeInvalid},
		{"gateway outside the worker subnet", func(d *stargate.Datacenter) { d.Spec.AgentGateway = "10.50.2.1" }, "spec.agentGateway", field.ErrorTypeInvalid},
		{"gateway of the other family", func(d *stargate.Datacenter) { d.Spec.AgentGateway = "fd00::1" }, "spec.agentGateway", field.ErrorTypeInvalid},
		{"gateway the network address", func(d *stargate.Datacenter) { d.Spec.AgentGateway = "10.50.1.0" }, "spec.agentGateway", field.ErrorTypeInvalid},
		{"gateway the broadcast address", func(d *stargate.Datacenter) { d.Spec.AgentGateway = "10.50.1.255" }, "spec.agentGateway", field.ErrorTypeInvalid},
		{"pod CIDR block with host bits", func(d *stargate.Datacenter) { d.Spec.PodCIDRBlock = "10.244.128.1/17" }, "spec.podCIDRBlock", field.ErrorTypeInvalid},
		{"pod CIDR block too small for a pod CIDR", func(d *stargate.Datacenter) { d.Spec.PodCIDRBlock = "10.244.0.0/30" }, "spec.podCIDRBlock", field.ErrorTypeInvalid},
		{"pod CIDR block holds the worker subnet", func(d *stargate.Datacenter) { d.Spec.PodCIDRBlock = "10.50.0.0/16" }, "spec.podCIDRBlock", field.ErrorTypeInvalid},
		{"pod CIDR block inside the worker subnet", func(d *stargate.Datacenter) { d.Spec.PodCIDRBlock = "10.50.1.128/25" }, "spec.podCIDRBlock", field.ErrorTypeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := validDatacenter()
			tc.mutate(d)
			errs := ValidateDatacenter(d)
			if tc.wantField == "" {
				if len(errs) > 0 {
					t.Fatalf("rejected: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.wantField || errs[0].Type != tc.wantType {
				t.Fatalf("errors %v, want exactly one %s on %s", errs, tc.wantType, tc.wantField)
			}
			if errs[0].Type == field.ErrorTypeInvalid && errs[0].Detail == "" {
				t.Errorf("%s rejected without a reason", tc.wantField)
			}
		})
	}
}

func TestValidateDatacenterUpdate(t *testing.T) {
	cases := []struct {
		name      string
		mutate    func(*stargate.Datacenter)
		wantField string
	}{
		{"network changed", func(d *stargate.Datacenter) {
			d.Spec.WorkerSubnet, d.Spec.AgentGateway, d.Spec.PodCIDRBlock = "10.60.0.0/16", "10.60.0.1", ""
		}, ""},
		{"namespace changed", func(d *stargate.Datacenter) { d.Spec.Namespace = "dc-west" }, "spec.namespace"},
		{"changed network invalid", func(d *stargate.Datacenter) { d.Spec.AgentGateway = "10.60.0.1" }, "spec.agentGateway"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old, d := validDatacenter(), validDatacenter()
			tc.mutate(d)
			errs := ValidateDatacenterUpdate(d, old)
			if tc.wantField == "" {
				if len(errs) > 0 {
					t.Fatalf("rejected: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.wantField {
				t.Fatalf("errors %v, want exactly one on %s", errs, tc.wantField)
			}
		})
	}
}

func TestValidateDatacenterStatusUpdate(t *testing.T) {
	ready := metav1.Condition{Type: stargate.ConditionReady, Status: metav1.ConditionTrue, Reason: "NetworkDeclared", LastTransitionTime: metav1.Now()}
	old, d := validDatacenter(), validDatacenter()
	d.Status = stargate.DatacenterStatus{ObservedGeneration: 1, Conditions: []metav1.Condition{ready}}
	if errs := ValidateDatacenterStatusUpdate(d, old); len(errs) > 0 {
		t.Errorf("Ready condition rejected: %v", errs)
	}
	d.Status.Conditions = append(d.Status.Conditions, ready)
	if errs := ValidateDatacenterStatusUpdate(d, old); len(errs) != 1 || errs[0].Field != "status.conditions[1]" {
		t.Errorf("errors %v, want one on status.conditions[1] (Ready twice)", errs)
	}
	d.Status.Conditions, d.Status.ObservedGeneration = nil, -1
	if errs := ValidateDatacenterStatusUpdate(d, old); len(errs) != 1 || errs[0].Field != "status.observedGeneration" {
		t.Errorf("errors %v, want one on status.observedGeneration", errs)
	}
}

func TestValidateServerInDatacenter(t *testing.T) {
	dc := validDatacenter()
	cases := []struct {
		name    string
		mutate  func(s *stargate.ServerSpec)
		old     func(s *stargate.ServerSpec) // nil: a create
		wantErr string                       // "" means accepted
	}{
		{"inside", func(*stargate.ServerSpec) {}, nil, ""},
		{"no pinned pod CIDR", func(s *stargate.ServerSpec) { s.PodCIDR = "" }, nil, ""},
		{"pod CIDR is the whole block", func(s *stargate.ServerSpec) { s.PodCIDR = "10.244.128.0/17" }, nil, ""},
		{"address outside the subnet", func(s *stargate.ServerSpec) { s.IPAddress = "10.9.9.9" },
			nil, `spec.ipAddress: Invalid value: "10.9.9.9": not inside the worker subnet 10.50.1.0/24 of Datacenter dc-east`},
		{"address of the other family", func(s *stargate.ServerSpec) { s.IPAddress = "fd00::11" },
			nil, `spec.ipAddress: Invalid value: "fd00::11": not inside the worker subnet`},
		{"another router", func(s *stargate.ServerSpec) { s.RouterIP = "100.64.9.9" },
			nil, `spec.routerIP: Invalid value: "100.64.9.9": must be 100.64.0.1, the router of Datacenter dc-east`},
		{"no router", func(s *stargate.ServerSpec) { s.RouterIP = "" },
			nil, `spec.routerIP: Required value: the servers of Datacenter dc-east are reached through its router 100.64.0.1`},
		{"pod CIDR outside the block", func(s *stargate.ServerSpec) { s.PodCIDR = "10.244.1.0/24" },
			nil, `spec.podCIDR: Invalid value: "10.244.1.0/24": not inside the pod CIDR block 10.244.128.0/17 of Datacenter dc-east`},
		{"pod CIDR larger than the block", func(s *stargate.ServerSpec) { s.PodCIDR = "10.244.0.0/16" },
			nil, `spec.podCIDR: Invalid value: "10.244.0.0/16"`},
		{"pod CIDR hijacking half the Internet", func(s *stargate.ServerSpec) { s.PodCIDR = "128.0.0.0/1" },
			nil, `spec.podCIDR: Invalid value: "128.0.0.0/1"`},
		{"update moves the address out", func(s *stargate.ServerSpec) { s.IPAddress = "10.9.9.9" },
			func(*stargate.ServerSpec) {}, `spec.ipAddress: Invalid value: "10.9.9.9"`},
		{"update pins a pod CIDR outside the block", func(s *stargate.ServerSpec) { s.PodCIDR = "10.244.1.0/24" },
			func(s *stargate.ServerSpec) { s.PodCIDR = "" }, `spec.podCIDR`},
		{"update leaves an old server's fields alone", func(s *stargate.ServerSpec) {
			s.IPAddress, s.RouterIP, s.PodCIDR, s.MACAddress = "10.9.9.9", "", "10.244.1.0/24", "52:54:00:00:00:01"
		}, func(s *stargate.ServerSpec) { s.IPAddress, s.RouterIP, s.PodCIDR = "10.9.9.9", "", "10.244.1.0/24" }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := validServer()
			s.Spec.PodCIDR = "10.244.130.0/24"
			var old *stargate.ServerSpec
			if tc.old != nil {
				o := s.Spec
				tc.old(&o)
				old = &o
			}
			tc.mutate(&s.Spec)
			errs := ValidateServerInDatacenter(&s.Spec, old, dc.Name, &dc.Spec)
			if tc.wantErr == "" {
				if len(errs) > 0 {
					t.Fatalf("rejected: %v", errs)
				}
				return
			}
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tc.wantErr) {
				t.Fatalf("errors %v, want one starting %q", errs, tc.wantErr)
			}
		})
	}
}
