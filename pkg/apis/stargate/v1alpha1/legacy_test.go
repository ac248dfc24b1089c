package v1alpha1

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	serializerjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
)

// strictYAML decodes as the API server does with fieldValidation=Strict:
// YAML, strict, case-sensitive, defaulted.
func strictYAML(t *testing.T, doc string) (runtime.Object, error) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	s := serializerjson.NewSerializerWithOptions(serializerjson.DefaultMetaFactory, scheme, scheme,
		serializerjson.SerializerOptions{Yaml: true, Strict: true})
	codecs := serializer.NewCodecFactory(scheme)
	obj, _, err := codecs.DecoderToVersion(s, SchemeGroupVersion).Decode([]byte(doc), nil, nil)
	return obj, err
}

func TestReferenceAcceptsThePlainName(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"object form", `{"name":"ssh"}`, "ssh"},
		{"plain name, as the original Stargate wrote it", `"ssh"`, "ssh"},
		{"empty plain name (validation refuses it)", `""`, ""},
		{"null leaves the value", `null`, "kept"},
		{"key spelled in another case is not name", `{"Name":"ssh"}`, ""},
		{"other keys are dropped", `{"name":"ssh","namespace":"elsewhere"}`, "ssh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := LocalObjectReference{Name: "kept"}
			if tc.in != "null" {
				r = LocalObjectReference{}
			}
			if err := json.Unmarshal([]byte(tc.in), &r); err != nil {
				t.Fatalf("%s: %v", tc.in, err)
			}
			if r.Name != tc.want {
				t.Errorf("%s decoded to name %q, want %q", tc.in, r.Name, tc.want)
			}
		})
	}
	for _, bad := range []string{`42`, `["ssh"]`, `true`, `{"name":42}`} {
		var r LocalObjectReference
		err := json.Unmarshal([]byte(bad), &r)
		if err == nil {
			t.Errorf("%s decoded to %+v, want an error", bad, r)
			continue
		}
		if !strings.Contains(err.Error(), "name") {
			t.Errorf("%s: error %q does not say a reference is a name", bad, err)
		}
	}
	// The server writes the object form.
	out, err := json.Marshal(ProvisioningProfileSpec{SSHCredentialsSecretRef: &LocalObjectReference{Name: "ssh"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"sshCredentialsSecretRef":{"name":"ssh"}`) {
		t.Errorf("encoded %s, want the object form of the reference", out)
	}
}

func TestOriginalProfileDecodesStrictly(t *testing.T) {
	obj, err := strictYAML(t, `
apiVersion: stargate.io/v1alpha1
kind: ProvisioningProfile
metadata:
  name: azure-k8s-worker
  namespace: azure-dc
spec:
  kubernetesVersion: "1.33"
  containerRuntime: containerd
  sshCredentialsSecretRef: azure-ssh-credentials
  tailscaleAuthKeySecretRef: tailscale-auth
`)
	if err != nil {
		t.Fatalf("strict decode of the original's profile: %v", err)
	}
	p := obj.(*ProvisioningProfile)
	if p.Spec.SSHCredentialsSecretRef == nil || p.Spec.SSHCredentialsSecretRef.Name != "azure-ssh-credentials" {
		t.Errorf("sshCredentialsSecretRef = %+v, want azure-ssh-credentials", p.Spec.SSHCredentialsSecretRef)
	}
	if p.Spec.TailscaleAuthKeySecretRef == nil || p.Spec.TailscaleAuthKeySecretRef.Name != "tailscale-auth" {
		t.Errorf("tailscaleAuthKeySecretRef = %+v, want tailscale-auth", p.Spec.TailscaleAuthKeySecretRef)
	}
	if p.Spec.AdminUsername != DefaultAdminUsername {
		t.Errorf("adminUsername defaulted to %q, want %q as the original did", p.Spec.AdminUsername, DefaultAdminUsername)
	}

	// Strictness outside references is unchanged.
	_, err = strictYAML(t, `
apiVersion: stargate.io/v1alpha1
kind: ProvisioningProfile
metadata: {name: p, namespace: dc}
spec:
  kubernetesVersion: "1.33"
  sshCredentialsSecretRef: ssh
  customBootstrapScript: "#!/bin/sh"
`)
	if !runtime.IsStrictDecodingError(err) || !strings.Contains(err.Error(), "customBootstrapScript") {
		t.Errorf("unknown field customBootstrapScript: got %v, want a strict decoding error naming it", err)
	}
}

func TestOriginalOperationSpellingMeansTheSame(t *testing.T) {
	for in, want := range map[OperationType]OperationType{
		"repave":       OperationRepave,
		"reboot":       OperationReboot,
		"Repave":       OperationRepave,
		"DECOMMISSION": OperationDecommission,
		"":             OperationRepave,
		"explode":      "explode", // left for validation to refuse
	} {
		op := &Operation{Spec: OperationSpec{Operation: in}}
		SetObjectDefaults_Operation(op)
		if op.Spec.Operation != want {
			t.Errorf("operation %q defaulted to %q, want %q", in, op.Spec.Operation, want)
		}
	}
	obj, err := strictYAML(t, `
apiVersion: stargate.io/v1alpha1
kind: Operation
metadata: {name: worker-1-repave, namespace: azure-dc}
spec:
  serverRef:
    name: worker-1
  provisioningProfileRef:
    name: azure-k8s-worker
  operation: repave
`)
	if err != nil {
		t.Fatal(err)
	}
	if op := obj.(*Operation); op.Spec.Operation != OperationRepave || op.Spec.ServerRef.Name != "worker-1" {
		t.Errorf("decoded %+v, want a Repave of worker-1", op.Spec)
	}
}

func TestProfileKeepsItsAdminUsername(t *testing.T) {
	p := &ProvisioningProfile{Spec: ProvisioningProfileSpec{AdminUsername: "azureuser"}}
	SetObjectDefaults_ProvisioningProfile(p)
	if p.Spec.AdminUsername != "azureuser" {
		t.Errorf("adminUsername = %q, want azureuser kept", p.Spec.AdminUsername)
	}
}
