// Package serverstatus holds what every writer of a Server's status shares:
// the Ready summary, recomputed in the same write as the condition that
// changed it (cluster-api's util/conditions way).
package serverstatus

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// SetReadySummary sets the Server's Ready condition from InDatacenter
// (which counts once set, and first: a Server outside its datacenter is
// not Ready whatever it was), Provisioned, NodeReady and RoutesReady
// (which counts only once some controller set it).
func SetReadySummary(s *v1.Server) {
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
