package v1alpha1

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
)

func TestReadySummaryPutsDatacenterMembershipFirst(t *testing.T) {
	cond := func(typ string, ok bool, reason string) metav1.Condition {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: "m"}
	}
	provisioned := []metav1.Condition{cond(stargate.ConditionProvisioned, true, "Succeeded"), cond(stargate.ConditionNodeReady, true, "KubeletReady")}
	for _, tc := range []struct {
		name       string
		conditions []metav1.Condition
		status     metav1.ConditionStatus
		reason     string
	}{
		{"provisioned, membership not reported yet", provisioned, metav1.ConditionTrue, "AllReady"},
		{"provisioned and in its datacenter", append([]metav1.Condition{cond(stargate.ConditionInDatacenter, true, stargate.ReasonInDatacenterNetwork)}, provisioned...), metav1.ConditionTrue, "AllReady"},
		{"provisioned, but its datacenter is gone", append([]metav1.Condition{cond(stargate.ConditionInDatacenter, false, stargate.ReasonNoDatacenter)}, provisioned...), metav1.ConditionFalse, stargate.ReasonNoDatacenter},
		{"outside its datacenter, never provisioned", []metav1.Condition{cond(stargate.ConditionInDatacenter, false, stargate.ReasonNotInDatacenterNetwork)}, metav1.ConditionFalse, stargate.ReasonNotInDatacenterNetwork},
		{"in its datacenter, never provisioned", []metav1.Condition{cond(stargate.ConditionInDatacenter, true, stargate.ReasonInDatacenterNetwork)}, metav1.ConditionFalse, "ProvisionedUnknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Status: ServerStatus{Conditions: append([]metav1.Condition(nil), tc.conditions...)}}
			SetReadySummary(s)
			r := meta.FindStatusCondition(s.Status.Conditions, stargate.ConditionReady)
			if r == nil || r.Status != tc.status || r.Reason != tc.reason {
				t.Errorf("Ready = %+v, want %s %s", r, tc.status, tc.reason)
			}
		})
	}
}
