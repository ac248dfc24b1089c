package nodeagent

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// FieldManager is the agent's field manager.
const FieldManager = "stargate-nodeagent"

// condition is a condition without its times.
type condition struct {
	Status  metav1.ConditionStatus
	Reason  string
	Message string
}

// NodeStatus is what the agent reports on its Server: its two conditions
// and the node route layer (without lastChecked).
type NodeStatus struct {
	Routes   condition
	Cilium   condition
	Desired  []string
	Observed []string
}

// Equal compares everything the agent reports.
func (s *NodeStatus) Equal(o *NodeStatus) bool {
	return s.Routes == o.Routes && s.Cilium == o.Cilium &&
		slices.Equal(s.Desired, o.Desired) && slices.Equal(s.Observed, o.Observed)
}

// routesCondition sums up the route report, the probe and what is not
// known yet as the NodeRoutesHealthy condition.
func routesCondition(rep *RouteReport, routesErr error, podCIDR string, probeTarget string, probeErr error) condition {
	switch {
	case routesErr != nil:
		return condition{metav1.ConditionUnknown, ReasonRouteCheckFailed, routesErr.Error()}
	case !rep.Healthy():
		msgs := make([]string, len(rep.Problems))
		for i, p := range rep.Problems {
			msgs[i] = p.Message
		}
		if probeErr != nil {
			msgs = append(msgs, probeMessage(probeTarget, probeErr))
		}
		return condition{metav1.ConditionFalse, rep.Problems[0].Reason, strings.Join(msgs, "; ")}
	case probeErr != nil:
		return condition{metav1.ConditionFalse, ReasonTargetUnreachable, probeMessage(probeTarget, probeErr)}
	case podCIDR == "":
		return condition{metav1.ConditionUnknown, ReasonPodCIDRNotAlloc,
			"routes to the cluster are right; the local pod CIDR route cannot be checked before the Server has a status.podCIDR"}
	}
	msg := "routes are right: " + strings.Join(rep.Desired, ", ")
	if probeTarget != "" {
		msg += "; " + probeTarget + " answers"
	}
	return condition{metav1.ConditionTrue, ReasonRoutesHealthy, msg}
}

func probeMessage(target string, err error) string {
	return fmt.Sprintf("TCP connect to %s failed: %v", target, err)
}

// observedNodeStatus reads back what the agent reported on the Server, and
// when the node layer was last checked.
func observedNodeStatus(srv *v1alpha1.Server) (NodeStatus, time.Time, bool) {
	var st NodeStatus
	var layer *v1alpha1.RouteLayerStatus
	for i := range srv.Status.Routes {
		if srv.Status.Routes[i].Layer == v1alpha1.RouteLayerNode {
			layer = &srv.Status.Routes[i]
		}
	}
	rc := meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionNodeRoutesHealthy)
	cc := meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionCiliumPodCIDRMatches)
	if layer == nil || rc == nil || cc == nil || layer.LastChecked == nil {
		return st, time.Time{}, false
	}
	st.Routes = condition{rc.Status, rc.Reason, rc.Message}
	st.Cilium = condition{cc.Status, cc.Reason, cc.Message}
	st.Desired, st.Observed = layer.Desired, layer.Observed
	return st, layer.LastChecked.Time, true
}

// statusPatch is a JSON merge patch of srv's status that sets the agent's
// two conditions and the node route layer, and keeps every other condition
// and layer as srv has them. It carries srv's resourceVersion, so it fails
// with a Conflict instead of overwriting a newer status. A condition whose
// status did not change keeps its lastTransitionTime.
//
// Server-side apply of just these entries would need no resourceVersion;
// stargate-apiserver does not serve it for Servers yet (its OpenAPI models
// lack the group-version-kind), so the agent patches.
func statusPatch(srv *v1alpha1.Server, st *NodeStatus, now time.Time) ([]byte, error) {
	conds := slices.Clone(srv.Status.Conditions)
	set := func(typ string, c condition) {
		since := metav1.NewTime(now)
		if old := meta.FindStatusCondition(conds, typ); old != nil && old.Status == c.Status {
			since = old.LastTransitionTime
		}
		nc := metav1.Condition{Type: typ, Status: c.Status, Reason: c.Reason, Message: c.Message,
			LastTransitionTime: since, ObservedGeneration: srv.Generation}
		if i := slices.IndexFunc(conds, func(x metav1.Condition) bool { return x.Type == typ }); i >= 0 {
			conds[i] = nc
		} else {
			conds = append(conds, nc)
		}
	}
	set(stargate.ConditionNodeRoutesHealthy, st.Routes)
	set(stargate.ConditionCiliumPodCIDRMatches, st.Cilium)

	checked := metav1.NewTime(now)
	layer := v1alpha1.RouteLayerStatus{
		Layer: v1alpha1.RouteLayerNode, Desired: st.Desired, Observed: st.Observed,
		Healthy: st.Routes.Status == metav1.ConditionTrue, Reason: st.Routes.Reason, Message: st.Routes.Message,
		LastChecked: &checked,
	}
	routes := slices.Clone(srv.Status.Routes)
	if i := slices.IndexFunc(routes, func(x v1alpha1.RouteLayerStatus) bool { return x.Layer == v1alpha1.RouteLayerNode }); i >= 0 {
		routes[i] = layer
	} else {
		routes = append(routes, layer)
	}

	type patchMeta struct {
		ResourceVersion string `json:"resourceVersion"`
	}
	type patchStatus struct {
		Conditions []metav1.Condition          `json:"conditions"`
		Routes     []v1alpha1.RouteLayerStatus `json:"routes"`
	}
	return json.Marshal(struct {
		Metadata patchMeta   `json:"metadata"`
		Status   patchStatus `json:"status"`
	}{patchMeta{srv.ResourceVersion}, patchStatus{conds, routes}})
}

// maxMessage keeps messages within metav1.Condition's limit.
const maxMessage = 32 * 1024

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-3] + "..."
}
