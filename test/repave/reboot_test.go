package repave

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/operations"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

// rebootDelay is how long the simulated host stays down: longer than
// kube-controller-manager's grace period, so the Node goes NotReady
// (Unknown) as a rebooting host's does.
const rebootDelay = nodeMonitorGracePeriod + 7*time.Second

// rebootScript stands in for a reboot of a simulated host (network
// namespaces of this machine cannot reboot): it stops the kubelet-standin
// of the host it runs on (the one in its network namespace), waits, and
// starts it again with the credentials it got at its bootstrap, as a
// kubelet comes back after a reboot.
func (e *testEnv) rebootScript(t *testing.T) string {
	t.Helper()
	path := filepath.Join(e.dir, "reboot.sh")
	script := dcsim.StandinRebootScript(e.stateDir, rebootDelay)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// A Reboot, asked for the way users do (kubectl create --raw
// .../servers/NAME/reboot), drains the Node, reboots the host over SSH
// through the jump host, waits for the Node to go down and come back
// Ready, and uncordons it.
func TestRebootDrainsRebootsAndUncordons(t *testing.T) {
	const name = "reboot-1"
	ns := env.drainNamespace(t, "reboot-1")
	env.startController(t, "reboot", "--reboot-command=bash "+env.rebootScript(t))
	env.provisioned(t, name, 36)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &podKubelet{t: t, ns: ns, node: name, when: map[string]time.Time{}}
	go k.run(ctx)
	makeBoundPods(t, ns, name, map[string]string{"app": "web"}, "web-1", "web-2")
	runs := env.runs(name)

	posted := time.Now()
	res := env.world.Kubectl.RunWithInput(ctx, `{"apiVersion":"stargate.io/v1alpha1","kind":"RebootRequest","reason":"kernel update"}`,
		"create", "--raw", "/apis/stargate.io/v1alpha1/namespaces/"+dc+"/servers/"+name+"/reboot", "-f", "-")
	if res.Err != nil {
		t.Fatalf("reboot: %v", res)
	}
	opName := between(res.Stdout, `"name":"`, `"`)
	op := env.waitOp(t, opName, 3*time.Minute, finished)
	took := time.Since(posted)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("reboot: %s: %s; steps %+v", op.Status.Phase, op.Status.Message, op.Status.Steps)
	}
	t.Logf("reboot took %s (host down %s)", took.Round(time.Millisecond), rebootDelay)
	st := stepStates(op)
	for _, s := range operations.RebootSteps {
		if st[s] != v1.StepSucceeded {
			t.Errorf("step %s is %q, want Succeeded", s, st[s])
		}
	}
	if len(op.Status.Steps) != len(operations.RebootSteps) {
		t.Errorf("steps %+v, want %v", op.Status.Steps, operations.RebootSteps)
	}
	if d := stepOf(op, operations.StepDrain); !strings.Contains(d.Message, "evicted 2 pods") {
		t.Errorf("DrainNode: %q", d.Message)
	}
	b, _ := os.ReadFile(filepath.Join(env.stateDir, name, "reboots"))
	if n := strings.Count(string(b), "reboot"); n != 1 {
		t.Errorf("the host was rebooted %d times, want 1", n)
	}
	if env.runs(name) != runs {
		t.Errorf("a reboot ran the bootstrap script")
	}
	var node corev1.Node
	if err := env.c.Get(ctx, client.ObjectKey{Name: name}, &node); err != nil {
		t.Fatal(err)
	}
	if node.Spec.Unschedulable {
		t.Errorf("Node %s is still cordoned after the reboot", name)
	}
	c := nodeCondition(&node, corev1.NodeReady)
	if c == nil || c.Status != corev1.ConditionTrue || c.LastTransitionTime.Time.Before(posted.Truncate(time.Second)) {
		t.Errorf("Node %s Ready condition %+v: want Ready again after the reboot", name, c)
	}
}
