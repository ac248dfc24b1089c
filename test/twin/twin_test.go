package twin

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/cilium"
	"github.com/stargate-k8s/stargate/pkg/tailscale"
	"github.com/stargate-k8s/stargate/test/netns"
)

// resync is the controller's --route-resync-period in the tests: its
// default (5 minutes) is longer than a test should wait for the polled
// layers (Azure, Tailscale) to be repaired. STARGATE_TWIN_RESYNC (a Go
// duration) sets another, to measure repair times against it.
var resync = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("STARGATE_TWIN_RESYNC")); err == nil && d > 0 {
		return d
	}
	return 3 * time.Second
}()

var world *World

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s twin: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) (code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	w, err := Start(ctx, Options{Logf: logf})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the network twin: %v\n", err)
		return 1
	}
	logf("twin up in %s (dir %s)", time.Since(start).Round(time.Millisecond), w.Dir)
	world = w
	defer func() {
		if err := w.Close(); err != nil {
			logf("tear down: %v", err)
		}
		if code != 0 {
			logf("tests failed; logs kept in %s", w.Dir)
		} else {
			_ = os.RemoveAll(w.Dir)
		}
	}()
	return m.Run()
}

// repave asks for a repave as users do and returns the Operation's name.
func repave(t *testing.T, ns, server string) string {
	t.Helper()
	body := `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","reason":"twin"}`
	res := world.Kube.Kubectl.RunWithInput(context.Background(), body, "create", "--raw",
		"/apis/stargate.io/v1alpha1/namespaces/"+ns+"/servers/"+server+"/repave", "-f", "-")
	if res.Err != nil {
		t.Fatalf("repave %s/%s: %v", ns, server, res)
	}
	i := strings.Index(res.Stdout, `"name":"`)
	if i < 0 {
		t.Fatalf("repave answered no Operation: %s", res.Stdout)
	}
	name := res.Stdout[i+len(`"name":"`):]
	return name[:strings.Index(name, `"`)]
}

func servers(t *testing.T) []v1.Server {
	t.Helper()
	var all []v1.Server
	for _, s := range world.Sites {
		var l v1.ServerList
		if err := world.Client.List(context.Background(), &l, client.InNamespace(s.Name)); err != nil {
			t.Fatal(err)
		}
		all = append(all, l.Items...)
	}
	return all
}

func condTrue(s *v1.Server, typ string) bool {
	for _, c := range s.Status.Conditions {
		if c.Type == typ {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

func conditions(s *v1.Server) string {
	var out []string
	for _, c := range s.Status.Conditions {
		out = append(out, fmt.Sprintf("%s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(out, "; ")
}

// waitGreen waits until every pod reaches every other and returns the
// matrix.
func waitGreen(t *testing.T, why string, timeout time.Duration) CheckAllResults {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		m := world.Pods.CheckAll(ctx)
		if m.Green() {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not every pod reaches every other after %s: %s\nfailed: %v\nnode CIDRs: %v (render error %v)\nVNet routes: %v",
				why, timeout, m.Summary(world.SiteOf), m.Failed(), world.Routes.CIDRs(), world.Routes.LastErr(), world.VNet.Rendered())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// driftResult is what one drift did to the matrix.
type driftResult struct {
	failed          []Pair
	firstFailure    time.Duration
	recovered       time.Duration
	conditionsSeen  []string
	events          []string
	summaryInDrift  string
	summaryRecovery string
}

// drift injects a change behind Stargate's back and samples the matrix
// (and the Servers' route conditions) until traffic broke and recovered.
func drift(t *testing.T, name string, inject func()) driftResult {
	t.Helper()
	ctx := context.Background()
	before := waitGreen(t, "before "+name, 60*time.Second)
	t.Logf("%s: before: %s", name, before.Summary(world.SiteOf))
	var res driftResult
	union := map[Pair]bool{}
	seen := map[string]bool{}
	eventsBefore := events(t)
	start := time.Now()
	inject()
	broke := false
	for time.Since(start) < 90*time.Second {
		m := world.Pods.CheckAll(ctx)
		failed := m.Failed()
		if len(failed) > 0 {
			if !broke {
				res.firstFailure = time.Since(start)
				res.summaryInDrift = m.Summary(world.SiteOf)
			}
			broke = true
		}
		for _, p := range failed {
			union[p] = true
		}
		for _, s := range servers(t) {
			for _, c := range s.Status.Conditions {
				if c.Status != metav1.ConditionTrue && c.Type != stargate.ConditionRoutesReady && c.Type != "Ready" {
					seen[s.Name+" "+c.Type+"="+string(c.Status)+" "+c.Reason] = true
				}
			}
		}
		if broke && m.Green() {
			res.recovered = time.Since(start)
			res.summaryRecovery = m.Summary(world.SiteOf)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for p := range union {
		res.failed = append(res.failed, p)
	}
	slices.SortFunc(res.failed, func(a, b Pair) int { return strings.Compare(a.String(), b.String()) })
	for c := range seen {
		res.conditionsSeen = append(res.conditionsSeen, c)
	}
	slices.Sort(res.conditionsSeen)
	// What Stargate said about it: the Events it recorded meanwhile.
	time.Sleep(time.Second)
	for k, e := range events(t) {
		if _, ok := eventsBefore[k]; !ok {
			res.events = append(res.events, e)
		}
	}
	slices.Sort(res.events)
	if !broke {
		t.Fatalf("%s: no pair ever failed within 90s (Stargate may have repaired it before a probe ran)", name)
	}
	if res.recovered == 0 {
		t.Fatalf("%s: traffic did not recover within 90s; failed pairs %v; controller log %s", name, res.failed, world.Controller.Log)
	}
	t.Logf("%s: first failure after %s: %s", name, res.firstFailure.Round(time.Millisecond), res.summaryInDrift)
	t.Logf("%s: failed pairs (%d): %v", name, len(res.failed), res.failed)
	t.Logf("%s: conditions seen False in between: %v", name, res.conditionsSeen)
	t.Logf("%s: events recorded: %v", name, res.events)
	t.Logf("%s: recovered %s after the drift: %s", name, res.recovered.Round(time.Millisecond), res.summaryRecovery)
	return res
}

// pairsWhere lists the ordered pairs of pods for which fails holds.
func pairsWhere(fails func(from, to *Pod) bool) []Pair {
	var out []Pair
	for _, a := range world.Pods.All() {
		for _, b := range world.Pods.All() {
			if a != b && fails(a, b) {
				out = append(out, Pair{a.Name, b.Name})
			}
		}
	}
	slices.SortFunc(out, func(a, b Pair) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// checkPairsWithin says whether the pairs that failed are some of those
// the drift can break, and at least one: for a drift Stargate repairs
// faster than every path notices it (a watched layer), not every such
// pair is seen failing.
func checkPairsWithin(t *testing.T, name string, got, may []Pair) {
	t.Helper()
	if len(got) == 0 {
		t.Errorf("%s: no pair failed, want some of %v", name, may)
	}
	for _, p := range got {
		if !slices.Contains(may, p) {
			t.Errorf("%s: pair %s failed, but the drift breaks only %v", name, p, may)
		}
	}
}

// checkPairs says whether exactly the pairs expected failed.
func checkPairs(t *testing.T, name string, got, want []Pair) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: failed pairs %v, want exactly %v", name, got, want)
	}
}

// waitRepairEvent waits for Stargate's Event reason on Server server:
// what tells a user that a route was changed behind its back and put back.
func waitRepairEvent(t *testing.T, reason, server string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, e := range events(t) {
			if strings.HasPrefix(e, server+" ") && strings.Contains(e, " "+reason+": ") {
				t.Logf("event: %s", e)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("no %s Event on Server %s after the repair", reason, server)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// events lists the names of the Events of the datacenter namespaces.
func events(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range world.Sites {
		var l corev1.EventList
		if err := world.Client.List(context.Background(), &l, client.InNamespace(s.Name)); err != nil {
			t.Fatal(err)
		}
		for _, e := range l.Items {
			out[e.Namespace+"/"+e.Name] = fmt.Sprintf("%s %s %s: %s", e.InvolvedObject.Name, e.Type, e.Reason, e.Message)
		}
	}
	return out
}

func podCIDR(t *testing.T, ns, name string) string {
	t.Helper()
	var s v1.Server
	if err := world.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	return s.Status.PodCIDR
}

// Two datacenters of two workers and one AKS node: after the repaves and
// route sync every pod reaches every other over the real path (VNet
// routes from the Azure table, real tailscaled routers, node routes from
// the CiliumNodes); then each drift breaks the pairs it should and
// Stargate repairs it.
func TestEveryPodReachesEveryOtherAndStargateRepairsDrift(t *testing.T) {
	ctx := context.Background()
	if _, err := world.StartController("--route-resync-period=" + resync.String()); err != nil {
		t.Fatal(err)
	}
	t.Logf("stargate-controller runs with --route-resync-period=%s (default 5m); log %s", resync, world.Controller.Log)

	start := time.Now()
	ops := map[string]string{}
	for _, s := range servers(t) {
		ops[s.Namespace+"/"+s.Name] = repave(t, s.Namespace, s.Name)
	}
	for key, op := range ops {
		ns, _, _ := strings.Cut(key, "/")
		deadline := time.Now().Add(4 * time.Minute)
		for {
			var o v1.Operation
			if err := world.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: op}, &o); err != nil {
				t.Fatal(err)
			}
			if o.Status.Phase == v1.OperationSucceeded {
				break
			}
			if o.Status.Phase == v1.OperationFailed || time.Now().After(deadline) {
				t.Fatalf("repave of %s: %s: %s\n%s", key, o.Status.Phase, o.Status.Message, o.Status.OutputTail)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("all %d repaves succeeded %s after the POSTs", len(ops), time.Since(start).Round(time.Millisecond))
	if err := world.AddDCPods(ctx); err != nil {
		t.Fatal(err)
	}
	if err := world.StartNodeAgents(500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ready := true
		var bad string
		for _, s := range servers(t) {
			if !condTrue(&s, stargate.ConditionRoutesReady) {
				ready, bad = false, s.Name+": "+conditions(&s)
			}
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("route conditions not all True after 2m: %s", bad)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("every Server RoutesReady %s after the POSTs", time.Since(start).Round(time.Millisecond))
	m := waitGreen(t, "after repaves and route sync", 90*time.Second)
	t.Logf("every pod reaches every other %s after the POSTs: %s", time.Since(start).Round(time.Millisecond), m.Summary(world.SiteOf))

	t.Run("DC routers advertise what the controller told them over SSH", func(t *testing.T) {
		devs, err := world.Tailnet.Devices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range world.Sites {
			want := []string{s.Subnet.String()}
			for _, n := range s.Nodes {
				want = append(want, n.PodCIDR.String())
			}
			slices.Sort(want)
			var got []string
			for _, d := range devs {
				if slices.Contains(d.Addresses, s.TailnetIP.String()) {
					got = slices.Sorted(slices.Values(d.AdvertisedRoutes))
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("router of %s advertises %v, want %v (it advertised nothing when it joined)", s.Name, got, want)
			}
		}
	})

	t.Run("check_all over the pod network", func(t *testing.T) {
		aks := world.AKSNode.Pods[0]
		cl := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return netns.Dial(ctx, aks.NetNS, "tcp4", addr)
		}}}
		var all CheckAllResults
		if err := getJSON(ctx, cl, fmt.Sprintf("http://%s:%d/check_all", aks.IP, proberPort), &all); err != nil {
			t.Fatal(err)
		}
		if !all.Green() {
			t.Fatalf("check_all of %s: %s; failed %v", aks.Name, all.Summary(world.SiteOf), all.Failed())
		}
	})

	dc1, dc2 := world.Sites[0], world.Sites[1]
	w1 := dc1.Nodes[0].Name
	cidrW1 := podCIDR(t, dc1.Name, w1)

	t.Run("Azure route deleted behind Stargate's back", func(t *testing.T) {
		r := drift(t, "azure", func() {
			for name, desc := range world.Table.RouteMap() {
				if strings.HasPrefix(desc, cidrW1+" via") {
					world.Table.Delete(name)
					return
				}
			}
			t.Fatalf("no Azure route for %s in %v", cidrW1, world.Table.RouteMap())
		})
		// The VNet's kernel route is back, to the AKS router.
		out, err := exec.Command("ip", "-n", world.VNetNS, "route", "show", cidrW1).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "via "+AKSRouterIP.String()) {
			t.Errorf("VNet route to %s after the repair: %q (%v), want one via %s", cidrW1, out, err, AKSRouterIP)
		}
		// Only AKS <-> w1 lose their path: the VNet routes w1's CIDR.
		checkPairs(t, "azure", r.failed, pairsWhere(func(a, b *Pod) bool {
			return a.Node.Site == "aks" && b.Node.Name == w1 || a.Node.Name == w1 && b.Node.Site == "aks"
		}))
		waitRepairEvent(t, "AzureRouteRepaired", w1)
	})

	t.Run("Tailscale route disabled", func(t *testing.T) {
		admin, err := tailscale.NewClient(world.Tailnet.APIKeyCredentials())
		if err != nil {
			t.Fatal(err)
		}
		r := drift(t, "tailscale", func() {
			devs, err := world.Tailnet.Devices(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range devs {
				if slices.Contains(d.Addresses, dc1.TailnetIP.String()) {
					rest := slices.DeleteFunc(slices.Clone(d.EnabledRoutes), func(r string) bool { return r == cidrW1 })
					if err := admin.Devices().SetSubnetRoutes(ctx, d.NodeID, rest); err != nil {
						t.Fatal(err)
					}
					return
				}
			}
			t.Fatalf("no device with %s", dc1.TailnetIP)
		})
		// w1 <-> every other site: its CIDR no longer crosses the tailnet.
		checkPairs(t, "tailscale", r.failed, pairsWhere(func(a, b *Pod) bool {
			return a.Node.Name == w1 && b.Node.Site != dc1.Name || b.Node.Name == w1 && a.Node.Site != dc1.Name
		}))
		waitRepairEvent(t, "TailscaleRouteRepaired", w1)
	})

	t.Run("DC router stops advertising", func(t *testing.T) {
		r := drift(t, "advertise", func() {
			if err := dc2.Router.Advertise(ctx, nil); err != nil {
				t.Fatal(err)
			}
		})
		// dc2 <-> every other site; inside dc2 all is well.
		checkPairs(t, "advertise", r.failed, pairsWhere(func(a, b *Pod) bool {
			return (a.Node.Site == dc2.Name) != (b.Node.Site == dc2.Name)
		}))
		for _, n := range dc2.Nodes {
			waitRepairEvent(t, "TailscaleRouteRepaired", n.Name)
		}
	})

	t.Run("CiliumNode pod CIDR edited", func(t *testing.T) {
		w := dc2.Nodes[1].Name
		r := drift(t, "cilium", func() {
			cn := cilium.NewCiliumNode()
			cn.SetName(w)
			patch := []byte(`{"spec":{"ipam":{"podCIDRs":["10.244.250.0/24"]}}}`)
			if err := world.Client.Patch(ctx, cn, client.RawPatch(types.MergePatchType, patch)); err != nil {
				t.Fatal(err)
			}
		})
		// Every pair with a pod of w: no node route to its pods any more,
		// in its datacenter (the other worker, the router) or beyond.
		// Stargate watches CiliumNodes and repairs one within about a
		// second, often before every path through w has noticed.
		checkPairsWithin(t, "cilium", r.failed, pairsWhere(func(a, b *Pod) bool { return a.Node.Name == w || b.Node.Name == w }))
		waitRepairEvent(t, "CiliumPodCIDRRepaired", w)
		var got unstructured.Unstructured
		got.SetGroupVersionKind(cilium.CiliumNodeGVK)
		if err := world.Client.Get(ctx, client.ObjectKey{Name: w}, &got); err != nil {
			t.Fatal(err)
		}
		if p := cilium.PodCIDRsOf(&got); len(p) != 1 || p[0] != podCIDR(t, dc2.Name, w) {
			t.Errorf("CiliumNode %s pod CIDRs %v after the repair, want [%s]", w, p, podCIDR(t, dc2.Name, w))
		}
	})
}
