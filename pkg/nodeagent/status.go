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
		return condition{metav1.ConditionUnknown, stargate.ReasonRouteCheckFailed, routesErr.Error()}
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
		return condition{metav1.ConditionFalse, stargate.ReasonTargetUnreachable, probeMessage(probeTarget, probeErr)}
	case podCIDR == "":
		return condition{metav1.ConditionUnknown, stargate.ReasonPodCIDRNotAlloc,
			"routes to the cluster are right; the local pod CIDR route cannot be checked before the Server has a status.podCIDR"}
	}
	msg := "routes are right: " + strings.Join(rep.Desired, ", ")
	if probeTarget != "" {
		msg += "; " + probeTarget + " answers"
	}
	return condition{metav1.ConditionTrue, stargate.ReasonRoutesHealthy, msg}
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

// statusApply is the server-side apply of the agent's part of srv's
// status: its two conditions and the node route layer, nothing else, so
// the field manager owns just those list entries and other writers' are
// neither sent nor touched. A condition whose status did not change keeps
// its lastTransitionTime. The body is built by hand rather than with the
// generated apply configurations, which would link every k8s.io/api group
// into the agent.
func statusApply(srv *v1alpha1.Server, st *NodeStatus, now time.Time) ([]byte, error) {
	cond := func(typ string, c condition) metav1.Condition {
		since := metav1.NewTime(now)
		if old := meta.FindStatusCondition(srv.Status.Conditions, typ); old != nil && old.Status == c.Status {
			since = old.LastTransitionTime
		}
		return metav1.Condition{Type: typ, Status: c.Status, Reason: c.Reason, Message: c.Message,
			LastTransitionTime: since, ObservedGeneration: srv.Generation}
	}
	checked := metav1.NewTime(now)
	type applyMeta struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	}
	type applyStatus struct {
		Conditions []metav1.Condition          `json:"conditions"`
		Routes     []v1alpha1.RouteLayerStatus `json:"routes"`
	}
	return json.Marshal(struct {
		APIVersion string      `json:"apiVersion"`
		Kind       string      `json:"kind"`
		Metadata   applyMeta   `json:"metadata"`
		Status     applyStatus `json:"status"`
	}{
		APIVersion: v1alpha1.SchemeGroupVersion.String(),
		Kind:       "Server",
		Metadata:   applyMeta{srv.Name, srv.Namespace},
		Status: applyStatus{
			Conditions: []metav1.Condition{
				cond(stargate.ConditionNodeRoutesHealthy, st.Routes),
				cond(stargate.ConditionCiliumPodCIDRMatches, st.Cilium),
			},
			Routes: []v1alpha1.RouteLayerStatus{{
				Layer: v1alpha1.RouteLayerNode, Desired: st.Desired, Observed: st.Observed,
				Healthy: st.Routes.Status == metav1.ConditionTrue, Reason: st.Routes.Reason, Message: st.Routes.Message,
				LastChecked: &checked,
			}},
		},
	})
}

// maxMessage keeps messages within metav1.Condition's limit.
const maxMessage = 32 * 1024

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-3] + "..."
}
