package nodehealth

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

func TestApply(t *testing.T) {
	node := func(status corev1.ConditionStatus) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}}}
	}
	tests := []struct {
		name      string
		node      *corev1.Node
		phase     v1.ServerPhase
		reason    string
		readyTrue bool
	}{
		{"ready", node(corev1.ConditionTrue), v1.ServerReady, stargate.ReasonNodeReady, true},
		{"not ready", node(corev1.ConditionFalse), v1.ServerFailed, stargate.ReasonNodeNotReady, false},
		{"unknown", node(corev1.ConditionUnknown), v1.ServerFailed, stargate.ReasonNodeNotReady, false},
		{"gone", nil, v1.ServerFailed, stargate.ReasonNodeNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &v1.Server{Status: v1.ServerStatus{Phase: v1.ServerReady, NodeName: "w1", Conditions: []metav1.Condition{
				{Type: stargate.ConditionProvisioned, Status: metav1.ConditionTrue, Reason: "Succeeded"}}}}
			Apply(s, tt.node)
			c := meta.FindStatusCondition(s.Status.Conditions, stargate.ConditionNodeReady)
			if s.Status.Phase != tt.phase || c == nil || c.Reason != tt.reason {
				t.Fatalf("phase %s, NodeReady %+v", s.Status.Phase, c)
			}
			if got := meta.IsStatusConditionTrue(s.Status.Conditions, stargate.ConditionReady); got != tt.readyTrue {
				t.Fatalf("Ready = %v, want %v", got, tt.readyTrue)
			}
		})
	}
}
