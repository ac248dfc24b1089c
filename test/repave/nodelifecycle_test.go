package repave

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// A kubelet that stops posting status makes its Node NotReady through
// kube-controller-manager's node lifecycle controller, and the Server
// follows: phase Failed, NodeReady False saying why, Ready False. Nothing
// but the kubelet stand-in and kube-controller-manager writes the Node.
func TestStoppedKubeletMakesNodeNotReadyAndServerFollows(t *testing.T) {
	const name = "worker-24"
	env.server(t, name, env.sim.Workers[23], nil)
	env.startController(t, "nodelifecycle")
	op := env.waitOp(t, env.repave(t, name, ""), 2*time.Minute, finished)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("Operation %s: %s: %s\noutput:\n%s", op.Name, op.Status.Phase, op.Status.Message, op.Status.OutputTail)
	}
	env.nodeReady(t, name)
	env.waitServer(t, name, 30*time.Second, func(s *v1.Server) bool { return s.Status.Phase == v1.ServerReady })

	// The stand-in dies as a crashed kubelet would: no last status.
	pidFile := filepath.Join(env.stateDir, name, "pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %v", pidFile, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill kubelet-standin %d: %v", pid, err)
	}
	stopped := time.Now()

	// kube-controller-manager marks the Node after nodeMonitorGracePeriod
	// (its monitor looks every 5s) and taints it unreachable.
	var node corev1.Node
	deadline := stopped.Add(nodeMonitorGracePeriod + time.Minute)
	for {
		if err := env.c.Get(context.Background(), client.ObjectKey{Name: name}, &node); err != nil {
			t.Fatal(err)
		}
		if c := nodeCondition(&node, corev1.NodeReady); c != nil && c.Status == corev1.ConditionUnknown && hasTaint(&node, corev1.TaintNodeUnreachable) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Node %s is still %+v (taints %+v) %s after its kubelet stopped", name, nodeCondition(&node, corev1.NodeReady), node.Spec.Taints, time.Since(stopped))
		}
		time.Sleep(500 * time.Millisecond)
	}
	notReadyAfter := time.Since(stopped)
	ready := nodeCondition(&node, corev1.NodeReady)
	if ready.Reason != "NodeStatusUnknown" {
		t.Errorf("Node condition Ready has reason %q, want NodeStatusUnknown (the node lifecycle controller's)", ready.Reason)
	}
	if !statusWrittenBy(&node, "kube-controller-manager") {
		t.Errorf("kube-controller-manager does not own any of Node %s's status; managedFields: %+v", name, managers(&node))
	}

	srv := env.waitServer(t, name, 30*time.Second, func(s *v1.Server) bool { return s.Status.Phase == v1.ServerFailed })
	c := meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionNodeReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != stargate.ReasonNodeNotReady || !strings.Contains(c.Message, ready.Message) {
		t.Errorf("Server condition NodeReady = %+v, want False, %s, with the Node's message %q", c, stargate.ReasonNodeNotReady, ready.Message)
	}
	if c := meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionReady); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Server condition Ready = %+v, want False", c)
	}
	t.Logf("Node NotReady %s after the kubelet stopped (grace period %s), Server Failed %s after", notReadyAfter.Round(time.Second), nodeMonitorGracePeriod, time.Since(stopped).Round(time.Second))
}

// waitServer waits until the Server satisfies done, or fails the test.
func (e *testEnv) waitServer(t *testing.T, name string, timeout time.Duration, done func(*v1.Server) bool) *v1.Server {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var s v1.Server
		if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: dc, Name: name}, &s); err != nil {
			t.Fatal(err)
		}
		if done(&s) {
			return &s
		}
		if time.Now().After(deadline) {
			t.Fatalf("Server %s did not get there within %s: phase %s, conditions %+v", name, timeout, s.Status.Phase, s.Status.Conditions)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func nodeCondition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

// statusWrittenBy says whether manager owns fields of the Node's status.
func statusWrittenBy(n *corev1.Node, manager string) bool {
	for _, f := range n.ManagedFields {
		if f.Manager == manager && f.Subresource == "status" {
			return true
		}
	}
	return false
}

func managers(n *corev1.Node) []string {
	var m []string
	for _, f := range n.ManagedFields {
		m = append(m, f.Manager+"/"+f.Subresource)
	}
	return m
}
