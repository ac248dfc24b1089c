package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

// SetReadySummary sets the Server's Ready condition from InDatacenter
// (which counts once set, and first: a Server outside its datacenter is
// not Ready whatever it was), Provisioned, NodeReady and RoutesReady
// (which counts only once some controller set it).
//
// Every writer of a condition it reads (the operations, node health,
// datacenter and route controllers) calls it before the same status
// write, so Ready never lags the condition that changed it (cluster-api's
// util/conditions way).
func SetReadySummary(s *Server) {
	ready := metav1.Condition{Type: stargate.ConditionReady, Status: metav1.ConditionTrue, Reason: "AllReady", Message: "provisioned, node Ready", ObservedGeneration: s.Generation}
	for _, t := range []string{stargate.ConditionInDatacenter, stargate.ConditionProvisioned, stargate.ConditionNodeReady, stargate.ConditionRoutesReady} {
		c := meta.FindStatusCondition(s.Status.Conditions, t)
		if c == nil {
			if t == stargate.ConditionRoutesReady || t == stargate.ConditionInDatacenter {
				continue
			}
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, t+"Unknown", t+" has not been reported"
			break
		}
		if c.Status != metav1.ConditionTrue {
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, c.Reason, t+": "+c.Message
			break
		}
	}
	meta.SetStatusCondition(&s.Status.Conditions, ready)
}
