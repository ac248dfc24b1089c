package routes

import (
	"context"

	"encoding/json"
	"fmt"
	"github.com/stargate-k8s/stargate/pkg/controller/routes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/azure/azurefake"
)

var ciliumNodes = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnodes"}

// The tests share one world and run in order: the CRD-missing test must run
// before the CRD is installed.

func TestCiliumCRDMissingIsACondition(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	// Datacenters may not share a worker subnet: index 3 is no other test's.
	createTestDatacenter(t, ctx, "dc-nocrd", 3)
	e := startController(t, 3, func(c *routes.Controller) { c.EnableAzure, c.EnableTailscale = false, false })
	if _, err := client.StargateV1alpha1().Servers("dc-nocrd").Create(ctx, newServer("dc-nocrd", 3, 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := waitServers(t, ctx, time.Minute, []string{"dc-nocrd"}, func(s *v1alpha1.Server) bool {
		c := condition(s, "CiliumPodCIDRSynced")
		return c != nil && c.Reason == "CiliumNodeCRDMissing"
	})
	c := condition(&srv[0], "CiliumPodCIDRSynced")
	if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "ciliumnodes.cilium.io") {
		t.Fatalf("condition %+v", c)
	}
	if r := condition(&srv[0], "RoutesReady"); r == nil || r.Status != metav1.ConditionFalse {
		t.Fatalf("RoutesReady %+v", r)
	}
	e.stop()
	if err := client.StargateV1alpha1().Servers("dc-nocrd").Delete(ctx, srv[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// With the controller stopped the finalizers stay; the next controller releases it.
}

func TestThreeDatacentersConvergeAndRepairDrift(t *testing.T) {
	ctx := testContext(t, 8*time.Minute)
	if err := installCiliumNodeCRD(ctx); err != nil {
		t.Fatalf("install Cilium's CiliumNode CRD: %v", err)
	}
	dcs := []string{"dc-0", "dc-1", "dc-2"}
	for d, dc := range dcs {
		createTestDatacenter(t, ctx, dc, d)
	}
	e := startController(t, 3, nil)
	start := time.Now()
	for d, dc := range dcs {
		for i := range 10 {
			if _, err := client.StargateV1alpha1().Servers(dc).Create(ctx, newServer(dc, d, i), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	servers := waitServers(t, ctx, 3*time.Minute, dcs, routesReady)
	t.Logf("30 servers converged in %v: azure %+v, tailscale route writes %d, advertise calls %d",
		time.Since(start).Round(time.Millisecond), e.azure.Stats(), e.ts.Writes(), len(e.adv.calls))

	// Unique CIDRs from the pool, every layer carrying them.
	seen := map[string]string{}
	table := e.azure.RouteMap()
	dyn := dynamic.NewForConfigOrDie(world.ControlPlane.Config)
	for _, s := range servers {
		if o, dup := seen[s.Status.PodCIDR]; dup {
			t.Fatalf("%s and %s share %s", o, s.Name, s.Status.PodCIDR)
		}
		seen[s.Status.PodCIDR] = s.Name
		p := netip.MustParsePrefix(s.Status.PodCIDR)
		if p.Bits() != 24 || !netip.MustParsePrefix("10.244.0.0/16").Contains(p.Addr()) {
			t.Fatalf("%s got %s", s.Name, p)
		}
		name := "stargate-pod-" + strings.NewReplacer(".", "-", "/", "-").Replace(s.Status.PodCIDR)
		if table[name] != s.Status.PodCIDR+" via "+aksRouterIP {
			t.Fatalf("azure route %s = %q", name, table[name])
		}
		cn, err := dyn.Resource(ciliumNodes).Get(ctx, s.Spec.Hostname, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("CiliumNode %s: %v", s.Spec.Hostname, err)
		}
		if got := fmt.Sprint(cn.Object["spec"].(map[string]any)["ipam"].(map[string]any)["podCIDRs"]); got != "["+s.Status.PodCIDR+"]" {
			t.Fatalf("CiliumNode %s podCIDRs %s", s.Spec.Hostname, got)
		}
	}
	if len(table) != 30+3+1 {
		t.Fatalf("azure table has %d routes, want 30 pod + 3 subnet + 1 foreign: %v", len(table), table)
	}
	for d := range dcs {
		dev := e.ts.Device(fmt.Sprintf("nDC%d", d))
		if len(dev.Enabled) < 11 || !slices.Contains(dev.Enabled, fmt.Sprintf("10.50.%d.0/24", d+1)) {
			t.Fatalf("router %d enabled %v", d, dev.Enabled)
		}
	}
	if !slices.Contains(e.ts.Device("nDC0").Enabled, foreignTSRoute) {
		t.Fatal("foreign tailscale route disabled")
	}
	if aks := e.ts.Device("nAKS"); !slices.Equal(aks.Enabled, []string{"10.0.0.0/16", "10.244.0.0/16"}) {
		t.Fatalf("AKS router enabled %v", aks.Enabled)
	}

	// Steady state: a resync reads but writes nothing.
	az0, ts0 := e.azure.Stats(), e.ts.Writes()
	time.Sleep(2*e.ctrl.Resync + time.Second)
	if az1, ts1 := e.azure.Stats(), e.ts.Writes(); az1.Writes != az0.Writes || ts1 != ts0 || az1.Reads == az0.Reads {
		t.Fatalf("steady state: azure %+v -> %+v, tailscale writes %d -> %d", az0, az1, ts0, ts1)
	}

	// Drift on Azure and Tailscale, which cannot be watched: repaired by
	// the periodic resync, within one period.
	victim, other := servers[3], servers[17]
	vName := "stargate-pod-" + strings.NewReplacer(".", "-", "/", "-").Replace(victim.Status.PodCIDR)
	oName := "stargate-pod-" + strings.NewReplacer(".", "-", "/", "-").Replace(other.Status.PodCIDR)
	e.azure.Delete(vName)
	e.azure.Set(oName, other.Status.PodCIDR, "10.224.0.66")
	dc1 := e.ts.Device("nDC1")
	e.ts.SetEnabled("nDC1", dc1.Enabled[1:])
	drift := time.Now()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, e.ctrl.Resync+2*time.Second, true, func(ctx context.Context) (bool, error) {
		m := e.azure.RouteMap()
		return m[vName] == victim.Status.PodCIDR+" via "+aksRouterIP && m[oName] == other.Status.PodCIDR+" via "+aksRouterIP &&
			slices.Equal(e.ts.Device("nDC1").Enabled, dc1.Enabled), nil
	})
	if err != nil {
		t.Fatalf("drift not repaired within one resync (%v): azure %v tailscale %v", e.ctrl.Resync, e.azure.RouteMap()[vName], e.ts.Device("nDC1").Enabled)
	}
	t.Logf("Azure and Tailscale drift repaired by resync in %v (resync period %v)", time.Since(drift).Round(time.Millisecond), e.ctrl.Resync)

	// Drift on a CiliumNode: the watch starts a pass at once.
	patch := []byte(`{"spec":{"ipam":{"podCIDRs":["10.99.99.0/24"]}}}`)
	if _, err := dyn.Resource(ciliumNodes).Patch(ctx, servers[25].Spec.Hostname, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	drift = time.Now()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, e.ctrl.Resync+2*time.Second, true, func(ctx context.Context) (bool, error) {
		cn, err := dyn.Resource(ciliumNodes).Get(ctx, servers[25].Spec.Hostname, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return fmt.Sprint(cn.Object["spec"].(map[string]any)["ipam"].(map[string]any)["podCIDRs"]) == "["+servers[25].Status.PodCIDR+"]", nil
	})
	if err != nil {
		t.Fatalf("CiliumNode drift not repaired within one resync: %v", err)
	}
	t.Logf("CiliumNode drift repaired in %v", time.Since(drift).Round(time.Millisecond))
	if m := e.azure.RouteMap(); m[foreignAzure] != "0.0.0.0/0 via 10.224.0.9" {
		t.Fatalf("foreign azure route touched: %q", m[foreignAzure])
	}
	if !slices.Contains(e.ts.Device("nDC0").Enabled, foreignTSRoute) {
		t.Fatal("foreign tailscale route disabled")
	}

	// Nodes: an empty pod CIDR is filled, a different one is reported, and
	// a Node of the same name that is not Stargate's (no labels of the
	// Server) is not touched at all.
	kube := world.ControlPlane.Kube
	fill, clash, foreign := servers[0], servers[11], servers[12]
	owned := func(s v1alpha1.Server) map[string]string {
		return map[string]string{"stargate.io/server": s.Name, "stargate.io/datacenter": s.Namespace}
	}
	if _, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fill.Spec.Hostname, Labels: owned(fill)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: clash.Spec.Hostname, Labels: owned(clash)},
		Spec: corev1.NodeSpec{PodCIDR: "10.98.0.0/24", PodCIDRs: []string{"10.98.0.0/24"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: foreign.Spec.Hostname}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := kube.CoreV1().Nodes().Get(ctx, fill.Spec.Hostname, metav1.GetOptions{})
		return err == nil && n.Spec.PodCIDR == fill.Status.PodCIDR, nil
	})
	if err != nil {
		t.Fatalf("Node %s pod CIDR not set: %v", fill.Spec.Hostname, err)
	}
	waitServers(t, ctx, 30*time.Second, []string{clash.Namespace}, func(s *v1alpha1.Server) bool {
		c := condition(s, "CiliumPodCIDRSynced")
		switch s.Name {
		case clash.Name:
			return c != nil && c.Reason == "NodePodCIDRConflict" && strings.Contains(c.Message, "10.98.0.0/24")
		case foreign.Name:
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "NodeNameConflict" && strings.Contains(c.Message, "Node "+foreign.Spec.Hostname)
		}
		return true
	})
	if n, _ := kube.CoreV1().Nodes().Get(ctx, clash.Spec.Hostname, metav1.GetOptions{}); n.Spec.PodCIDR != "10.98.0.0/24" {
		t.Fatalf("conflicting Node pod CIDR overwritten: %s", n.Spec.PodCIDR)
	}
	if n, _ := kube.CoreV1().Nodes().Get(ctx, foreign.Spec.Hostname, metav1.GetOptions{}); n.Spec.PodCIDR != "" {
		t.Fatalf("a Node that is not Stargate's got pod CIDR %s", n.Spec.PodCIDR)
	}

	// What a person sees.
	desc := world.Kubectl.Run(ctx, "describe", "server", "-n", clash.Namespace, clash.Name)
	if desc.Err != nil || !strings.Contains(desc.Stdout, "NodePodCIDRConflict") || !strings.Contains(desc.Stdout, "AzureRouteSynced") {
		t.Fatalf("kubectl describe server: %v\n%s%s", desc.Err, desc.Stdout, desc.Stderr)
	}
	raw := world.Kubectl.Run(ctx, "get", "--raw", fmt.Sprintf("/apis/stargate.io/v1alpha1/namespaces/%s/servers/%s/routes", victim.Namespace, victim.Name))
	if raw.Err != nil {
		t.Fatalf("get routes: %v %s", raw.Err, raw.Stderr)
	}
	var sr v1alpha1.ServerRoutes
	if err := json.Unmarshal([]byte(raw.Stdout), &sr); err != nil {
		t.Fatal(err)
	}
	for _, l := range sr.Layers {
		if l.Layer == v1alpha1.RouteLayerNode {
			continue
		}
		// The Node of the victim has not registered, so the cilium layer
		// observes only its CiliumNode.
		if !l.Healthy || l.Reason == "" || len(l.Desired) == 0 || len(l.Observed) == 0 || (l.Layer != v1alpha1.RouteLayerCilium && !slices.Equal(l.Desired, l.Observed)) {
			t.Fatalf("routes layer %+v", l)
		}
	}
	t.Logf("kubectl get --raw .../routes:\n%s", raw.Stdout)
}

func TestDeleteFreesCIDRAndSurvivesRaceAndThrottling(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	createDatacenter(t, ctx, "dc-del", "10.60.1.0/24", dcRouterIP(0), "10.60.1.1")
	e := startController(t, 3, nil)
	// The CRD test's leftover Server is released by this controller.
	var made []*v1alpha1.Server
	for i := range 3 {
		s := newServer("dc-del", 0, i)
		s.Spec.IPAddress = fmt.Sprintf("10.60.1.%d", 10+i)
		made = append(made, s)
	}
	// A racing writer (412) and a throttled API (429 + Retry-After) on the
	// first writes.
	e.azure.BeforeNextWrite(func() { e.azure.Set("another-controller-route", "10.251.0.0/24", "10.224.0.5") })
	e.azure.FailNext(azurefake.Fault{Status: 429, RetryAfter: "1"}, azurefake.Fault{Status: 500})
	for _, s := range made {
		if _, err := client.StargateV1alpha1().Servers("dc-del").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	servers := waitServers(t, ctx, 2*time.Minute, []string{"dc-del"}, routesReady)
	// This is a new controller process on the same API: the earlier tests'
	// Servers keep their CIDRs and the new ones avoid them.
	all, err := client.StargateV1alpha1().Servers("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]string{}
	for _, s := range all.Items {
		if s.Status.PodCIDR == "" {
			continue
		}
		if o, dup := held[s.Status.PodCIDR]; dup {
			t.Fatalf("%s and %s/%s both hold %s after a controller restart", o, s.Namespace, s.Name, s.Status.PodCIDR)
		}
		held[s.Status.PodCIDR] = s.Namespace + "/" + s.Name
	}
	if _, ok := e.azure.RouteMap()["another-controller-route"]; !ok {
		t.Fatal("the racing writer's route was lost")
	}
	if s := e.azure.Stats(); s.RejectedWrites < 3 {
		t.Fatalf("expected the 429, 500 and 412 to be seen: %+v", s)
	}
	gone := servers[1]
	name := "stargate-pod-" + strings.NewReplacer(".", "-", "/", "-").Replace(gone.Status.PodCIDR)
	if err := client.StargateV1alpha1().Servers("dc-del").Delete(ctx, gone.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := client.StargateV1alpha1().Servers("dc-del").Get(ctx, gone.Name, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("Server %s not released", gone.Name)
	}
	if _, ok := e.azure.RouteMap()[name]; ok {
		t.Fatalf("azure route %s left behind", name)
	}
	if slices.Contains(e.ts.Device("nDC0").Enabled, gone.Status.PodCIDR) {
		t.Fatalf("tailscale route %s left enabled", gone.Status.PodCIDR)
	}
	dyn := dynamic.NewForConfigOrDie(world.ControlPlane.Config)
	if _, err := dyn.Resource(ciliumNodes).Get(ctx, gone.Spec.Hostname, metav1.GetOptions{}); err == nil {
		t.Fatalf("CiliumNode %s left behind", gone.Spec.Hostname)
	}
	// The freed CIDR goes to the next Server.
	again := newServer("dc-del", 0, 7)
	again.Spec.IPAddress = "10.60.1.40"
	if _, err := client.StargateV1alpha1().Servers("dc-del").Create(ctx, again, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitServers(t, ctx, time.Minute, []string{"dc-del"}, func(s *v1alpha1.Server) bool { return s.Status.PodCIDR != "" })
	for _, s := range got {
		if s.Name == again.Name && s.Status.PodCIDR != gone.Status.PodCIDR {
			t.Fatalf("new server got %s, want the freed %s", s.Status.PodCIDR, gone.Status.PodCIDR)
		}
	}
}

func TestImpossiblePinIsRejected(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	createTestDatacenter(t, ctx, "dc-pin", 4)
	startController(t, 3, func(c *routes.Controller) { c.EnableAzure, c.EnableTailscale = false, false })
	a := newServer("dc-pin", 4, 1)
	a.Spec.PodCIDR = "10.244.200.0/24"
	b := newServer("dc-pin", 4, 2)
	b.Spec.PodCIDR = "10.244.200.0/25"
	for _, s := range []*v1alpha1.Server{a, b} {
		if _, err := client.StargateV1alpha1().Servers("dc-pin").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got := waitServers(t, ctx, time.Minute, []string{"dc-pin"}, func(s *v1alpha1.Server) bool {
		c := condition(s, "PodCIDRAllocated")
		return c != nil
	})
	for _, s := range got {
		c := condition(&s, "PodCIDRAllocated")
		switch s.Name {
		case a.Name:
			if c.Status != metav1.ConditionTrue || s.Status.PodCIDR != a.Spec.PodCIDR {
				t.Fatalf("%s: %+v podCIDR %s", s.Name, c, s.Status.PodCIDR)
			}
		case b.Name:
			if c.Status != metav1.ConditionFalse || c.Reason != "PinRejected" || !strings.Contains(c.Message, "overlaps 10.244.200.0/24 held by dc-pin/"+a.Name) || s.Status.PodCIDR != "" {
				t.Fatalf("%s: %+v podCIDR %s", s.Name, c, s.Status.PodCIDR)
			}
		}
	}
}
