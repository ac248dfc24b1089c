package nodeagent

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

func TestCiliumCondition(t *testing.T) {
	tests := []struct {
		name    string
		podCIDR string
		view    CiliumView
		status  metav1.ConditionStatus
		reason  string
		says    []string
	}{
		{"match", "10.244.5.0/24", CiliumView{Synced: true, Found: true, PodCIDRs: []string{"10.244.5.0/24"}}, metav1.ConditionTrue, stargate.ReasonPodCIDRMatches, nil},
		{"match among IPv4 and IPv6", "10.244.5.0/24", CiliumView{Synced: true, Found: true, PodCIDRs: []string{"fd00:5::/64", "10.244.5.0/24"}}, metav1.ConditionTrue, stargate.ReasonPodCIDRMatches, nil},
		{"mismatch names both", "10.244.5.0/24", CiliumView{Synced: true, Found: true, PodCIDRs: []string{"10.244.9.0/24"}}, metav1.ConditionFalse, stargate.ReasonPodCIDRMismatch,
			[]string{"10.244.9.0/24", "10.244.5.0/24", "CiliumNode w1", "Server dc/w1"}},
		{"no CiliumNode", "10.244.5.0/24", CiliumView{Synced: true}, metav1.ConditionFalse, stargate.ReasonCiliumNodeNotFound, []string{"no CiliumNode w1"}},
		{"CiliumNode without CIDR", "10.244.5.0/24", CiliumView{Synced: true, Found: true}, metav1.ConditionFalse, stargate.ReasonCiliumNodeNoPodCIDR, nil},
		{"server without CIDR", "", CiliumView{Synced: true, Found: true, PodCIDRs: []string{"10.244.9.0/24"}}, metav1.ConditionUnknown, stargate.ReasonPodCIDRNotAlloc, nil},
		{"CRD not readable", "10.244.5.0/24", CiliumView{}, metav1.ConditionUnknown, stargate.ReasonCiliumUnavailable, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, reason, msg := ciliumCondition("w1", "dc/w1", tt.podCIDR, tt.view)
			if status != tt.status || reason != tt.reason {
				t.Errorf("got %s/%s (%s), want %s/%s", status, reason, msg, tt.status, tt.reason)
			}
			for _, s := range tt.says {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not name %q", msg, s)
				}
			}
		})
	}
}

func TestRoutesCondition(t *testing.T) {
	healthy := &RouteReport{Desired: []string{"10.244.0.0/16 via 192.0.2.1"}}
	broken := &RouteReport{Problems: []Problem{{stargate.ReasonRouteMissing, "no route to 10.244.0.0/16 in table main"}, {stargate.ReasonWrongNextHop, "route to 10.0.0.0/16 ..."}}}
	refused := errors.New("connection refused")
	tests := []struct {
		name    string
		rep     *RouteReport
		err     error
		podCIDR string
		probe   error
		want    condition
	}{
		{"healthy", healthy, nil, "10.244.5.0/24", nil, condition{metav1.ConditionTrue, stargate.ReasonRoutesHealthy, "routes are right: 10.244.0.0/16 via 192.0.2.1; 198.51.100.10:443 answers"}},
		{"first problem gives the reason, all are named", broken, nil, "10.244.5.0/24", refused, condition{metav1.ConditionFalse, stargate.ReasonRouteMissing,
			"no route to 10.244.0.0/16 in table main; route to 10.0.0.0/16 ...; TCP connect to 198.51.100.10:443 failed: connection refused"}},
		{"probe fails", healthy, nil, "10.244.5.0/24", refused, condition{metav1.ConditionFalse, stargate.ReasonTargetUnreachable, "TCP connect to 198.51.100.10:443 failed: connection refused"}},
		{"netlink fails", nil, errors.New("list routes: EPERM"), "10.244.5.0/24", nil, condition{metav1.ConditionUnknown, stargate.ReasonRouteCheckFailed, "list routes: EPERM"}},
		{"pod CIDR unknown", healthy, nil, "", nil, condition{Status: metav1.ConditionUnknown, Reason: stargate.ReasonPodCIDRNotAlloc}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := routesCondition(tt.rep, tt.err, tt.podCIDR, "198.51.100.10:443", tt.probe)
			if tt.want.Message == "" {
				got.Message = ""
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func serverWith(st *NodeStatus, checked time.Time) *v1alpha1.Server {
	s := &v1alpha1.Server{ObjectMeta: metav1.ObjectMeta{Name: "w1", Namespace: "dc", UID: "u1"}}
	if st == nil {
		return s
	}
	since := metav1.NewTime(checked.Add(-time.Hour))
	s.Status.Conditions = []metav1.Condition{
		{Type: stargate.ConditionNodeRoutesHealthy, Status: st.Routes.Status, Reason: st.Routes.Reason, Message: st.Routes.Message, LastTransitionTime: since},
		{Type: stargate.ConditionCiliumPodCIDRMatches, Status: st.Cilium.Status, Reason: st.Cilium.Reason, Message: st.Cilium.Message, LastTransitionTime: since},
	}
	c := metav1.NewTime(checked)
	s.Status.Routes = []v1alpha1.RouteLayerStatus{{Layer: v1alpha1.RouteLayerNode, Desired: st.Desired, Observed: st.Observed, LastChecked: &c}}
	return s
}

func TestWriteNeeded(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ok := &NodeStatus{
		Routes:  condition{metav1.ConditionTrue, stargate.ReasonRoutesHealthy, "routes are right"},
		Cilium:  condition{metav1.ConditionTrue, stargate.ReasonPodCIDRMatches, "match"},
		Desired: []string{"10.244.0.0/16 via 192.0.2.1"}, Observed: []string{"10.244.0.0/16 via 192.0.2.1 dev eth0"},
	}
	bad := &NodeStatus{
		Routes: condition{metav1.ConditionFalse, stargate.ReasonRouteMissing, "no route to 10.244.0.0/16 in table main"},
		Cilium: ok.Cilium, Desired: ok.Desired,
	}
	tests := []struct {
		name      string
		server    *v1alpha1.Server
		applied   *NodeStatus
		appliedAt time.Time
		st        *NodeStatus
		want      string
	}{
		{"nothing reported yet", serverWith(nil, time.Time{}), nil, time.Time{}, ok, "changed"},
		{"same as reported, heartbeat not due", serverWith(ok, now.Add(-time.Minute)), ok, now.Add(-time.Minute), ok, ""},
		{"same as reported after a restart, heartbeat not due", serverWith(ok, now.Add(-time.Minute)), nil, time.Time{}, ok, ""},
		{"same as reported, heartbeat due", serverWith(ok, now.Add(-5*time.Minute)), ok, now.Add(-5 * time.Minute), ok, "heartbeat"},
		{"changed", serverWith(ok, now.Add(-time.Minute)), ok, now.Add(-time.Minute), bad, "changed"},
		{"informer has not seen the write yet", serverWith(ok, now.Add(-time.Minute)), bad, now.Add(-time.Second), bad, ""},
		{"someone else changed it long after the write", serverWith(ok, now.Add(-time.Minute)), bad, now.Add(-time.Minute), bad, "changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Agent{cfg: Config{Heartbeat: 5 * time.Minute}, applied: tt.applied, appliedAt: tt.appliedAt, appliedUID: "u1"}
			if got := a.writeNeeded(tt.server, tt.st, now); got != tt.want {
				t.Errorf("writeNeeded = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStatusApply(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ok := &NodeStatus{Routes: condition{metav1.ConditionTrue, stargate.ReasonRoutesHealthy, "x"}, Cilium: condition{metav1.ConditionTrue, stargate.ReasonPodCIDRMatches, "y"}}
	srv := serverWith(ok, now.Add(-time.Minute))
	srv.ResourceVersion, srv.Generation = "42", 3
	ready := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Ready", LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}
	srv.Status.Conditions = append([]metav1.Condition{ready}, srv.Status.Conditions...)
	srv.Status.Routes = append([]v1alpha1.RouteLayerStatus{{Layer: v1alpha1.RouteLayerAzure, Healthy: true, Reason: "Synced"}}, srv.Status.Routes...)
	flipped := *ok
	flipped.Cilium = condition{metav1.ConditionFalse, stargate.ReasonPodCIDRMismatch, "z"}
	flipped.Observed = []string{"10.244.0.0/16 via 192.0.2.1 dev eth0"}

	data, err := statusApply(srv, &flipped, now)
	if err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.Server
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("apply %s: %v", data, err)
	}
	if got.APIVersion != "stargate.io/v1alpha1" || got.Kind != "Server" || got.Name != "w1" || got.Namespace != "dc" {
		t.Errorf("apply names %s %s %s/%s", got.APIVersion, got.Kind, got.Namespace, got.Name)
	}
	if got.ResourceVersion != "" || got.Spec != (v1alpha1.ServerSpec{}) || got.Status.Phase != "" || got.Labels != nil {
		t.Errorf("apply sets more than the agent owns: %s", data)
	}
	cs := got.Status.Conditions
	if len(cs) != 2 || cs[0].Type != stargate.ConditionNodeRoutesHealthy || cs[1].Type != stargate.ConditionCiliumPodCIDRMatches {
		t.Fatalf("conditions %+v: want the agent's two alone", cs)
	}
	if !cs[0].LastTransitionTime.Equal(&srv.Status.Conditions[1].LastTransitionTime) {
		t.Errorf("unchanged NodeRoutesHealthy moved its lastTransitionTime to %v", cs[0].LastTransitionTime)
	}
	if cs[1].Status != metav1.ConditionFalse || !cs[1].LastTransitionTime.Time.Equal(now) || cs[1].ObservedGeneration != 3 {
		t.Errorf("CiliumPodCIDRMatches %+v: want False since %v, generation 3", cs[1], now)
	}
	rs := got.Status.Routes
	if len(rs) != 1 || rs[0].Layer != v1alpha1.RouteLayerNode || !reflect.DeepEqual(rs[0].Observed, flipped.Observed) ||
		!rs[0].Healthy || !rs[0].LastChecked.Time.Equal(now) {
		t.Errorf("routes %+v: want the node layer alone, healthy, checked now", rs)
	}
}
