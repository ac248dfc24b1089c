package repave

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/operations"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

// resetScript stands in for pkg/bootstrap/scripts/reset.sh on the
// simulated hosts, which share this machine's /etc: it stops the host's
// kubelet-standin (the one in its network namespace) and removes its
// kubeconfigs and certificates, and like the real one does nothing the
// second time.
func (e *testEnv) resetScript(t *testing.T) string {
	t.Helper()
	path := filepath.Join(e.dir, "reset.sh")
	script := dcsim.StandinResetScript(e.stateDir)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// decommission starts a Decommission with a plain create of an Operation
// (which claims the Server like servers/NAME/repave does).
func (e *testEnv) decommission(t *testing.T, server string) string {
	t.Helper()
	op := &v1.Operation{
		ObjectMeta: metav1.ObjectMeta{Namespace: dc, GenerateName: server + "-decommission-"},
		Spec: v1.OperationSpec{ServerRef: v1.LocalObjectReference{Name: server}, ProvisioningProfileRef: v1.LocalObjectReference{Name: "fast"},
			Operation: v1.OperationDecommission, Reason: "retired"},
	}
	if err := e.c.Create(context.Background(), op); err != nil {
		t.Fatalf("create Decommission of %s: %v", server, err)
	}
	return op.Name
}

// A Decommission drains the Node, resets the host over SSH (the stand-in
// kubelet stopped, its kubeconfigs and certificates gone) and deletes the
// Node; a second one finds nothing left and succeeds too.
func TestDecommissionDrainsResetsAndRemovesNode(t *testing.T) {
	const name = "decom-1"
	ns := env.drainNamespace(t, "decom-1")
	env.startController(t, "decommission", "--reset-script="+env.resetScript(t))
	env.provisioned(t, name, 38)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &podKubelet{t: t, ns: ns, node: name, when: map[string]time.Time{}}
	go k.run(ctx)
	makeBoundPods(t, ns, name, map[string]string{"app": "web"}, "web-1")
	state := filepath.Join(env.stateDir, name)
	pidb, err := os.ReadFile(filepath.Join(state, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, c := range strings.TrimSpace(string(pidb)) {
		pid = pid*10 + int(c-'0')
	}

	op := env.waitOp(t, env.decommission(t, name), 2*time.Minute, finished)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("decommission: %s: %s; steps %+v", op.Status.Phase, op.Status.Message, op.Status.Steps)
	}
	st := stepStates(op)
	for _, s := range operations.DecommissionSteps {
		if st[s] != v1.StepSucceeded {
			t.Errorf("step %s is %q, want Succeeded", s, st[s])
		}
	}
	if d := stepOf(op, operations.StepDrain); !strings.Contains(d.Message, "evicted 1 pods") {
		t.Errorf("DrainNode: %q", d.Message)
	}
	if !strings.Contains(op.Status.OutputTail, "reset "+name) {
		t.Errorf("the reset's output is not in status.outputTail: %q", op.Status.OutputTail)
	}
	// Host-side evidence: the stand-in stopped, its credentials gone.
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("kubelet-standin (pid %d) still runs after the reset", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, f := range []string{"kubelet.conf", "bootstrap-kubelet.conf"} {
		if _, err := os.Stat(filepath.Join(state, f)); !os.IsNotExist(err) {
			t.Errorf("%s is still on the host after the reset (%v)", f, err)
		}
	}
	var node corev1.Node
	if err := env.c.Get(ctx, client.ObjectKey{Name: name}, &node); !apierrors.IsNotFound(err) {
		t.Errorf("Node %s after the decommission: %v, want NotFound", name, err)
	}

	// Idempotent: again, on the reset host without a Node.
	op = env.waitOp(t, env.decommission(t, name), 2*time.Minute, finished)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("second decommission: %s: %s", op.Status.Phase, op.Status.Message)
	}
	if d := stepOf(op, operations.StepDrain); !strings.Contains(d.Message, "no Node") {
		t.Errorf("second DrainNode: %q", d.Message)
	}
}

// A Decommission of a server that cannot be reached still drains and
// deletes its Node (so its routes and pod CIDR can go), after the SSH
// attempts fail, with a Warning event saying what was left on the host.
func TestDecommissionOfUnreachableServerStillRemovesNode(t *testing.T) {
	const name = "decom-gone"
	env.startController(t, "decommission-gone", "--reset-script="+env.resetScript(t))
	env.provisioned(t, name, 39)
	ctx := context.Background()
	// The machine is gone: its address answers no more.
	var srv v1.Server
	if err := env.c.Get(ctx, client.ObjectKey{Namespace: dc, Name: name}, &srv); err != nil {
		t.Fatal(err)
	}
	// A merge patch: the controllers write the Server (finalizers, status)
	// at the same time, and an update would conflict with them.
	before := client.MergeFrom(srv.DeepCopy())
	srv.Spec.IPAddress, srv.Spec.HostKey = dcsim.UnusedWorkerIP, ""
	if err := env.c.Patch(ctx, &srv, before); err != nil {
		t.Fatal(err)
	}
	op := env.waitOp(t, env.decommission(t, name), 2*time.Minute, finished)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("decommission: %s: %s; steps %+v", op.Status.Phase, op.Status.Message, op.Status.Steps)
	}
	r := stepOf(op, operations.StepReset)
	if !strings.Contains(r.Message, "could not reset host") || !strings.Contains(r.Message, "kubelet may still run") {
		t.Errorf("ResetHost: %q; want what was left on the host", r.Message)
	}
	var node corev1.Node
	if err := env.c.Get(ctx, client.ObjectKey{Name: name}, &node); !apierrors.IsNotFound(err) {
		t.Errorf("Node %s after the decommission: %v, want NotFound", name, err)
	}
	env.waitWarningEvent(t, name, stargate.ReasonHostNotReset)
	got := env.waitServer(t, name, 20*time.Second, func(s *v1.Server) bool { return s.Status.NodeName == "" })
	t.Logf("Server after decommission: phase %s; reset step: %s", got.Status.Phase, r.Message)
}

// waitDecommissioned waits until deleted Server name is gone or holds
// finalizer stargate.io/decommission no more (the routes and pod CIDR
// finalizers are other controllers').
func waitDecommissioned(t *testing.T, name string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var s v1.Server
		err := env.c.Get(context.Background(), client.ObjectKey{Namespace: dc, Name: name}, &s)
		if apierrors.IsNotFound(err) || (err == nil && !slices.Contains(s.Finalizers, stargate.FinalizerDecommission)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted Server %s still held by %s after %s: %v %v", name, stargate.FinalizerDecommission, timeout, s.Finalizers, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitEvent(t *testing.T, reason, server string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var evs eventsv1.EventList
		if err := env.c.List(context.Background(), &evs, client.InNamespace(dc)); err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			if e.Reason == reason && e.Regarding.Name == server {
				return e.Note
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event %s on Server %s", reason, server)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Deleting a provisioned Server decommissions it first: the finalizer
// stargate.io/decommission holds it while its Node is drained, the host
// reset (the stand-in stopped, its kubeconfigs gone) and the Node deleted.
func TestDeletingServerDrainsResetsAndRemovesNode(t *testing.T) {
	const name = "delete-1"
	ns := env.drainNamespace(t, "delete-1")
	env.startController(t, "delete", "--reset-script="+env.resetScript(t))
	env.provisioned(t, name, 31)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &podKubelet{t: t, ns: ns, node: name, when: map[string]time.Time{}}
	go k.run(ctx)
	makeBoundPods(t, ns, name, map[string]string{"app": "web"}, "web-1")
	env.waitServer(t, name, 20*time.Second, func(s *v1.Server) bool {
		return slices.Contains(s.Finalizers, stargate.FinalizerDecommission)
	})
	state := filepath.Join(env.stateDir, name)
	pidb, err := os.ReadFile(filepath.Join(state, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))

	if err := env.c.Delete(ctx, &v1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: dc, Name: name}}); err != nil {
		t.Fatal(err)
	}
	waitDecommissioned(t, name, time.Minute)
	if ev, _ := k.order(); len(ev) != 1 || ev[0] != "web-1" {
		t.Errorf("evicted %v, want [web-1]", ev)
	}
	for stop := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(stop) {
			t.Errorf("kubelet-standin (pid %d) still runs after the Server was deleted", pid)
			break
		}
	}
	for _, f := range []string{"kubelet.conf", "bootstrap-kubelet.conf"} {
		if _, err := os.Stat(filepath.Join(state, f)); !os.IsNotExist(err) {
			t.Errorf("%s is still on the host (%v)", f, err)
		}
	}
	var node corev1.Node
	if err := env.c.Get(ctx, client.ObjectKey{Name: name}, &node); !apierrors.IsNotFound(err) {
		t.Errorf("Node %s after the Server's deletion: %v, want NotFound", name, err)
	}
	t.Logf("event: %s", waitEvent(t, stargate.ReasonDecommissioned, name))
}

// A deleted Server whose host cannot be reached still has its Node
// removed, with a Warning event saying what was left on the host; the
// finalizer does not hold it longer than --decommission-timeout.
func TestDeletingUnreachableServerStillRemovesNodeAfterTimeout(t *testing.T) {
	const name = "delete-gone"
	env.startController(t, "delete-gone", "--reset-script="+env.resetScript(t), "--decommission-timeout=20s")
	env.provisioned(t, name, 32)
	ctx := context.Background()
	srv := env.waitServer(t, name, 20*time.Second, func(s *v1.Server) bool {
		return slices.Contains(s.Finalizers, stargate.FinalizerDecommission)
	})
	before := client.MergeFrom(srv.DeepCopy())
	srv.Spec.IPAddress, srv.Spec.HostKey = dcsim.UnusedWorkerIP, ""
	if err := env.c.Patch(ctx, srv, before); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := env.c.Delete(ctx, srv); err != nil {
		t.Fatal(err)
	}
	waitDecommissioned(t, name, 40*time.Second)
	t.Logf("released after %s", time.Since(began).Round(time.Millisecond))
	var node corev1.Node
	if err := env.c.Get(ctx, client.ObjectKey{Name: name}, &node); !apierrors.IsNotFound(err) {
		t.Errorf("Node %s after the Server's deletion: %v, want NotFound", name, err)
	}
	note := waitEvent(t, stargate.ReasonHostNotReset, name)
	if !strings.Contains(note, "kubelet may still run") {
		t.Errorf("event %q does not say what was left on the host", note)
	}
	t.Logf("event: %s", note)
}

// A deleted Server whose drain a PodDisruptionBudget blocks for longer
// than --decommission-timeout is not held past it: the drain is cut at
// the timeout, the Node is deleted anyway, and a Warning event names the
// budget and what was left on the host.
func TestDeletingServerWhoseDrainIsBlockedIsReleasedAfterDecommissionTimeout(t *testing.T) {
	const name = "delete-pdb"
	const timeout = 20 * time.Second
	ns := env.drainNamespace(t, "delete-pdb")
	env.startController(t, "delete-pdb", "--reset-script="+env.resetScript(t), "--decommission-timeout="+timeout.String())
	env.provisioned(t, name, 33)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &podKubelet{t: t, ns: ns, node: name, when: map[string]time.Time{}}
	go k.run(ctx)
	labels := map[string]string{"app": "db"}
	makeBoundPods(t, ns, name, labels, "db-1")
	// The only replica must stay: the budget refuses every eviction.
	if err := env.c.Create(ctx, pdb(ns, "db", 1, labels)); err != nil {
		t.Fatal(err)
	}
	env.waitServer(t, name, 20*time.Second, func(s *v1.Server) bool {
		return slices.Contains(s.Finalizers, stargate.FinalizerDecommission)
	})

	began := time.Now()
	if err := env.c.Delete(ctx, &v1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: dc, Name: name}}); err != nil {
		t.Fatal(err)
	}
	waitDecommissioned(t, name, timeout+40*time.Second)
	took := time.Since(began)
	t.Logf("released after %s (--decommission-timeout %s; the profile's drain timeout is the default %s)", took.Round(time.Millisecond), timeout, operations.DefaultDrainTimeout)
	if took < timeout-5*time.Second {
		t.Errorf("released after %s, before the drain could have waited out --decommission-timeout %s", took, timeout)
	}
	var node corev1.Node
	if err := env.c.Get(ctx, client.ObjectKey{Name: name}, &node); !apierrors.IsNotFound(err) {
		t.Errorf("Node %s after the Server's deletion: %v, want NotFound", name, err)
	}
	if ev, _ := k.order(); len(ev) != 0 {
		t.Errorf("evicted %v, but the budget allowed no eviction", ev)
	}
	note := waitEvent(t, stargate.ReasonHostNotReset, name)
	for _, want := range []string{"--decommission-timeout", ns + "/db-1", "kubelet may still run"} {
		if !strings.Contains(note, want) {
			t.Errorf("event %q does not say %q", note, want)
		}
	}
	t.Logf("event: %s", note)
}
