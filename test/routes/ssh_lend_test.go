package routes

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/pkg/controller/routes"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

// TestForeignNamespaceCannotLendCredentialsToDCRouter is the attack of a
// namespace editor on a DC router: in a namespace that is not the router's
// datacenter, they create a Server naming the router as spec.routerIP, with
// a profile and SSH Secret of their own that the router would even accept.
// The advertiser must not log in with them: it uses only credentials of the
// Datacenter that declares the router, from its own namespace. The router
// is a real sshd in a network namespace (test/dcsim) whose `tailscale` is a
// stand-in that records each call.
func TestForeignNamespaceCannotLendCredentialsToDCRouter(t *testing.T) {
	if err := dcsim.Check(""); err != nil {
		t.Fatalf("cannot run the datacenter simulation: %v", err)
	}
	ctx := testContext(t, 2*time.Minute)
	dir := t.TempDir()
	sim, err := dcsim.Start(ctx, dcsim.Options{Dir: dir, Workers: 0, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Stop() })
	record := filepath.Join(dir, "advertised.log")
	standin := filepath.Join(dir, "tailscale")
	if err := os.WriteFile(standin, []byte("#!/bin/sh\necho \"$*\" >> "+record+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	// The router is known to the datacenter by a tailnet address of its
	// own, so no other test's Datacenter declares it; every dial goes to
	// the simulated router.
	const routerIP = "203.0.113.77"
	var dialsMu sync.Mutex
	var dials []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialsMu.Lock()
		dials = append(dials, addr)
		dialsMu.Unlock()
		return sim.DialContext(ctx, network, net.JoinHostPort(dcsim.RouterTailnetIP, "22"))
	}
	knownHosts := []byte(routerIP + " " + sim.Router.HostKey + "\n")
	sshSecret := func(ns, name string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: corev1.SecretTypeSSHAuth,
			Data: map[string][]byte{corev1.SSHAuthPrivateKey: sim.ClientKeyPEM, "known_hosts": knownHosts}}
	}
	profile := func(ns, secret string) *v1alpha1.ProvisioningProfile {
		return &v1alpha1.ProvisioningProfile{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns},
			Spec: v1alpha1.ProvisioningProfileSpec{KubernetesVersion: "1.33", AdminUsername: "root",
				SSHCredentialsSecretRef: &v1alpha1.LocalObjectReference{Name: secret}}}
	}
	kube := world.ControlPlane.Kube

	// The datacenter that declares the router has no credentials yet.
	const dcNS, lender = "dc-lend", "lender"
	createDatacenter(t, ctx, dcNS, "198.51.100.0/24", routerIP, "198.51.100.1")
	// The lender: an ordinary namespace with a Server naming the router,
	// and working credentials.
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lender}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Secrets(lender).Create(ctx, sshSecret(lender, "ssh-lent"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.StargateV1alpha1().ProvisioningProfiles(lender).Create(ctx, profile(lender, "ssh-lent"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bait := newServer(lender, 0, 1)
	bait.Spec.RouterIP, bait.Spec.IPAddress = routerIP, "198.51.100.10"
	if _, err := client.StargateV1alpha1().Servers(lender).Create(ctx, bait, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the lender's Server: %v", err)
	}

	cl, err := ctrlclient.New(world.ControlPlane.Config, ctrlclient.Options{Scheme: manager.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	adv := &routes.SSHAdvertiser{Client: cl, Command: standin + " set --advertise-routes=", Dial: dial, Timeout: 30 * time.Second}
	err = adv.Advertise(ctx, routerIP, []string{"198.51.100.0/24"})
	if err == nil || !strings.Contains(err.Error(), "declared by Datacenter "+dcNS) || !strings.Contains(err.Error(), "no SSH credentials") {
		t.Fatalf("advertising with only a foreign namespace's credentials: err = %v, want no credentials of Datacenter %s", err, dcNS)
	}
	if len(dials) != 0 || lastLine(record) != "" {
		t.Fatalf("the router was reached with the lender's credentials: dials %v, router ran %q", dials, lastLine(record))
	}
	// A router no Datacenter declares gets no credentials at all.
	if err := adv.Advertise(ctx, "203.0.113.78", []string{"198.51.100.0/24"}); err == nil || !strings.Contains(err.Error(), "no Datacenter declares router") {
		t.Fatalf("undeclared router: err = %v", err)
	}

	// Once the datacenter has its own Server, profile and Secret, those
	// (and only those) are used.
	if _, err := kube.CoreV1().Secrets(dcNS).Create(ctx, sshSecret(dcNS, "ssh-own"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.StargateV1alpha1().ProvisioningProfiles(dcNS).Create(ctx, profile(dcNS, "ssh-own"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	own := newServer(dcNS, 0, 1)
	own.Spec.RouterIP, own.Spec.IPAddress = routerIP, "198.51.100.11"
	if _, err := client.StargateV1alpha1().Servers(dcNS).Create(ctx, own, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := adv.Advertise(ctx, routerIP, []string{"198.51.100.0/24"}); err != nil {
		t.Fatalf("advertising with the datacenter's own credentials: %v", err)
	}
	if got := lastLine(record); got != "set --advertise-routes=198.51.100.0/24" {
		t.Fatalf("router ran %q", got)
	}
}
