package validation

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

const testHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICZ5DyFmC/K2vMrKirpcFnjA+T1MsXdMtOn1HTB/jrlJ worker-1"

func validServer() *stargate.Server {
	return &stargate.Server{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-1", Namespace: "dc-east", ResourceVersion: "1"},
		Spec: stargate.ServerSpec{
			Hostname:               "worker-1",
			IPAddress:              "10.50.1.11",
			MACAddress:             "52:54:00:12:34:56",
			RouterIP:               "100.64.0.1",
			SSHPort:                22,
			HostKey:                testHostKey,
			ProvisioningProfileRef: &stargate.LocalObjectReference{Name: "default"},
			PodCIDR:                "10.244.10.0/24",
		},
	}
}

func validProfile() *stargate.ProvisioningProfile {
	return &stargate.ProvisioningProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "dc-east"},
		Spec: stargate.ProvisioningProfileSpec{
			KubernetesVersion:       "1.33",
			ContainerRuntime:        stargate.ContainerRuntimeContainerd,
			SSHCredentialsSecretRef: &stargate.LocalObjectReference{Name: "ssh"},
			AdminUsername:           "ubuntu",
			NodeLabels:              map[string]string{"example.com/rack": "r1"},
			NodeTaints:              []stargate.Taint{{Key: "example.com/dc", Value: "east", Effect: stargate.TaintEffectNoSchedule}},
		},
	}
}

func validOperation() *stargate.Operation {
	return &stargate.Operation{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-1-repave-abcde", Namespace: "dc-east", ResourceVersion: "1"},
		Spec: stargate.OperationSpec{
			ServerRef:              stargate.LocalObjectReference{Name: "worker-1"},
			ProvisioningProfileRef: stargate.LocalObjectReference{Name: "default"},
			Operation:              stargate.OperationRepave,
		},
	}
}

func TestValidObjectsPass(t *testing.T) {
	if errs := ValidateServer(validServer()); len(errs) > 0 {
		t.Errorf("valid Server rejected: %v", errs)
	}
	if errs := ValidateProvisioningProfile(validProfile()); len(errs) > 0 {
		t.Errorf("valid ProvisioningProfile rejected: %v", errs)
	}
	if errs := ValidateOperation(validOperation()); len(errs) > 0 {
		t.Errorf("valid Operation rejected: %v", errs)
	}
	s := validServer()
	s.Name = strings.Repeat("w", MaxServerNameLength)
	if errs := ValidateServer(s); len(errs) > 0 {
		t.Errorf("Server named with %d characters rejected: %v", MaxServerNameLength, errs)
	}
	s = validServer()
	// The store generates the name, the prefix cut to 58 characters and
	// five random ones, before it validates.
	s.GenerateName = strings.Repeat("w", 100) + "-"
	s.Name = strings.Repeat("w", 58) + "x7k2q"
	if errs := ValidateServer(s); len(errs) > 0 {
		t.Errorf("long generateName rejected (the generated name is cut to fit): %v", errs)
	}
	p := validProfile()
	p.Spec.NodeLabels = map[string]string{
		"node.kubernetes.io/instance-type": "metal", "topology.kubernetes.io/zone": "dc-east-1",
		"example.kubelet.kubernetes.io/x": "y", "example.com/kubernetes.io": "z",
	}
	p.Spec.NodeTaints = append(p.Spec.NodeTaints, stargate.Taint{Key: "example.com/dc", Value: "east", Effect: stargate.TaintEffectNoExecute})
	if errs := ValidateProvisioningProfile(p); len(errs) > 0 {
		t.Errorf("labels a kubelet may set, or a second taint of one key with another effect, rejected: %v", errs)
	}
	for _, v := range []string{"1.33", "1.33.2", "v1.30.0"} {
		p := validProfile()
		p.Spec.KubernetesVersion = v
		if errs := ValidateProvisioningProfile(p); len(errs) > 0 {
			t.Errorf("kubernetesVersion %q rejected: %v", v, errs)
		}
	}
}

// TestInvalidInputsNameTheField checks that each bad input is rejected with
// an error on the field it is about.
func TestInvalidInputsNameTheField(t *testing.T) {
	cases := []struct {
		name      string
		validate  func() []string
		wantField string
	}{
		{"server hostname not a DNS label", serverErrs(func(s *stargate.Server) { s.Spec.Hostname = "Worker_1" }), "spec.hostname"},
		{"server hostname missing", serverErrs(func(s *stargate.Server) { s.Spec.Hostname = "" }), "spec.hostname"},
		{"server IP malformed", serverErrs(func(s *stargate.Server) { s.Spec.IPAddress = "10.50.1.300" }), "spec.ipAddress"},
		{"server IP missing", serverErrs(func(s *stargate.Server) { s.Spec.IPAddress = "" }), "spec.ipAddress"},
		{"server IP loopback", serverErrs(func(s *stargate.Server) { s.Spec.IPAddress = "127.0.0.1" }), "spec.ipAddress"},
		{"server MAC malformed", serverErrs(func(s *stargate.Server) { s.Spec.MACAddress = "52:54:00:12:34" }), "spec.macAddress"},
		{"server router IP malformed", serverErrs(func(s *stargate.Server) { s.Spec.RouterIP = "router" }), "spec.routerIP"},
		{"server router IP equals server IP", serverErrs(func(s *stargate.Server) { s.Spec.RouterIP = s.Spec.IPAddress }), "spec.routerIP"},
		{"server SSH port out of range", serverErrs(func(s *stargate.Server) { s.Spec.SSHPort = 70000 }), "spec.sshPort"},
		{"server host key not a key", serverErrs(func(s *stargate.Server) { s.Spec.HostKey = "ssh-ed25519 not-base64" }), "spec.hostKey"},
		{"server profile ref without a name", serverErrs(func(s *stargate.Server) { s.Spec.ProvisioningProfileRef.Name = "" }), "spec.provisioningProfileRef.name"},
		{"server profile ref name invalid", serverErrs(func(s *stargate.Server) { s.Spec.ProvisioningProfileRef.Name = "Bad Name" }), "spec.provisioningProfileRef.name"},
		{"server pod CIDR malformed", serverErrs(func(s *stargate.Server) { s.Spec.PodCIDR = "10.244.0.0/33" }), "spec.podCIDR"},
		{"server pod CIDR too small", serverErrs(func(s *stargate.Server) { s.Spec.PodCIDR = "10.244.0.0/30" }), "spec.podCIDR"},
		{"server name invalid", serverErrs(func(s *stargate.Server) { s.Name = "Worker 1" }), "metadata.name"},
		{"server name longer than a label value", serverErrs(func(s *stargate.Server) { s.Name = strings.Repeat("w", MaxServerNameLength+1) }), "metadata.name"},
		{"server hostname changed", serverUpdateErrs(func(s *stargate.Server) { s.Spec.Hostname = "worker-9" }), "spec.hostname"},
		{"server pinned pod CIDR changed", serverUpdateErrs(func(s *stargate.Server) { s.Spec.PodCIDR = "10.244.11.0/24" }), "spec.podCIDR"},
		{"server status phase unknown", serverStatusErrs(func(s *stargate.Server) { s.Status.Phase = "Exploded" }), "status.phase"},
		{"server status route layer unknown", serverStatusErrs(func(s *stargate.Server) {
			s.Status.Routes = []stargate.RouteLayerStatus{{Layer: "bgp"}}
		}), "status.routes[0].layer"},
		{"server status route layer twice", serverStatusErrs(func(s *stargate.Server) {
			s.Status.Routes = []stargate.RouteLayerStatus{{Layer: "node"}, {Layer: "node"}}
		}), "status.routes[1].layer"},
		{"profile kubernetes version malformed", profileErrs(func(p *stargate.ProvisioningProfile) { p.Spec.KubernetesVersion = "latest" }), "spec.kubernetesVersion"},
		{"profile kubernetes version 2.x", profileErrs(func(p *stargate.ProvisioningProfile) { p.Spec.KubernetesVersion = "2.0" }), "spec.kubernetesVersion"},
		{"profile runtime unsupported", profileErrs(func(p *stargate.ProvisioningProfile) { p.Spec.ContainerRuntime = "docker" }), "spec.containerRuntime"},
		{"profile SSH secret ref missing", profileErrs(func(p *stargate.ProvisioningProfile) { p.Spec.SSHCredentialsSecretRef = nil }), "spec.sshCredentialsSecretRef"},
		{"profile admin user invalid", profileErrs(func(p *stargate.ProvisioningProfile) { p.Spec.AdminUsername = "Admin User" }), "spec.adminUsername"},
		{"profile node label invalid", profileErrs(func(p *stargate.ProvisioningProfile) { p.Spec.NodeLabels = map[string]string{"bad key!": "x"} }), "spec.nodeLabels"},
		{"profile node label a kubelet may not set", profileErrs(func(p *stargate.ProvisioningProfile) {
			p.Spec.NodeLabels = map[string]string{"node-role.kubernetes.io/worker": ""}
		}), "spec.nodeLabels[node-role.kubernetes.io/worker]"},
		{"profile node label in k8s.io", profileErrs(func(p *stargate.ProvisioningProfile) {
			p.Spec.NodeLabels = map[string]string{"example.k8s.io/x": "y"}
		}), "spec.nodeLabels[example.k8s.io/x]"},
		{"profile taint twice", profileErrs(func(p *stargate.ProvisioningProfile) {
			p.Spec.NodeTaints = append(p.Spec.NodeTaints, stargate.Taint{Key: "example.com/dc", Value: "west", Effect: stargate.TaintEffectNoSchedule})
		}), "spec.nodeTaints[1]"},
		{"profile taint effect invalid", profileErrs(func(p *stargate.ProvisioningProfile) { p.Spec.NodeTaints[0].Effect = "Sometimes" }), "spec.nodeTaints[0].effect"},
		{"profile script ref without key", profileErrs(func(p *stargate.ProvisioningProfile) {
			p.Spec.BootstrapScriptRef = &stargate.ConfigMapKeyReference{Name: "scripts"}
		}), "spec.bootstrapScriptRef.key"},
		{"operation server ref missing", operationErrs(func(o *stargate.Operation) { o.Spec.ServerRef.Name = "" }), "spec.serverRef.name"},
		{"operation kind unsupported", operationErrs(func(o *stargate.Operation) { o.Spec.Operation = "Reset" }), "spec.operation"},
		{"operation spec changed", func() []string {
			old, o := validOperation(), validOperation()
			o.Spec.Reason = "changed my mind"
			return errStrings(ValidateOperationUpdate(o, old))
		}, "spec"},
		{"operation finished phase changed", func() []string {
			old, o := validOperation(), validOperation()
			old.Status.Phase = stargate.OperationSucceeded
			o.Status.Phase = stargate.OperationRunning
			return errStrings(ValidateOperationStatusUpdate(o, old))
		}, "status.phase"},
		{"repave reason too long", func() []string {
			return errStrings(ValidateRepaveRequest(&stargate.RepaveRequest{Reason: strings.Repeat("x", MaxReasonLength+1)}))
		}, "reason"},
		{"repave profile override invalid", func() []string {
			return errStrings(ValidateRepaveRequest(&stargate.RepaveRequest{ProvisioningProfileRef: &stargate.LocalObjectReference{Name: "Nope!"}}))
		}, "provisioningProfileRef.name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.validate()
			if len(errs) == 0 {
				t.Fatalf("accepted, want an error on %s", tc.wantField)
			}
			for _, e := range errs {
				if strings.HasPrefix(e, tc.wantField+":") || strings.HasPrefix(e, tc.wantField+"[") || strings.HasPrefix(e, tc.wantField+".") {
					return
				}
			}
			t.Errorf("errors %q name no field %s", errs, tc.wantField)
		})
	}
}

func TestHostnameUnchangedUpdatePasses(t *testing.T) {
	old, s := validServer(), validServer()
	s.Spec.IPAddress = "10.50.1.12"
	if errs := ValidateServerUpdate(s, old); len(errs) > 0 {
		t.Errorf("IP change rejected: %v", errs)
	}
}

func errStrings(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func serverErrs(mutate func(*stargate.Server)) func() []string {
	return func() []string {
		s := validServer()
		mutate(s)
		return errStrings(ValidateServer(s))
	}
}

func serverUpdateErrs(mutate func(*stargate.Server)) func() []string {
	return func() []string {
		old, s := validServer(), validServer()
		mutate(s)
		return errStrings(ValidateServerUpdate(s, old))
	}
}

func serverStatusErrs(mutate func(*stargate.Server)) func() []string {
	return func() []string {
		old, s := validServer(), validServer()
		mutate(s)
		return errStrings(ValidateServerStatusUpdate(s, old))
	}
}

func profileErrs(mutate func(*stargate.ProvisioningProfile)) func() []string {
	return func() []string {
		p := validProfile()
		mutate(p)
		return errStrings(ValidateProvisioningProfile(p))
	}
}

func operationErrs(mutate func(*stargate.Operation)) func() []string {
	return func() []string {
		o := validOperation()
		mutate(o)
		return errStrings(ValidateOperation(o))
	}
}

// statusServer is a Server with the status Stargate and the node agent
// write: every condition type and every route layer.
func statusServer() *stargate.Server {
	s := validServer()
	now := metav1.Now()
	s.Status = stargate.ServerStatus{
		Phase: stargate.ServerReady, NodeName: "worker-1", PodCIDR: "10.244.10.0/24",
		LastOperation: "worker-1-repave-abcde", ObservedGeneration: 1,
	}
	for _, typ := range []string{
		stargate.ConditionReady, stargate.ConditionProvisioned, stargate.ConditionNodeReady, stargate.ConditionRoutesReady,
		stargate.ConditionAzureRouteSynced, stargate.ConditionTailscaleRoutesApproved, stargate.ConditionCiliumPodCIDRSynced,
		stargate.ConditionNodeRoutesHealthy, stargate.ConditionCiliumPodCIDRMatches, stargate.ConditionPodCIDRAllocated,
	} {
		s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{
			Type: typ, Status: metav1.ConditionTrue, Reason: "AllGood", Message: typ + " is fine", LastTransitionTime: now,
		})
	}
	for _, l := range stargate.AllRouteLayers {
		s.Status.Routes = append(s.Status.Routes, stargate.RouteLayerStatus{
			Layer:       l,
			Desired:     []string{"10.244.0.0/16 via 10.50.1.1 dev eth0", "10.0.0.0/16 via 10.50.1.1 dev eth0", "10.244.10.0/24 dev cilium_host"},
			Observed:    []string{"10.244.0.0/16 via 10.50.1.1 dev eth0", "10.0.0.0/16 via 10.50.1.1 dev eth0", "10.244.10.0/24 dev cilium_host"},
			Healthy:     true,
			Reason:      "RoutesHealthy",
			Message:     "routes are right",
			LastChecked: &now,
		})
	}
	return s
}

func nodeLayer(s *stargate.Server) *stargate.RouteLayerStatus {
	for i := range s.Status.Routes {
		if s.Status.Routes[i].Layer == stargate.RouteLayerNode {
			return &s.Status.Routes[i]
		}
	}
	panic("no node layer")
}

func routes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.%d.%d.0/24 dev eth0", i/256, i%256)
	}
	return out
}

// TestServerStatusBounds checks that a status writer, above all the node
// agent (its conditions and the node route layer), cannot inflate its
// Server: every list and free-text field of status is bounded, the bound
// itself is accepted, and one past it is refused naming the field.
func TestServerStatusBounds(t *testing.T) {
	cases := []struct {
		name      string
		mutate    func(*stargate.Server)
		wantField string // "" means accepted
		wantType  field.ErrorType
	}{
		{"what Stargate writes", func(*stargate.Server) {}, "", ""},
		{"conditions at the bound", func(s *stargate.Server) {
			for i := len(s.Status.Conditions); i < MaxConditions; i++ {
				s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{
					Type: fmt.Sprintf("Extra%d", i), Status: metav1.ConditionUnknown, Reason: "Extra", LastTransitionTime: metav1.Now()})
			}
		}, "", ""},
		{"too many conditions", func(s *stargate.Server) {
			for i := len(s.Status.Conditions); i <= MaxConditions; i++ {
				s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{
					Type: fmt.Sprintf("Extra%d", i), Status: metav1.ConditionUnknown, Reason: "Extra", LastTransitionTime: metav1.Now()})
			}
		}, "status.conditions", field.ErrorTypeTooMany},
		{"condition message at the bound", func(s *stargate.Server) {
			s.Status.Conditions[7].Message = strings.Repeat("m", MaxMessageLength)
		}, "", ""},
		{"condition message too long", func(s *stargate.Server) {
			s.Status.Conditions[7].Message = strings.Repeat("m", MaxMessageLength+1)
		}, "status.conditions[7].message", field.ErrorTypeTooLong},
		{"condition reason too long", func(s *stargate.Server) {
			s.Status.Conditions[8].Reason = strings.Repeat("R", 1025)
		}, "status.conditions[8].reason", field.ErrorTypeTooLong},
		{"more route layers than there are", func(s *stargate.Server) {
			s.Status.Routes = append(s.Status.Routes, stargate.RouteLayerStatus{Layer: stargate.RouteLayerNode})
		}, "status.routes", field.ErrorTypeTooMany},
		{"desired routes at the bound", func(s *stargate.Server) {
			nodeLayer(s).Desired = routes(MaxRoutesPerLayer)
		}, "", ""},
		{"too many desired routes", func(s *stargate.Server) {
			nodeLayer(s).Desired = routes(MaxRoutesPerLayer + 1)
		}, "status.routes[3].desired", field.ErrorTypeTooMany},
		{"too many observed routes", func(s *stargate.Server) {
			nodeLayer(s).Observed = routes(MaxRoutesPerLayer + 1)
		}, "status.routes[3].observed", field.ErrorTypeTooMany},
		{"observed route at the bound", func(s *stargate.Server) {
			nodeLayer(s).Observed[1] = strings.Repeat("r", MaxRouteLength)
		}, "", ""},
		{"observed route too long", func(s *stargate.Server) {
			nodeLayer(s).Observed[1] = strings.Repeat("r", MaxRouteLength+1)
		}, "status.routes[3].observed[1]", field.ErrorTypeTooLong},
		{"desired route too long", func(s *stargate.Server) {
			nodeLayer(s).Desired[2] = strings.Repeat("r", MaxRouteLength+1)
		}, "status.routes[3].desired[2]", field.ErrorTypeTooLong},
		{"layer reason at the bound", func(s *stargate.Server) {
			nodeLayer(s).Reason = strings.Repeat("R", MaxRouteLayerReasonLength)
		}, "", ""},
		{"layer reason too long", func(s *stargate.Server) {
			nodeLayer(s).Reason = strings.Repeat("R", MaxRouteLayerReasonLength+1)
		}, "status.routes[3].reason", field.ErrorTypeTooLong},
		{"layer message at the bound", func(s *stargate.Server) {
			nodeLayer(s).Message = strings.Repeat("m", MaxMessageLength)
		}, "", ""},
		{"layer message too long", func(s *stargate.Server) {
			nodeLayer(s).Message = strings.Repeat("m", MaxMessageLength+1)
		}, "status.routes[3].message", field.ErrorTypeTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old, s := statusServer(), statusServer()
			tc.mutate(s)
			errs := ValidateServerStatusUpdate(s, old)
			if tc.wantField == "" {
				if len(errs) > 0 {
					t.Fatalf("rejected: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.wantField || errs[0].Type != tc.wantType {
				t.Fatalf("errors %v, want exactly one %s on %s", errs, tc.wantType, tc.wantField)
			}
		})
	}
}

// TestOversizedListsAnswerShortly checks that a list far past its bound is
// refused with one error, not one per entry.
func TestOversizedListsAnswerShortly(t *testing.T) {
	old, s := statusServer(), statusServer()
	for i := 0; i < 10000; i++ {
		s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{Type: "bad type!"})
		s.Status.Routes = append(s.Status.Routes, stargate.RouteLayerStatus{Layer: "bgp", Reason: "not a reason!"})
	}
	errs := ValidateServerStatusUpdate(s, old)
	if len(errs) != 2 {
		t.Errorf("%d errors, want 2 (status.conditions and status.routes): %v", len(errs), errs[:min(len(errs), 5)])
	}
}

func TestOperationStatusBounds(t *testing.T) {
	steps := func(n int) []stargate.OperationStep {
		out := make([]stargate.OperationStep, n)
		for i := range out {
			out[i] = stargate.OperationStep{Name: fmt.Sprintf("step-%d", i), State: stargate.StepPending}
		}
		return out
	}
	cases := []struct {
		name      string
		mutate    func(*stargate.Operation)
		wantField string
		wantType  field.ErrorType
	}{
		{"steps at the bound", func(o *stargate.Operation) { o.Status.Steps = steps(MaxSteps) }, "", ""},
		{"too many steps", func(o *stargate.Operation) { o.Status.Steps = steps(MaxSteps + 1) }, "status.steps", field.ErrorTypeTooMany},
		{"step name too long", func(o *stargate.Operation) {
			o.Status.Steps = steps(2)
			o.Status.Steps[1].Name = strings.Repeat("s", MaxStepNameLength+1)
		}, "status.steps[1].name", field.ErrorTypeTooLong},
		{"too many conditions", func(o *stargate.Operation) {
			for i := 0; i <= MaxConditions; i++ {
				o.Status.Conditions = append(o.Status.Conditions, metav1.Condition{
					Type: fmt.Sprintf("C%d", i), Status: metav1.ConditionTrue, Reason: "R", LastTransitionTime: metav1.Now()})
			}
		}, "status.conditions", field.ErrorTypeTooMany},
		{"output tail too long", func(o *stargate.Operation) {
			o.Status.OutputTail = strings.Repeat("o", MaxOutputTailLength+1)
		}, "status.outputTail", field.ErrorTypeTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old, o := validOperation(), validOperation()
			tc.mutate(o)
			errs := ValidateOperationStatusUpdate(o, old)
			if tc.wantField == "" {
				if len(errs) > 0 {
					t.Fatalf("rejected: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.wantField || errs[0].Type != tc.wantType {
				t.Fatalf("errors %v, want exactly one %s on %s", errs, tc.wantType, tc.wantField)
			}
		})
	}
}

// The original Stargate's Servers named no profile: each Operation did.
func TestServerWithoutProfilePasses(t *testing.T) {
	s := validServer()
	s.Spec.ProvisioningProfileRef = nil
	if errs := ValidateServer(s); len(errs) > 0 {
		t.Errorf("Server without spec.provisioningProfileRef rejected: %v", errs)
	}
}
