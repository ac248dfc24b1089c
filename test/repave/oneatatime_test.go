package repave

// One bootstrap at a time per server (issue 10, part 7): an Operation runs
// only when the Server's claim names it, and a script that timed out, or
// whose Operation was deleted, is stopped on the host before another
// starts. The checks look at the processes on the simulated host, in its
// network namespace.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/operations"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

const oneAtATimeScripts = "one-at-a-time-scripts"

var oneAtATimeOnce sync.Once

// oneAtATimeProfiles makes two profiles: "hang", whose script leaves a
// marker process in the background (its pid in the node's state directory,
// marker-<operation UID>) and then hangs; and "check", which records
// whether any marker process still runs when it starts
// (check-<operation UID>) and then bootstraps the stand-in like "fast".
func (e *testEnv) oneAtATimeProfiles(t *testing.T) {
	t.Helper()
	oneAtATimeOnce.Do(func() {
		prelude := `. ./stargate.env
state=` + e.stateDir + `/"$STARGATE_NODE_NAME"
op=$(basename "$PWD")
mkdir -p "$state"
`
		hang := "#!/bin/bash\n" + prelude + `sleep 3600 &
echo $! >"$state/marker-$op"
echo "hanging with marker process $!"
sleep 3600
`
		standin := dcsim.StandinScriptWithHeartbeat(e.stateDir, e.standin, 0, standinHeartbeat)
		check := "#!/bin/bash\n" + prelude + `alive=none
for m in "$state"/marker-*; do
  [ -e "$m" ] || continue
  st=$(awk '{print $3}' "/proc/$(cat "$m")/stat" 2>/dev/null || true)
  if [ -n "$st" ] && [ "$st" != Z ]; then alive="$alive $(cat "$m")"; fi
done
echo "$alive" >"$state/check-$op"
` + strings.TrimPrefix(standin, "#!/bin/bash\n")
		ctx := context.Background()
		objs := []client.Object{&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: oneAtATimeScripts, Namespace: dc},
			Data:       map[string]string{"hang.sh": hang, "check.sh": check},
		}}
		for _, name := range []string{"hang", "check"} {
			objs = append(objs, &v1.ProvisioningProfile{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: dc},
				Spec: v1.ProvisioningProfileSpec{
					KubernetesVersion:       "1.37",
					AdminUsername:           "root",
					SSHCredentialsSecretRef: &v1.LocalObjectReference{Name: dcsim.SSHSecret},
					BootstrapScriptRef:      &v1.ConfigMapKeyReference{Name: oneAtATimeScripts, Key: name + ".sh"},
				},
			})
		}
		for _, o := range objs {
			if err := e.c.Create(ctx, o); err != nil {
				t.Fatalf("create %T %s: %v", o, o.GetName(), err)
			}
		}
	})
}

// marker waits for the marker process of Operation op on node and returns
// its pid.
func (e *testEnv) marker(t *testing.T, node string, op *v1.Operation) string {
	t.Helper()
	f := filepath.Join(e.stateDir, node, "marker-"+string(op.UID))
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if b, _ := os.ReadFile(f); strings.HasSuffix(string(b), "\n") {
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("the hang script of Operation %s did not start on %s", op.Name, node)
	return ""
}

// runsOnHost says whether process pid runs on host h: it exists, has not
// ended (a zombie has) and lives in h's network namespace. The check runs
// in that namespace, as a process check on the host would.
func (e *testEnv) runsOnHost(t *testing.T, h *dcsim.Host, pid string) bool {
	t.Helper()
	out, err := e.sim.Exec(h, "sh", "-c", fmt.Sprintf(
		`st=$(awk '{print $3}' /proc/%[1]s/stat 2>/dev/null); if [ -n "$st" ] && [ "$st" != Z ] && [ "$(readlink /proc/%[1]s/ns/net)" = "$(readlink /proc/self/ns/net)" ]; then echo running; else echo gone; fi`, pid))
	if err != nil {
		t.Fatalf("process check on %s: %v: %s", h.Name, err, out)
	}
	return strings.TrimSpace(string(out)) == "running"
}

func (e *testEnv) checkResult(t *testing.T, node string, op *v1.Operation) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.stateDir, node, "check-"+string(op.UID)))
	if err != nil {
		t.Fatalf("the check script of Operation %s left no result: %v", op.Name, err)
	}
	return strings.TrimSpace(string(b))
}

func (e *testEnv) getServer(t *testing.T, name string) *v1.Server {
	t.Helper()
	var s v1.Server
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: dc, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// An Operation its Server's claim does not name never runs. Every way of
// creating an Operation takes the claim (status.lastOperation), so the
// attack is a stale Operation: made while no controller ran, and then its
// Server's claim handed to another (someone with servers/status rewrote
// it). The controller fails it without a connection, a token or a run on
// the host, and leaves the Server's status alone.
func TestOperationNotNamedByClaimDoesNotRun(t *testing.T) {
	const name = "claim-1"
	ctx := context.Background()
	env.server(t, name, env.sim.Workers[25], nil)
	stale := env.op(t, env.repave(t, name, "fast"))
	s := env.getServer(t, name)
	if s.Status.LastOperation != stale.Name {
		t.Fatalf("repave %s did not claim Server %s: status.lastOperation %q", stale.Name, name, s.Status.LastOperation)
	}
	s.Status.LastOperation = "claim-1-other"
	if err := env.c.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	phase := env.getServer(t, name).Status.Phase
	env.startController(t, "claim")
	op := env.waitOp(t, stale.Name, time.Minute, finished)
	if op.Status.Phase != v1.OperationFailed || len(op.Status.Conditions) != 1 || op.Status.Conditions[0].Reason != stargate.ReasonNotClaimed {
		t.Fatalf("Operation %s: phase %s, conditions %+v; want Failed, reason %s", op.Name, op.Status.Phase, op.Status.Conditions, stargate.ReasonNotClaimed)
	}
	if !strings.Contains(op.Status.Message, "claimed by Operation claim-1-other") {
		t.Errorf("message %q does not name the claim's holder", op.Status.Message)
	}
	if st := stepStates(op); st[operations.StepConnect] != v1.StepPending || st[operations.StepToken] != v1.StepPending {
		t.Errorf("Operation %s got past ResolveReferences: %v", op.Name, st)
	}
	env.noTokenLeft(t, op)
	if n := env.runs(name); n != 0 {
		t.Errorf("the script ran %d times for an Operation the Server does not run", n)
	}
	if s := env.getServer(t, name); s.Status.LastOperation != "claim-1-other" || s.Status.Phase != phase {
		t.Errorf("the refused Operation changed the Server's status: lastOperation %q, phase %q (was %q)", s.Status.LastOperation, s.Status.Phase, phase)
	}
}

// A script that runs past --bootstrap-script-timeout is stopped on the
// host, with what it started, before its Operation fails; the next repave
// of the server finds none of it running when its own script starts.
func TestTimedOutScriptIsStoppedOnHostBeforeNextRepave(t *testing.T) {
	const name = "stop-timeout"
	h := env.sim.Workers[26]
	env.oneAtATimeProfiles(t)
	env.server(t, name, h, nil)
	env.startController(t, "stop-timeout", "--bootstrap-script-timeout=8s")
	first := env.waitOp(t, env.repave(t, name, "hang"), time.Minute, func(op *v1.Operation) bool {
		return stepStates(op)[operations.StepScript] == v1.StepRunning
	})
	pid := env.marker(t, name, first)
	if !env.runsOnHost(t, h, pid) {
		t.Fatalf("marker process %s does not run on %s", pid, h.Name)
	}
	first = env.waitOp(t, first.Name, time.Minute, finished)
	// Checked the moment the Operation ended: the stop comes first.
	if env.runsOnHost(t, h, pid) {
		t.Errorf("marker process %s of the timed-out script still runs on %s after Operation %s ended", pid, h.Name, first.Name)
	}
	if first.Status.Phase != v1.OperationFailed || !strings.Contains(first.Status.Message, "did not finish within 8s") ||
		!strings.Contains(first.Status.Message, "it was stopped on the host") {
		t.Errorf("Operation %s: phase %s, message %q; want Failed, timed out and stopped", first.Name, first.Status.Phase, first.Status.Message)
	}
	env.noTokenLeft(t, first)
	second := env.waitOp(t, env.repave(t, name, "check"), 2*time.Minute, finished)
	if second.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("Operation %s: %s\n%s", second.Name, second.Status.Message, second.Status.OutputTail)
	}
	if got := env.checkResult(t, name, second); got != "none" {
		t.Errorf("marker processes running when the second script started: %s", got)
	}
}

// A script whose controller was killed and whose Operation was then
// deleted (so no controller ever stopped it) still runs on the host; the
// next repave's runner stops it before its own script starts, and says so.
func TestOrphanedScriptIsStoppedBeforeNextRepave(t *testing.T) {
	const name = "stop-orphan"
	h := env.sim.Workers[27]
	env.oneAtATimeProfiles(t)
	env.server(t, name, h, nil)
	ctl := env.startController(t, "stop-orphan-1")
	first := env.waitOp(t, env.repave(t, name, "hang"), time.Minute, func(op *v1.Operation) bool {
		return stepStates(op)[operations.StepScript] == v1.StepRunning
	})
	pid := env.marker(t, name, first)
	ctl.kill()
	if err := env.c.Delete(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if !env.runsOnHost(t, h, pid) {
		t.Fatalf("marker process %s stopped with no controller running; the test shows nothing", pid)
	}
	env.startController(t, "stop-orphan-2")
	second := env.waitOp(t, env.repave(t, name, "check"), 2*time.Minute, finished)
	if second.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("Operation %s: %s\n%s", second.Name, second.Status.Message, second.Status.OutputTail)
	}
	if got := env.checkResult(t, name, second); got != "none" {
		t.Errorf("marker processes running when the second script started: %s", got)
	}
	if env.runsOnHost(t, h, pid) {
		t.Errorf("marker process %s of the orphaned script still runs on %s", pid, h.Name)
	}
	var msg string
	for _, s := range second.Status.Steps {
		if s.Name == operations.StepScript {
			msg = s.Message
		}
	}
	if !strings.Contains(msg, string(first.UID)) || !strings.Contains(msg, "was stopped on the host") {
		t.Errorf("step %s message %q does not say the script of Operation %s was stopped", operations.StepScript, msg, first.UID)
	}
}

// Deleting an Operation while its script runs stops the script on the
// host, deletes its bootstrap token and says so in the Server's status.
func TestDeletedOperationStopsItsScript(t *testing.T) {
	const name = "stop-deleted"
	h := env.sim.Workers[28]
	env.oneAtATimeProfiles(t)
	env.server(t, name, h, nil)
	env.startController(t, "stop-deleted")
	op := env.waitOp(t, env.repave(t, name, "hang"), time.Minute, func(op *v1.Operation) bool {
		return stepStates(op)[operations.StepScript] == v1.StepRunning
	})
	pid := env.marker(t, name, op)
	if !env.runsOnHost(t, h, pid) {
		t.Fatalf("marker process %s does not run on %s", pid, h.Name)
	}
	deleted := time.Now()
	if err := env.c.Delete(context.Background(), op); err != nil {
		t.Fatal(err)
	}
	for env.runsOnHost(t, h, pid) {
		if time.Since(deleted) > 30*time.Second {
			t.Fatalf("marker process %s still runs on %s 30s after Operation %s was deleted", pid, h.Name, op.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("script stopped %s after the Operation was deleted", time.Since(deleted).Round(time.Millisecond))
	var cond *metav1.Condition
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		s := env.getServer(t, name)
		for i := range s.Status.Conditions {
			if c := s.Status.Conditions[i]; c.Type == stargate.ConditionProvisioned && c.Reason == stargate.ReasonOperationDeleted {
				cond = &c
			}
		}
		if cond != nil {
			break
		}
	}
	if cond == nil || !strings.Contains(cond.Message, "its bootstrap script was stopped on the host") {
		t.Errorf("Server %s condition %s: %+v; want reason %s saying the script was stopped", name, stargate.ConditionProvisioned, cond, stargate.ReasonOperationDeleted)
	}
	env.noTokenLeft(t, op)
}

// After a controller restart the resumed script step keeps the deadline
// of its recorded start: it does not get a new --bootstrap-script-timeout
// per restart.
func TestResumedScriptKeepsItsDeadline(t *testing.T) {
	const name = "resume-deadline"
	const timeout = 20 * time.Second
	h := env.sim.Workers[29]
	env.oneAtATimeProfiles(t)
	env.server(t, name, h, nil)
	ctl := env.startController(t, "resume-deadline-1", "--bootstrap-script-timeout="+timeout.String())
	op := env.waitOp(t, env.repave(t, name, "hang"), time.Minute, func(op *v1.Operation) bool {
		return stepStates(op)[operations.StepScript] == v1.StepRunning
	})
	pid := env.marker(t, name, op)
	ctl.kill()
	time.Sleep(10 * time.Second)
	env.startController(t, "resume-deadline-2", "--bootstrap-script-timeout="+timeout.String())
	op = env.waitOp(t, op.Name, 2*time.Minute, finished)
	var started, ended time.Time
	for _, s := range op.Status.Steps {
		if s.Name == operations.StepScript && s.StartTime != nil && s.CompletionTime != nil {
			started, ended = s.StartTime.Time, s.CompletionTime.Time
		}
	}
	took := ended.Sub(started)
	t.Logf("the script step took %s with %s timeout and a 10s restart", took, timeout)
	// A new timeout from the restart would end it after >= 10s + 20s.
	if op.Status.Phase != v1.OperationFailed || took > timeout+8*time.Second {
		t.Errorf("Operation %s: phase %s after %s (%q); want Failed within the %s of its step, not a new timeout after the restart", op.Name, op.Status.Phase, took, op.Status.Message, timeout)
	}
	if env.runsOnHost(t, h, pid) {
		t.Errorf("marker process %s still runs after the resumed step timed out", pid)
	}
}
