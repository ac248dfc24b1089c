package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/test/framework"
)

var (
	serverType  = metav1.TypeMeta{APIVersion: "stargate.io/v1alpha1", Kind: "Server"}
	profileType = metav1.TypeMeta{APIVersion: "stargate.io/v1alpha1", Kind: "ProvisioningProfile"}
)

// server is a valid Server in dc using the "default" profile.
func server(name, ip string) *v1alpha1.Server {
	return &v1alpha1.Server{
		TypeMeta:   serverType,
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: dc},
		Spec: v1alpha1.ServerSpec{
			Hostname:               name,
			IPAddress:              ip,
			MACAddress:             "52:54:00:12:34:56",
			HostKey:                fixtureHostKey,
			ProvisioningProfileRef: &v1alpha1.LocalObjectReference{Name: "default"},
		},
	}
}

// profile is a valid ProvisioningProfile in dc.
func profile(name string) *v1alpha1.ProvisioningProfile {
	return &v1alpha1.ProvisioningProfile{
		TypeMeta:   profileType,
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: dc},
		Spec: v1alpha1.ProvisioningProfileSpec{
			KubernetesVersion:       "1.33",
			SSHCredentialsSecretRef: &v1alpha1.LocalObjectReference{Name: "ssh-admin"},
			AdminUsername:           "stargate",
		},
	}
}

func toJSON(t *testing.T, obj any) string {
	t.Helper()
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// kubectl runs the real kubectl as the admin and fails the test when it fails.
func kubectl(t *testing.T, args ...string) framework.Result {
	t.Helper()
	return mustSucceed(t, world.Kubectl.Run(testContext(t), args...))
}

// kubectlIn is kubectl with stdin.
func kubectlIn(t *testing.T, stdin string, args ...string) framework.Result {
	t.Helper()
	return mustSucceed(t, world.Kubectl.RunWithInput(testContext(t), stdin, args...))
}

func mustSucceed(t *testing.T, r framework.Result) framework.Result {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("%s", r)
	}
	return r
}

// mustFail asserts kubectl failed and its stderr holds every want.
func mustFail(t *testing.T, r framework.Result, want ...string) {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("expected kubectl to fail:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r)
		}
	}
}

// createServer creates a Server through kubectl and registers its deletion.
func createServer(t *testing.T, s *v1alpha1.Server) {
	t.Helper()
	kubectlIn(t, toJSON(t, s), "create", "-f", "-")
	t.Cleanup(func() {
		world.Kubectl.Run(context.Background(), "delete", "server", s.Name, "-n", s.Namespace, "--ignore-not-found", "--wait=false")
	})
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %s: %v", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// fixtureHostKey pins the SSH host key of every test Server, which keeps
// the server's warning about an empty spec.hostKey out of the test output.
var fixtureHostKey = newHostKey()

// newHostKey is a fresh SSH host key in authorized_keys form.
func newHostKey() string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
}

// getServer reads a Server through the clientset as the admin.
func getServer(t *testing.T, name string) *v1alpha1.Server {
	t.Helper()
	s, err := client.StargateV1alpha1().Servers(dc).Get(testContext(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get server %s: %v", name, err)
	}
	return s
}

// updateStatus applies change to the Server's status with UpdateStatus,
// retrying on conflicts with writers such as servers/repave.
func updateStatus(t *testing.T, name string, change func(*v1alpha1.ServerStatus)) *v1alpha1.Server {
	t.Helper()
	var updated *v1alpha1.Server
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := getServer(t, name)
		change(&s.Status)
		var err error
		updated, err = client.StargateV1alpha1().Servers(dc).UpdateStatus(testContext(t), s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("update status of server %s: %v", name, err)
	}
	return updated
}

// repavePath is the URL of the repave subresource of a Server in dc.
func repavePath(server string) string {
	return "/apis/stargate.io/v1alpha1/namespaces/" + dc + "/servers/" + server + "/repave"
}

// writeFile writes content to a file in a test's temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// repave calls servers/NAME/repave with real kubectl and decodes the Operation.
func repave(t *testing.T, server string, req string) *v1alpha1.Operation {
	t.Helper()
	r := kubectl(t, "create", "--raw", repavePath(server), "-f", writeFile(t, "req.json", req))
	op := &v1alpha1.Operation{}
	if err := json.Unmarshal([]byte(r.Stdout), op); err != nil {
		t.Fatalf("repave answer is not an Operation: %v\n%s", err, r)
	}
	return op
}
