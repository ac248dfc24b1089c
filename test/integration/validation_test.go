package integration

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/test/framework"
)

// Every invalid input is refused by the server with a message naming the
// offending field, as kubectl shows it on stderr.
func TestValidationRejectsInvalidInput(t *testing.T) {
	// Objects the update cases change.
	immutable := server("immutable-1", "10.50.1.51")
	immutable.Spec.PodCIDR = "10.244.51.0/24"
	createServer(t, immutable)
	createServer(t, server("immutable-op", "10.50.1.52"))
	op := repave(t, "immutable-op", `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","reason":"validation test"}`)

	badServer := func(mutate func(*v1alpha1.Server)) func(t *testing.T, name string) framework.Result {
		return func(t *testing.T, name string) framework.Result {
			s := server(name, "10.50.1.60")
			mutate(s)
			return createObject(t, s, "server", s.Name)
		}
	}
	badProfile := func(mutate func(*v1alpha1.ProvisioningProfile)) func(t *testing.T, name string) framework.Result {
		return func(t *testing.T, name string) framework.Result {
			p := profile(name)
			mutate(p)
			return createObject(t, p, "provisioningprofile", p.Name)
		}
	}
	patch := func(args ...string) func(t *testing.T, _ string) framework.Result {
		return func(t *testing.T, _ string) framework.Result {
			return world.Kubectl.Run(testContext(t), append([]string{"patch", "-n", dc, "--type=merge"}, args...)...)
		}
	}
	repaveWith := func(server, body string) func(t *testing.T, _ string) framework.Result {
		return func(t *testing.T, _ string) framework.Result {
			return world.Kubectl.Run(testContext(t), "create", "--raw", repavePath(server), "-f", writeFile(t, "req.json", body))
		}
	}

	cases := []struct {
		name  string
		do    func(t *testing.T, name string) framework.Result
		field string
	}{
		{"server IP not an address", badServer(func(s *v1alpha1.Server) { s.Spec.IPAddress = "10.50.1.300" }), "spec.ipAddress"},
		{"server IP loopback", badServer(func(s *v1alpha1.Server) { s.Spec.IPAddress = "127.0.0.1" }), "spec.ipAddress"},
		{"server IP missing", badServer(func(s *v1alpha1.Server) { s.Spec.IPAddress = "" }), "spec.ipAddress"},
		{"MAC too short", badServer(func(s *v1alpha1.Server) { s.Spec.MACAddress = "52:54:00:12:34" }), "spec.macAddress"},
		{"MAC with dashes", badServer(func(s *v1alpha1.Server) { s.Spec.MACAddress = "52-54-00-12-34-56" }), "spec.macAddress"},
		{"router IP not an address", badServer(func(s *v1alpha1.Server) { s.Spec.RouterIP = "router.example" }), "spec.routerIP"},
		{"router IP is the server's", badServer(func(s *v1alpha1.Server) { s.Spec.RouterIP = s.Spec.IPAddress }), "spec.routerIP"},
		{"SSH port out of range", badServer(func(s *v1alpha1.Server) { s.Spec.SSHPort = 70000 }), "spec.sshPort"},
		{"host key not a key", badServer(func(s *v1alpha1.Server) { s.Spec.HostKey = "ssh-ed25519 not-base64!" }), "spec.hostKey"},
		{"host key holds two keys", badServer(func(s *v1alpha1.Server) { s.Spec.HostKey = fixtureHostKey + "\n" + newHostKey() }), "spec.hostKey"},
		{"hostname not a DNS label", badServer(func(s *v1alpha1.Server) { s.Spec.Hostname = "Worker_1" }), "spec.hostname"},
		{"hostname missing", badServer(func(s *v1alpha1.Server) { s.Spec.Hostname = "" }), "spec.hostname"},
		{"pod CIDR not a CIDR", badServer(func(s *v1alpha1.Server) { s.Spec.PodCIDR = "10.244.1.0/33" }), "spec.podCIDR"},
		{"pod CIDR too small", badServer(func(s *v1alpha1.Server) { s.Spec.PodCIDR = "10.244.1.0/30" }), "spec.podCIDR"},
		{"profile ref without a name", badServer(func(s *v1alpha1.Server) { s.Spec.ProvisioningProfileRef.Name = "" }), "spec.provisioningProfileRef.name"},
		{"profile ref name invalid", badServer(func(s *v1alpha1.Server) { s.Spec.ProvisioningProfileRef.Name = "Default!" }), "spec.provisioningProfileRef.name"},
		{"server name invalid", badServer(func(s *v1alpha1.Server) { s.Name = "Worker_1" }), "metadata.name"},

		{"kubernetesVersion 2.0", badProfile(func(p *v1alpha1.ProvisioningProfile) { p.Spec.KubernetesVersion = "2.0" }), "spec.kubernetesVersion"},
		{"kubernetesVersion latest", badProfile(func(p *v1alpha1.ProvisioningProfile) { p.Spec.KubernetesVersion = "latest" }), "spec.kubernetesVersion"},
		{"kubernetesVersion missing", badProfile(func(p *v1alpha1.ProvisioningProfile) { p.Spec.KubernetesVersion = "" }), "spec.kubernetesVersion"},
		{"SSH secret ref missing", badProfile(func(p *v1alpha1.ProvisioningProfile) { p.Spec.SSHCredentialsSecretRef = nil }), "spec.sshCredentialsSecretRef"},
		{"admin user name invalid", badProfile(func(p *v1alpha1.ProvisioningProfile) { p.Spec.AdminUsername = "Root" }), "spec.adminUsername"},
		{"container runtime unsupported", badProfile(func(p *v1alpha1.ProvisioningProfile) { p.Spec.ContainerRuntime = "docker" }), "spec.containerRuntime"},
		{"taint effect unknown", badProfile(func(p *v1alpha1.ProvisioningProfile) {
			p.Spec.NodeTaints = []v1alpha1.Taint{{Key: "stargate.io/dc", Effect: "Sometimes"}}
		}), "spec.nodeTaints[0].effect"},
		{"node label key invalid", badProfile(func(p *v1alpha1.ProvisioningProfile) { p.Spec.NodeLabels = map[string]string{"bad key": "x"} }), "spec.nodeLabels"},
		{"bootstrap script key missing", badProfile(func(p *v1alpha1.ProvisioningProfile) {
			p.Spec.BootstrapScriptRef = &v1alpha1.ConfigMapKeyReference{Name: "bootstrap"}
		}), "spec.bootstrapScriptRef.key"},

		{"hostname changed on update", patch("server", "immutable-1", "-p", `{"spec":{"hostname":"renamed"}}`), "spec.hostname"},
		{"pod CIDR changed once set", patch("server", "immutable-1", "-p", `{"spec":{"podCIDR":"10.244.52.0/24"}}`), "spec.podCIDR"},
		{"server status phase unknown", patch("server", "immutable-1", "--subresource=status", "-p", `{"status":{"phase":"Exploded"}}`), "status.phase"},
		{"operation spec changed", patch("operation", op.Name, "-p", `{"spec":{"reason":"rewritten history"}}`), "spec"},
		{"operation status phase unknown", patch("operation", op.Name, "--subresource=status", "-p", `{"status":{"phase":"Exploded"}}`), "status.phase"},

		{"repave profile name invalid", repaveWith("immutable-1", `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","provisioningProfileRef":{"name":"Bad_Name"}}`), "provisioningProfileRef.name"},
		{"repave profile not found", repaveWith("immutable-1", `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","provisioningProfileRef":{"name":"no-such-profile"}}`), "provisioningProfileRef.name"},
	}
	if len(cases) < 15 {
		t.Fatalf("only %d cases", len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.do(t, fmt.Sprintf("invalid-%d", i))
			if r.Err == nil {
				t.Fatalf("accepted, want a rejection naming %s:\n%s", tc.field, r)
			}
			// kubectl prints `... is invalid: FIELD: Invalid value: ...`, or
			// one `* FIELD: ...` line per error when there are several.
			named := regexp.MustCompile(`(^|[\s\[,*])` + regexp.QuoteMeta(tc.field) + `(\[[^\]]*\])?: `)
			if !named.MatchString(r.Stderr) {
				t.Errorf("rejection does not name %s:\n%s", tc.field, r)
			}
			t.Logf("%s", r.Stderr)
		})
	}
}

// createObject creates obj with kubectl and, should the server accept it,
// deletes it again.
func createObject(t *testing.T, obj any, resource, name string) framework.Result {
	t.Helper()
	r := world.Kubectl.RunWithInput(testContext(t), toJSON(t, obj), "create", "-f", "-")
	if r.Err == nil {
		t.Cleanup(func() {
			world.Kubectl.Run(context.Background(), "delete", resource, name, "-n", dc, "--ignore-not-found")
		})
	}
	return r
}
