package nodeagent_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned"
)

// One DaemonSet serves every datacenter: the agent expects the gateway its
// Server's Datacenter declares (spec.agentGateway), follows it when the
// admin changes it, and uses --next-hop-gateway only while no Datacenter
// declares the namespace. The agent's token reads the Datacenter but
// cannot change it.
func TestAgentTakesItsGatewayFromItsDatacenter(t *testing.T) {
	requireRoot(t)
	w := getWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const ns = "dc-na-gw"
	if _, err := w.ControlPlane.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tn := newTestNet(t, 0) // the routes leave through routerIP
	f := newNodeFixtureIn(t, w, ns, podCIDR, podCIDR)
	cfg := agentConfig(f.Node, tn, "")
	cfg.GatewayFromDatacenter = true
	cfg.Want.NextHopGateway = netip.MustParseAddr(wrongHopIP) // the DaemonSet's fallback, wrong for this datacenter
	runAgent(t, f, cfg, nil)

	// No Datacenter yet: the fallback is what the routes are held to.
	_, st := waitFor(t, f, 30*time.Second, "WrongNextHop against --next-hop-gateway", func(st serverState) bool {
		return is(st.Routes, metav1.ConditionFalse, stargate.ReasonWrongNextHop) && strings.Contains(st.Routes.Message, "from --next-hop-gateway")
	})
	t.Logf("without a Datacenter: %s", st.Routes.Message)

	dcObj, err := f.Admin.StargateV1alpha1().Datacenters().Create(ctx, &v1alpha1.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: "na-gw"},
		Spec: v1alpha1.DatacenterSpec{Namespace: ns, WorkerSubnet: "192.0.2.0/24",
			Router: v1alpha1.DatacenterRouter{IP: "100.64.0.1"}, AgentGateway: routerIP},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = f.Admin.StargateV1alpha1().Datacenters().Delete(context.Background(), dcObj.Name, metav1.DeleteOptions{})
	})
	took, st := waitFor(t, f, 10*time.Second, "NodeRoutesHealthy=True against the Datacenter's agentGateway", func(st serverState) bool {
		return is(st.Routes, metav1.ConditionTrue, stargate.ReasonRoutesHealthy)
	})
	t.Logf("Datacenter declared -> healthy in %s: %s", took, st.Routes.Message)
	if !strings.Contains(st.Routes.Message, "gateway "+routerIP+" from Datacenter "+dcObj.Name) {
		t.Errorf("message %q does not say the gateway came from Datacenter %s", st.Routes.Message, dcObj.Name)
	}
	if st.Layer == nil || !strings.Contains(strings.Join(st.Layer.Desired, ","), aksPodCIDR+" via "+routerIP) {
		t.Errorf("node layer %+v does not want %s via %s", st.Layer, aksPodCIDR, routerIP)
	}

	// The admin moves the gateway: the agent follows without a restart.
	const moved = "192.0.2.4"
	if _, err := f.Admin.StargateV1alpha1().Datacenters().Patch(ctx, dcObj.Name, types.MergePatchType,
		[]byte(`{"spec":{"agentGateway":"`+moved+`"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	took, st = waitFor(t, f, 10*time.Second, "WrongNextHop against the moved agentGateway", func(st serverState) bool {
		return is(st.Routes, metav1.ConditionFalse, stargate.ReasonWrongNextHop) && strings.Contains(st.Routes.Message, "gateway "+moved+" from Datacenter")
	})
	t.Logf("agentGateway moved -> %s in %s", st.Routes.Reason, took)

	// The agent's token reads its Datacenter and cannot change it.
	agent, err := versioned.NewForConfig(f.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, err = agent.StargateV1alpha1().Datacenters().Patch(ctx, dcObj.Name, types.MergePatchType,
		[]byte(`{"spec":{"agentGateway":"`+wrongHopIP+`"}}`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("the agent's token patched its Datacenter: err = %v, want Forbidden", err)
	}
	if err := agent.StargateV1alpha1().Datacenters().Delete(ctx, dcObj.Name, metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the agent's token deleted its Datacenter: err = %v, want Forbidden", err)
	}

	// The Datacenter goes: back to the fallback.
	if err := f.Admin.StargateV1alpha1().Datacenters().Delete(ctx, dcObj.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, f, 10*time.Second, "the fallback gateway again", func(st serverState) bool {
		return is(st.Routes, metav1.ConditionFalse, stargate.ReasonWrongNextHop) && strings.Contains(st.Routes.Message, "gateway "+wrongHopIP+" from --next-hop-gateway")
	})
}
