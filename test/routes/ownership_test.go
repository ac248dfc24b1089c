package routes

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// recordOf returns the Datacenter's status.tailscale record of a device.
func recordOf(t *testing.T, ctx context.Context, dc, ip string) (v1alpha1.TailscaleRouteRecord, []string) {
	t.Helper()
	d, err := client.StargateV1alpha1().Datacenters().Get(ctx, dc, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range d.Status.Tailscale {
		if r.TailnetIP == ip {
			return r, d.Finalizers
		}
	}
	return v1alpha1.TailscaleRouteRecord{}, d.Finalizers
}

func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		done, state := ok()
		last = state
		return done, nil
	})
	if err != nil {
		t.Fatalf("%s: %v; last seen: %s", what, err, last)
	}
}

// TestTailscaleRoutesOfDeletedServerAreWithdrawn: the routes Stargate
// enabled and had advertised for a Server are recorded in its Datacenter's
// status before they are enabled, and withdrawn from the DC router (and
// the record) when the Server is deleted; a route an admin enabled by hand
// inside the pod pool stays.
func TestTailscaleRoutesOfDeletedServerAreWithdrawn(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	const ns, dcIndex, admin = "dc-own", 7, "10.244.250.0/24"
	createTestDatacenter(t, ctx, ns, dcIndex)
	e := startController(t, dcIndex+1, nil)
	dev := fmt.Sprintf("nDC%d", dcIndex)
	e.ts.SetEnabled(dev, []string{admin})
	e.ts.SetAdvertised(dev, []string{admin})
	for i := range 2 {
		if _, err := client.StargateV1alpha1().Servers(ns).Create(ctx, newServer(ns, dcIndex, i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	servers := waitServers(t, ctx, 2*time.Minute, []string{ns}, cloudRoutesReady)
	subnet := fmt.Sprintf("10.50.%d.0/24", dcIndex+1)
	all := []string{servers[0].Status.PodCIDR, servers[1].Status.PodCIDR, subnet}
	slices.Sort(all)
	rec, fin := recordOf(t, ctx, ns, dcRouterIP(dcIndex))
	if rec.DeviceID != dev || !slices.Equal(rec.Enabled, all) || !slices.Equal(rec.Advertised, all) || !slices.Contains(fin, "stargate.io/routes") {
		t.Fatalf("Datacenter %s records %+v (finalizers %v), want device %s with %v enabled and advertised", ns, rec, fin, dev, all)
	}
	if d := e.ts.Device(dev); !slices.Contains(d.Enabled, admin) || !slices.Contains(d.Advertised, admin) {
		t.Fatalf("admin's route gone: %+v", d)
	}

	gone := servers[1]
	if err := client.StargateV1alpha1().Servers(ns).Delete(ctx, gone.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, time.Minute, "routes of the deleted Server withdrawn", func() (bool, string) {
		d := e.ts.Device(dev)
		rec, _ := recordOf(t, ctx, ns, dcRouterIP(dcIndex))
		_, err := client.StargateV1alpha1().Servers(ns).Get(ctx, gone.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) && !slices.Contains(d.Enabled, gone.Status.PodCIDR) && !slices.Contains(d.Advertised, gone.Status.PodCIDR) &&
				!slices.Contains(rec.Enabled, gone.Status.PodCIDR) && !slices.Contains(rec.Advertised, gone.Status.PodCIDR),
			fmt.Sprintf("device %+v record %+v server err %v", d, rec, err)
	})
	d := e.ts.Device(dev)
	for _, keep := range []string{admin, servers[0].Status.PodCIDR, subnet} {
		if !slices.Contains(d.Enabled, keep) || !slices.Contains(d.Advertised, keep) {
			t.Fatalf("router %s lost %s: enabled %v advertised %v", dev, keep, d.Enabled, d.Advertised)
		}
	}
	t.Logf("router %s after the delete: enabled %v, advertised %v", dev, d.Enabled, d.Advertised)
	removeDatacenter(t, ctx, ns)
}

// removeDatacenter deletes the Servers of the datacenter and its
// Datacenter, and waits until the running controller has released them
// all, so later tests in the same world do not see them.
func removeDatacenter(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	if err := client.StargateV1alpha1().Servers(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.StargateV1alpha1().Datacenters().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	waitFor(t, ctx, time.Minute, "datacenter "+ns+" removed", func() (bool, string) {
		l, err := client.StargateV1alpha1().Servers(ns).List(ctx, metav1.ListOptions{})
		_, dcErr := client.StargateV1alpha1().Datacenters().Get(ctx, ns, metav1.GetOptions{})
		return err == nil && len(l.Items) == 0 && apierrors.IsNotFound(dcErr), fmt.Sprintf("servers %v, datacenter %v", l, dcErr)
	})
}

// TestRoutesStargateDidNotEnableAreLeftAlone: a datacenter is deleted while
// its Server still exists (the Server leaves its datacenter). Everything
// Stargate enabled or had advertised for it is withdrawn from the DC router
// and the Azure table, and the Datacenter is released; routes that were
// enabled before Stargate came (an admin's inside the pod pool, and the
// worker subnet, which Stargate also wants) stay. The Server keeps its pod
// CIDR: its node may still run with it, so it is not handed to another.
func TestRoutesStargateDidNotEnableAreLeftAlone(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	const ns, dcIndex, admin = "dc-admin", 8, "10.244.251.0/24"
	subnet := fmt.Sprintf("10.50.%d.0/24", dcIndex+1)
	createTestDatacenter(t, ctx, ns, dcIndex)
	e := startController(t, dcIndex+1, nil)
	dev := fmt.Sprintf("nDC%d", dcIndex)
	e.ts.SetEnabled(dev, []string{admin, subnet})
	e.ts.SetAdvertised(dev, []string{admin, subnet})
	if _, err := client.StargateV1alpha1().Servers(ns).Create(ctx, newServer(ns, dcIndex, 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := waitServers(t, ctx, 2*time.Minute, []string{ns}, cloudRoutesReady)[0]
	pod := srv.Status.PodCIDR
	rec, _ := recordOf(t, ctx, ns, dcRouterIP(dcIndex))
	if !slices.Equal(rec.Enabled, []string{pod}) || !slices.Equal(rec.Advertised, []string{pod}) {
		t.Fatalf("record %+v: want only %s, which Stargate added (the subnet was enabled before)", rec, pod)
	}
	azName := "stargate-pod-" + strings.NewReplacer(".", "-", "/", "-").Replace(pod)
	if _, ok := e.azure.RouteMap()[azName]; !ok {
		t.Fatalf("azure route %s missing", azName)
	}

	if err := client.StargateV1alpha1().Datacenters().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, ctx, time.Minute, "Datacenter released with its routes withdrawn", func() (bool, string) {
		_, err := client.StargateV1alpha1().Datacenters().Get(ctx, ns, metav1.GetOptions{})
		d := e.ts.Device(dev)
		_, az := e.azure.RouteMap()[azName]
		return apierrors.IsNotFound(err) && !slices.Contains(d.Enabled, pod) && !slices.Contains(d.Advertised, pod) && !az,
			fmt.Sprintf("datacenter err %v, device %+v, azure route present %v", err, d, az)
	})
	t.Logf("Datacenter %s deleted: routes withdrawn and Datacenter released in %v", ns, time.Since(start).Round(time.Millisecond))
	d := e.ts.Device(dev)
	if want := []string{admin, subnet}; !slices.Equal(d.Enabled, want) || !slices.Equal(d.Advertised, want) {
		t.Fatalf("router %s enabled %v advertised %v, want the routes enabled before Stargate, %v", dev, d.Enabled, d.Advertised, want)
	}
	got := waitServers(t, ctx, 30*time.Second, []string{ns}, func(s *v1alpha1.Server) bool {
		c := condition(s, "TailscaleRoutesApproved")
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "NoDatacenter"
	})
	if got[0].Status.PodCIDR != pod {
		t.Fatalf("the Server's pod CIDR changed from %s to %q after it left its datacenter", pod, got[0].Status.PodCIDR)
	}
	removeDatacenter(t, ctx, ns)
}

// cloudRoutesReady: the Azure and Tailscale layers are synced (the Cilium
// layer needs the CiliumNode CRD, which an earlier test installs).
func cloudRoutesReady(s *v1alpha1.Server) bool {
	a, ts := condition(s, "AzureRouteSynced"), condition(s, "TailscaleRoutesApproved")
	return a != nil && a.Status == metav1.ConditionTrue && ts != nil && ts.Status == metav1.ConditionTrue
}
