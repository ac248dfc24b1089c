package nodeagent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/nodeagent"
)

// agentConfig checks the test network: the AKS CIDRs through the router,
// the pod CIDR on cilium_host, and a TCP connect to probe (when set).
func agentConfig(node string, tn *testNet, probe string) nodeagent.Config {
	return nodeagent.Config{
		NodeName: node,
		Want: nodeagent.RouteWant{
			Remote:         []netip.Prefix{netip.MustParsePrefix(aksPodCIDR), netip.MustParsePrefix(aksSvcCIDR)},
			NextHopGateway: netip.MustParseAddr(routerIP),
			RemoteTable:    unix.RT_TABLE_MAIN,
			PodCIDRDevice:  podDevice,
		},
		ProbeTarget:  probe,
		ProbeTimeout: 2 * time.Second,
		Interval:     time.Hour,
		Heartbeat:    time.Hour,
		NetNS:        tn.NS,
	}
}

// runAgent runs an agent until the test ends.
func runAgent(t *testing.T, f *nodeFixture, cfg nodeagent.Config, log *requestLog) *nodeagent.Agent {
	t.Helper()
	restCfg := f.Config
	if log != nil {
		restCfg = log.wrap(restCfg)
	}
	a, err := nodeagent.New(cfg, restCfg)
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, "") }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	return a
}

// serverState is what the tests read back of a Server.
type serverState struct {
	Routes, Cilium *metav1.Condition
	Layer          *v1alpha1.RouteLayerStatus
	Server         *v1alpha1.Server
}

func getState(t testing.TB, f *nodeFixture) serverState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := f.Admin.StargateV1alpha1().Servers(f.Server.Namespace).Get(ctx, f.Node, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get Server %s: %v", f.Node, err)
	}
	st := serverState{
		Routes: meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionNodeRoutesHealthy),
		Cilium: meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionCiliumPodCIDRMatches),
		Server: srv,
	}
	for i := range srv.Status.Routes {
		if srv.Status.Routes[i].Layer == v1alpha1.RouteLayerNode {
			st.Layer = &srv.Status.Routes[i]
		}
	}
	return st
}

// waitFor polls the Server every 20ms until ok says yes, and returns how
// long that took.
func waitFor(t testing.TB, f *nodeFixture, timeout time.Duration, what string, ok func(serverState) bool) (time.Duration, serverState) {
	t.Helper()
	start := time.Now()
	var st serverState
	for {
		st = getState(t, f)
		if ok(st) {
			return time.Since(start), st
		}
		if time.Since(start) > timeout {
			t.Fatalf("Server %s: %s not seen within %s; conditions %s; node layer %+v", f.Node, what, timeout, conds(st), st.Layer)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func conds(st serverState) string {
	var b strings.Builder
	for _, c := range st.Server.Status.Conditions {
		fmt.Fprintf(&b, "[%s=%s %s: %s] ", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

func is(c *metav1.Condition, status metav1.ConditionStatus, reason string) bool {
	return c != nil && c.Status == status && (reason == "" || c.Reason == reason)
}

// TestAgentReportsRouteHealth runs an agent whose interval and heartbeat
// are an hour, so everything it reports after the first pass comes from
// netlink events or from API changes.
func TestAgentReportsRouteHealth(t *testing.T) {
	requireRoot(t)
	w := getWorld(t)
	tn := newTestNet(t, 0)
	l := tn.ListenOnTarget(t)
	f := newNodeFixture(t, w, podCIDR, podCIDR)
	runAgent(t, f, agentConfig(f.Node, tn, l.Addr().String()), nil)

	t.Run("healthy routes are NodeRoutesHealthy=True", func(t *testing.T) {
		_, st := waitFor(t, f, 30*time.Second, "NodeRoutesHealthy=True and CiliumPodCIDRMatches=True", func(st serverState) bool {
			return is(st.Routes, metav1.ConditionTrue, stargate.ReasonRoutesHealthy) && is(st.Cilium, metav1.ConditionTrue, stargate.ReasonPodCIDRMatches)
		})
		if st.Layer == nil || !st.Layer.Healthy || st.Layer.LastChecked == nil {
			t.Fatalf("node route layer = %+v, want healthy with lastChecked", st.Layer)
		}
		wantObserved := []string{
			aksPodCIDR + " via " + routerIP + " dev " + workerVeth,
			aksSvcCIDR + " via " + routerIP + " dev " + workerVeth,
			podCIDR + " dev " + podDevice,
		}
		if fmt.Sprint(st.Layer.Observed) != fmt.Sprint(wantObserved) {
			t.Errorf("observed = %q, want %q", st.Layer.Observed, wantObserved)
		}
		if !strings.Contains(st.Routes.Message, l.Addr().String()+" answers") {
			t.Errorf("message %q does not say the probe target answered", st.Routes.Message)
		}
		// The agent's apply left the controller's fields alone.
		if ready := meta.FindStatusCondition(st.Server.Status.Conditions, "Ready"); !is(ready, metav1.ConditionTrue, "Ready") {
			t.Errorf("Ready condition changed: %+v", ready)
		}
		if len(st.Server.Status.Routes) != 2 || st.Server.Status.Phase != v1alpha1.ServerReady {
			t.Errorf("routes %+v phase %s: want the azure layer kept beside the node layer, phase Ready", st.Server.Status.Routes, st.Server.Status.Phase)
		}
	})

	t.Run("deleted AKS pod CIDR route is reported within a second, and its return too", func(t *testing.T) {
		tn.DelRoute(t, aksPodCIDR)
		took, st := waitFor(t, f, 5*time.Second, "NodeRoutesHealthy=False", func(st serverState) bool {
			return is(st.Routes, metav1.ConditionFalse, "")
		})
		t.Logf("route deleted -> NodeRoutesHealthy=False on the Server in %s", took)
		if took > time.Second {
			t.Errorf("took %s, want under a second (the netlink event, not the 1h interval)", took)
		}
		if st.Routes.Reason != stargate.ReasonRouteMissing || !strings.Contains(st.Routes.Message, aksPodCIDR) {
			t.Errorf("NodeRoutesHealthy %s: %s, want reason %s naming %s", st.Routes.Reason, st.Routes.Message, stargate.ReasonRouteMissing, aksPodCIDR)
		}
		if st.Layer.Healthy || st.Layer.Reason != stargate.ReasonRouteMissing {
			t.Errorf("node layer %+v, want unhealthy with reason %s", st.Layer, stargate.ReasonRouteMissing)
		}

		tn.AddRoute(t, aksPodCIDR, routerIP)
		took, _ = waitFor(t, f, 5*time.Second, "NodeRoutesHealthy=True again", func(st serverState) bool {
			return is(st.Routes, metav1.ConditionTrue, stargate.ReasonRoutesHealthy)
		})
		t.Logf("route added back -> NodeRoutesHealthy=True in %s", took)
		if took > time.Second {
			t.Errorf("took %s, want under a second", took)
		}
	})

	t.Run("wrong next hop has its own reason", func(t *testing.T) {
		tn.ReplaceRoute(t, aksSvcCIDR, wrongHopIP)
		_, st := waitFor(t, f, 5*time.Second, "reason WrongNextHop", func(st serverState) bool {
			return is(st.Routes, metav1.ConditionFalse, stargate.ReasonWrongNextHop)
		})
		for _, s := range []string{aksSvcCIDR, wrongHopIP, routerIP} {
			if !strings.Contains(st.Routes.Message, s) {
				t.Errorf("message %q does not name %s", st.Routes.Message, s)
			}
		}
		tn.ReplaceRoute(t, aksSvcCIDR, routerIP)
		waitFor(t, f, 5*time.Second, "NodeRoutesHealthy=True again", func(st serverState) bool {
			return is(st.Routes, metav1.ConditionTrue, "")
		})
	})

	t.Run("missing local pod CIDR route has its own reason", func(t *testing.T) {
		tn.DelRoute(t, podCIDR)
		_, st := waitFor(t, f, 5*time.Second, "reason PodCIDRRouteMissing", func(st serverState) bool {
			return is(st.Routes, metav1.ConditionFalse, stargate.ReasonPodCIDRRouteMiss)
		})
		if !strings.Contains(st.Routes.Message, podCIDR) || !strings.Contains(st.Routes.Message, podDevice) {
			t.Errorf("message %q does not name %s and %s", st.Routes.Message, podCIDR, podDevice)
		}
		tn.AddLocalRoute(t, podCIDR)
		waitFor(t, f, 5*time.Second, "NodeRoutesHealthy=True again", func(st serverState) bool {
			return is(st.Routes, metav1.ConditionTrue, "")
		})
	})

	t.Run("the router link going down is reported within a second", func(t *testing.T) {
		// The kernel flushes the IPv4 routes of a link that goes down
		// without a route notification for each; the link event triggers
		// the pass.
		veth := tn.link(t, workerVeth)
		if err := tn.H.LinkSetDown(veth); err != nil {
			t.Fatal(err)
		}
		took, st := waitFor(t, f, 5*time.Second, "NodeRoutesHealthy=False", func(st serverState) bool {
			return is(st.Routes, metav1.ConditionFalse, stargate.ReasonRouteMissing)
		})
		t.Logf("link down -> NodeRoutesHealthy=False in %s: %s", took, st.Routes.Message)
		if took > time.Second {
			t.Errorf("took %s, want under a second", took)
		}
		if err := tn.H.LinkSetUp(veth); err != nil {
			t.Fatal(err)
		}
		for _, c := range []string{aksPodCIDR, aksSvcCIDR, targetNet} {
			tn.AddRoute(t, c, routerIP)
		}
		waitFor(t, f, 5*time.Second, "NodeRoutesHealthy=True again", func(st serverState) bool {
			return is(st.Routes, metav1.ConditionTrue, "")
		})
	})

	t.Run("CiliumNode pod CIDR differing from the Server's is CiliumPodCIDRMatches=False with both", func(t *testing.T) {
		setCilium := func(cidr string) {
			patch := fmt.Sprintf(`{"spec":{"ipam":{"podCIDRs":[%q]}}}`, cidr)
			if _, err := f.Dyn.Resource(nodeagent.CiliumNodes).Patch(context.Background(), f.Node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatalf("patch CiliumNode: %v", err)
			}
		}
		setCilium(otherCIDR)
		_, st := waitFor(t, f, 10*time.Second, "CiliumPodCIDRMatches=False", func(st serverState) bool {
			return is(st.Cilium, metav1.ConditionFalse, stargate.ReasonPodCIDRMismatch)
		})
		if !strings.Contains(st.Cilium.Message, otherCIDR) || !strings.Contains(st.Cilium.Message, podCIDR) {
			t.Errorf("message %q does not name both %s (CiliumNode) and %s (Server)", st.Cilium.Message, otherCIDR, podCIDR)
		}
		if !is(st.Routes, metav1.ConditionTrue, "") {
			t.Errorf("NodeRoutesHealthy moved too: %+v", st.Routes)
		}
		setCilium(podCIDR)
		waitFor(t, f, 10*time.Second, "CiliumPodCIDRMatches=True again", func(st serverState) bool {
			return is(st.Cilium, metav1.ConditionTrue, stargate.ReasonPodCIDRMatches)
		})
	})
}

// TestAgentWritesOnlyOnChangeOrHeartbeat checks every 100ms, with a 3s
// heartbeat, and counts the agent's API requests.
func TestAgentWritesOnlyOnChangeOrHeartbeat(t *testing.T) {
	requireRoot(t)
	w := getWorld(t)
	tn := newTestNet(t, 0)
	f := newNodeFixture(t, w, podCIDR, podCIDR)
	cfg := agentConfig(f.Node, tn, "")
	cfg.Interval, cfg.Heartbeat = 100*time.Millisecond, 3*time.Second
	var log requestLog
	a := runAgent(t, f, cfg, &log)

	waitFor(t, f, 30*time.Second, "first report", func(st serverState) bool { return is(st.Routes, metav1.ConditionTrue, "") })
	// Let the write's own watch event and pass settle.
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	checksBefore := checks(t, a)
	const window = 7 * time.Second
	time.Sleep(window)
	reqs := log.since(start)
	checksDone := checks(t, a) - checksBefore

	var writes []time.Time
	for _, r := range reqs {
		switch {
		case r.Method == "PATCH" && strings.HasSuffix(r.Path, "/servers/"+f.Node+"/status"):
			writes = append(writes, r.At)
		default:
			t.Errorf("unexpected request in steady state: %s %s (watch=%v)", r.Method, r.Path, r.Watch)
		}
	}
	t.Logf("steady state over %s: %.0f check passes, %d API requests, %d status writes (heartbeat %s)", window, checksDone, len(reqs), len(writes), cfg.Heartbeat)
	if checksDone < 30 {
		t.Errorf("only %.0f check passes in %s at a 100ms interval", checksDone, window)
	}
	if max := int(window/cfg.Heartbeat) + 1; len(writes) > max {
		t.Errorf("%d writes in %s, want at most %d (one per %s heartbeat)", len(writes), window, max, cfg.Heartbeat)
	}
	if len(writes) < 1 {
		t.Errorf("no heartbeat write in %s (heartbeat %s)", window, cfg.Heartbeat)
	}
	for i := 1; i < len(writes); i++ {
		if gap := writes[i].Sub(writes[i-1]); gap < cfg.Heartbeat-200*time.Millisecond {
			t.Errorf("writes %s apart, want a heartbeat (%s) between them", gap, cfg.Heartbeat)
		}
	}
}

func checks(t *testing.T, a *nodeagent.Agent) float64 {
	t.Helper()
	mfs, err := a.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "stargate_nodeagent_checks_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// TestProbeInNamespace dials from the worker namespace to the router
// namespace: a listening target answers, a closed port is refused.
func TestProbeInNamespace(t *testing.T) {
	tn := newTestNet(t, 0)
	l := tn.ListenOnTarget(t)
	p := &nodeagent.Probe{Target: l.Addr().String(), Timeout: 2 * time.Second, NS: tn.NS}
	if err := p.Check(context.Background()); err != nil {
		t.Errorf("probe of listening %s: %v", p.Target, err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	p.Target = net.JoinHostPort(targetIP, port)
	err := p.Check(context.Background())
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("probe of closed %s: %v, want connection refused", p.Target, err)
	}
}
