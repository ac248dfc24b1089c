package integration

// The original Stargate's manifests (testdata/original, in the shape of
// its README's quick start) applied with kubectl as they are.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// originalNamespace is the namespace the original's manifests name.
const originalNamespace = "azure-dc"

// originalManifests are the three YAMLs, in the order a user applies them.
var originalManifests = []string{
	filepath.Join("testdata", "original", "server.yaml"),
	filepath.Join("testdata", "original", "provisioningprofile.yaml"),
	filepath.Join("testdata", "original", "operation.yaml"),
}

func fileArgs(verb string, extra ...string) []string {
	args := []string{verb}
	for _, f := range originalManifests {
		args = append(args, "-f", f)
	}
	return append(args, extra...)
}

// TestOriginalStargateManifestsApplyUnchanged applies the original
// Stargate's Server, ProvisioningProfile and Operation with kubectl apply
// and kubectl create (both with strict field validation, kubectl's
// default): they are accepted and mean what they meant there. The
// profile's Secret references are the named Secrets, the Operation is a
// Repave with the profile it names and claims its Server, and the Server
// names no profile.
func TestOriginalStargateManifestsApplyUnchanged(t *testing.T) {
	kubectl(t, "create", "namespace", originalNamespace)
	t.Cleanup(func() {
		world.Kubectl.Run(context.Background(), "delete", "namespace", originalNamespace, "--wait=false")
	})

	for _, verb := range []string{"apply", "create"} {
		t.Run(verb, func(t *testing.T) {
			r := kubectl(t, fileArgs(verb, "--validate=strict")...)
			for _, want := range []string{"server.stargate.io/worker-1", "provisioningprofile.stargate.io/azure-k8s-worker", "operation.stargate.io/worker-1-repave"} {
				if !strings.Contains(r.Stdout, want) {
					t.Errorf("kubectl %s output lacks %s\n%s", verb, want, r)
				}
			}
			checkOriginalObjects(t)

			if verb == "apply" {
				// Applied again, unchanged: nothing changes, no second Operation.
				kubectl(t, fileArgs("apply", "--validate=strict")...)
				checkOriginalObjects(t)
				ops, err := client.StargateV1alpha1().Operations(originalNamespace).List(testContext(t), metav1.ListOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if len(ops.Items) != 1 {
					t.Errorf("%d Operations after applying twice, want 1", len(ops.Items))
				}
			}

			// The server writes the object form of a reference.
			y := kubectl(t, "get", "provisioningprofile", "azure-k8s-worker", "-n", originalNamespace, "-o", "yaml").Stdout
			for _, want := range []string{
				"sshCredentialsSecretRef:\n    name: azure-ssh-credentials\n",
				"tailscaleAuthKeySecretRef:\n    name: tailscale-auth\n",
			} {
				if !strings.Contains(y, want) {
					t.Errorf("kubectl get -o yaml lacks %q:\n%s", want, y)
				}
			}
			if y := kubectl(t, "get", "operation", "worker-1-repave", "-n", originalNamespace, "-o", "yaml").Stdout; !strings.Contains(y, "operation: Repave\n") {
				t.Errorf("Operation read back without operation: Repave:\n%s", y)
			}

			// Deleted as applied, so the next verb starts afresh.
			kubectl(t, "delete", "-f", originalManifests[2], "-f", originalManifests[1], "-f", originalManifests[0], "--wait=true")
		})
	}
}

// checkOriginalObjects asserts the stored objects of the original's
// manifests mean what they meant there.
func checkOriginalObjects(t *testing.T) {
	t.Helper()
	ctx := testContext(t)
	sg := client.StargateV1alpha1()

	p, err := sg.ProvisioningProfiles(originalNamespace).Get(ctx, "azure-k8s-worker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ref := p.Spec.SSHCredentialsSecretRef; ref == nil || ref.Name != "azure-ssh-credentials" {
		t.Errorf("profile sshCredentialsSecretRef = %+v, want the Secret azure-ssh-credentials", ref)
	}
	if ref := p.Spec.TailscaleAuthKeySecretRef; ref == nil || ref.Name != "tailscale-auth" {
		t.Errorf("profile tailscaleAuthKeySecretRef = %+v, want the Secret tailscale-auth", ref)
	}
	if p.Spec.KubernetesVersion != "1.33" || p.Spec.AdminUsername != "ubuntu" || p.Spec.ContainerRuntime != v1alpha1.ContainerRuntimeContainerd {
		t.Errorf("profile spec %+v, want 1.33, ubuntu, containerd", p.Spec)
	}

	s, err := sg.Servers(originalNamespace).Get(ctx, "worker-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Spec.Hostname != "worker-1" || s.Spec.IPAddress != "192.0.2.15" || s.Spec.MACAddress != "52:54:00:0a:32:05" || s.Spec.RouterIP != "198.51.100.7" {
		t.Errorf("server spec %+v, not what the manifest says", s.Spec)
	}
	if s.Spec.ProvisioningProfileRef != nil {
		t.Errorf("server names profile %+v; the manifest names none", s.Spec.ProvisioningProfileRef)
	}
	if s.Spec.SSHPort != 22 {
		t.Errorf("server sshPort = %d, want the default 22", s.Spec.SSHPort)
	}

	op, err := sg.Operations(originalNamespace).Get(ctx, "worker-1-repave", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if op.Spec.Operation != v1alpha1.OperationRepave {
		t.Errorf("operation = %q, want %q (the original's repave)", op.Spec.Operation, v1alpha1.OperationRepave)
	}
	if op.Spec.ServerRef.Name != "worker-1" || op.Spec.ProvisioningProfileRef.Name != "azure-k8s-worker" {
		t.Errorf("Operation spec %+v, want worker-1 with azure-k8s-worker", op.Spec)
	}
	// The Operation claimed its Server, as servers/NAME/repave does, so
	// the controller runs it.
	if s.Status.LastOperation != op.Name {
		t.Errorf("server status.lastOperation = %q, want the Operation %s", s.Status.LastOperation, op.Name)
	}
	if op.Labels[stargate.LabelServer] != s.Name {
		t.Errorf("Operation labels %v, want %s=%s", op.Labels, stargate.LabelServer, s.Name)
	}
	if len(op.OwnerReferences) != 1 || op.OwnerReferences[0].UID != s.UID {
		t.Errorf("Operation ownerReferences %+v, want the Server %s", op.OwnerReferences, s.UID)
	}
}

// TestPlainNameReferenceNamesTheFieldWhenInvalid: the plain-name form is
// validated as the object form is, and a reference of another JSON type
// is refused saying what a reference is.
func TestPlainNameReferenceNamesTheFieldWhenInvalid(t *testing.T) {
	doc := func(ref string) string {
		return fmt.Sprintf(`{"apiVersion":"stargate.io/v1alpha1","kind":"ProvisioningProfile","metadata":{"name":"bad-ref","namespace":%q},
"spec":{"kubernetesVersion":"1.33","sshCredentialsSecretRef":%s}}`, dc, ref)
	}
	mustFail(t, world.Kubectl.RunWithInput(testContext(t), doc(`"Not_A_Name"`), "create", "-f", "-"),
		"spec.sshCredentialsSecretRef.name", "Not_A_Name")
	mustFail(t, world.Kubectl.RunWithInput(testContext(t), doc(`""`), "create", "-f", "-"),
		"spec.sshCredentialsSecretRef.name", "Required value")
	mustFail(t, world.Kubectl.RunWithInput(testContext(t), doc(`["ssh-admin"]`), "create", "-f", "-"),
		"plain name")
}

// TestStrictFieldValidationStillRefusesUnknownFields: accepting the plain
// name does not loosen strict field validation elsewhere; the original's
// customBootstrapScript, which Stargate replaced by bootstrapScriptRef,
// is refused by name.
func TestStrictFieldValidationStillRefusesUnknownFields(t *testing.T) {
	doc := fmt.Sprintf(`{"apiVersion":"stargate.io/v1alpha1","kind":"ProvisioningProfile","metadata":{"name":"custom-script","namespace":%q},
"spec":{"kubernetesVersion":"1.33","sshCredentialsSecretRef":"ssh-admin","customBootstrapScript":"#!/bin/sh\ntrue\n"}}`, dc)
	mustFail(t, world.Kubectl.RunWithInput(testContext(t), doc, "create", "--validate=strict", "-f", "-"),
		`unknown field "spec.customBootstrapScript"`)
}
