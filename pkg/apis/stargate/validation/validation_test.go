package validation

import (
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
		{"server profile ref missing", serverErrs(func(s *stargate.Server) { s.Spec.ProvisioningProfileRef = nil }), "spec.provisioningProfileRef"},
		{"server profile ref name invalid", serverErrs(func(s *stargate.Server) { s.Spec.ProvisioningProfileRef.Name = "Bad Name" }), "spec.provisioningProfileRef.name"},
		{"server pod CIDR malformed", serverErrs(func(s *stargate.Server) { s.Spec.PodCIDR = "10.244.0.0/33" }), "spec.podCIDR"},
		{"server pod CIDR too small", serverErrs(func(s *stargate.Server) { s.Spec.PodCIDR = "10.244.0.0/30" }), "spec.podCIDR"},
		{"server name invalid", serverErrs(func(s *stargate.Server) { s.Name = "Worker 1" }), "metadata.name"},
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
		{"profile taint effect invalid", profileErrs(func(p *stargate.ProvisioningProfile) { p.Spec.NodeTaints[0].Effect = "Sometimes" }), "spec.nodeTaints[0].effect"},
		{"profile script ref without key", profileErrs(func(p *stargate.ProvisioningProfile) {
			p.Spec.BootstrapScriptRef = &stargate.ConfigMapKeyReference{Name: "scripts"}
		}), "spec.bootstrapScriptRef.key"},
		{"operation server ref missing", operationErrs(func(o *stargate.Operation) { o.Spec.ServerRef.Name = "" }), "spec.serverRef.name"},
		{"operation kind unsupported", operationErrs(func(o *stargate.Operation) { o.Spec.Operation = "Reboot" }), "spec.operation"},
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
