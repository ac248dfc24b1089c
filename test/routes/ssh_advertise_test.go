package routes

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/routes"
	"github.com/stargate-k8s/stargate/pkg/tailscale/tailscalefake"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

// TestDCRouterAdvertisesRoutesOverSSH runs the real SSH path: the DC router
// is an OpenSSH sshd in a network namespace (test/dcsim), reached from the
// cloud namespace with the profile's key and known_hosts; its `tailscale`
// is a stand-in script that records the advertised routes, which the test
// then plays back into the fake Tailscale API as the real client would.
func TestDCRouterAdvertisesRoutesOverSSH(t *testing.T) {
	if err := dcsim.Check(""); err != nil {
		t.Fatalf("cannot run the datacenter simulation: %v", err)
	}
	ctx := testContext(t, 3*time.Minute)
	dir := t.TempDir()
	sim, err := dcsim.Start(ctx, dcsim.Options{Dir: dir, Workers: 1, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Stop() })

	record := filepath.Join(dir, "advertised.log")
	standin := filepath.Join(dir, "tailscale")
	script := "#!/bin/sh\n# tailscale stand-in: records its arguments\necho \"$*\" >> " + record + "\n"
	if err := os.WriteFile(standin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	const ns = "dc-ssh"
	createDatacenter(t, ctx, ns, dcsim.WorkerSubnet, dcsim.RouterTailnetIP, dcsim.RouterSubnetIP)
	kube := world.ControlPlane.Kube
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ssh-admin", Namespace: ns}, Type: corev1.SecretTypeSSHAuth,
		Data: map[string][]byte{corev1.SSHAuthPrivateKey: sim.ClientKeyPEM, "known_hosts": sim.KnownHosts()},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.StargateV1alpha1().ProvisioningProfiles(ns).Create(ctx, &v1alpha1.ProvisioningProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns},
		Spec: v1alpha1.ProvisioningProfileSpec{KubernetesVersion: "1.33", AdminUsername: "root",
			SSHCredentialsSecretRef: &v1alpha1.LocalObjectReference{Name: "ssh-admin"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	e := startController(t, 3, func(c *routes.Controller) {
		c.Advertiser = nil
		c.AdvertiseOverSSH = true
		c.AdvertiseCommand = standin + " set --advertise-routes="
		c.AdvertiseDial = sim.DialContext
	})
	e.ts.AddDevice(tailscalefake.Device{NodeID: "nSim", Name: "sim-router.tail.ts.net", Addresses: []string{dcsim.RouterTailnetIP}, Advertised: []string{"198.51.100.0/24"}})

	s := newServer(ns, 0, 1)
	s.Spec.RouterIP = dcsim.RouterTailnetIP
	s.Spec.IPAddress = sim.Workers[0].IP
	if _, err := client.StargateV1alpha1().Servers(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The router reports what it advertises to the coordination server;
	// here the test carries the recorded routes to the fake API.
	var advertised []string
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && advertised == nil {
		if last := lastLine(record); last != "" {
			routes, ok := strings.CutPrefix(last, "set --advertise-routes=")
			if !ok {
				t.Fatalf("stand-in called with %q", last)
			}
			advertised = strings.Split(routes, ",")
			if err := e.ts.SetAdvertisedByIP(dcsim.RouterTailnetIP, advertised); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if advertised == nil {
		t.Fatalf("the router was never asked to advertise; sshd log:\n%s", readFile(sim.Router.SSHDLog))
	}
	got := waitServers(t, ctx, time.Minute, []string{ns}, func(s *v1alpha1.Server) bool {
		c := condition(s, "TailscaleRoutesApproved")
		return c != nil && c.Status == metav1.ConditionTrue
	})
	want := []string{"198.51.100.0/24", got[0].Status.PodCIDR, "192.0.2.0/24"}
	for _, w := range want {
		if !slices.Contains(advertised, w) {
			t.Fatalf("router advertises %v, want %v (its own route kept)", advertised, want)
		}
	}
	t.Logf("router %s advertises %v over SSH", dcsim.RouterTailnetIP, advertised)
}

func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		last = sc.Text()
	}
	return last
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
