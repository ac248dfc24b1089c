package repave

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/operations"
)

// podKubelet does for the pods bound to one stand-in Node what a kubelet
// does through the API (the stand-in runs no containers): it reports them
// Running and Ready, and removes an evicted (terminating) pod once its
// "containers stopped" (delete with grace 0). It records the order in
// which pods were evicted.
type podKubelet struct {
	t    *testing.T
	ns   string
	node string
	mu   sync.Mutex
	// evicted are the pods seen terminating, in order, with when.
	evicted []string
	when    map[string]time.Time
}

func (k *podKubelet) run(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var pods corev1.PodList
		if err := env.c.List(ctx, &pods, client.InNamespace(k.ns)); err == nil {
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.Spec.NodeName != k.node {
					continue
				}
				if p.DeletionTimestamp != nil {
					k.mu.Lock()
					if _, ok := k.when[p.Name]; !ok {
						k.when[p.Name] = time.Now()
						k.evicted = append(k.evicted, p.Name)
					}
					k.mu.Unlock()
					_ = env.c.Delete(ctx, p, client.GracePeriodSeconds(0))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (k *podKubelet) order() ([]string, map[string]time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	w := map[string]time.Time{}
	for n, t := range k.when {
		w[n] = t
	}
	return append([]string(nil), k.evicted...), w
}

// pods creates pods bound to node, reported Running and Ready as its
// kubelet would.
func makeBoundPods(t *testing.T, ns, node string, labels map[string]string, names ...string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}},
		}
		if err := env.c.Create(ctx, p); err != nil {
			t.Fatalf("create pod %s: %v", name, err)
		}
		now := metav1.Now()
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &now, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}}
		if err := env.c.Status().Update(ctx, p); err != nil {
			t.Fatalf("report pod %s Running: %v", name, err)
		}
	}
}

func (e *testEnv) drainNamespace(t *testing.T, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := e.c.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), ns) })
	return name
}

// repaveWith asks for a repave with the given extra RepaveRequest fields
// (JSON, e.g. `"force":true`).
func (e *testEnv) repaveWith(t *testing.T, server, extra string) string {
	t.Helper()
	body := `{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","reason":"test"`
	if extra != "" {
		body += "," + extra
	}
	body += "}"
	res := e.world.Kubectl.RunWithInput(context.Background(), body, "create", "--raw",
		"/apis/stargate.io/v1alpha1/namespaces/"+dc+"/servers/"+server+"/repave", "-f", "-")
	if res.Err != nil {
		t.Fatalf("repave %s: %v", server, res)
	}
	return between(res.Stdout, `"name":"`, `"`)
}

func (e *testEnv) provisioned(t *testing.T, server string, h int) {
	t.Helper()
	e.server(t, server, e.sim.Workers[h], nil)
	op := e.waitOp(t, e.repave(t, server, ""), 2*time.Minute, finished)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("first repave of %s: %s", server, op.Status.Message)
	}
}

func pdb(ns, name string, minAvailable int, labels map[string]string) *policyv1.PodDisruptionBudget {
	m := intstr.FromInt32(int32(minAvailable))
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &m, Selector: &metav1.LabelSelector{MatchLabels: labels}},
	}
}

func stepOf(op *v1.Operation, name string) v1.OperationStep {
	for _, s := range op.Status.Steps {
		if s.Name == name {
			return s
		}
	}
	return v1.OperationStep{}
}

// A repave drains the Node first: unprotected pods are evicted at once, a
// PodDisruptionBudget that allows no disruption keeps its pods (the
// eviction is refused, 429, and tried again) until it is removed, a mirror
// pod is left alone, and the DrainNode step records what was evicted.
func TestRepaveDrainsNodeRespectingPDB(t *testing.T) {
	const name = "drain-pdb"
	ns := env.drainNamespace(t, "drain-pdb")
	env.startController(t, "drain-pdb")
	env.provisioned(t, name, 34)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &podKubelet{t: t, ns: ns, node: name, when: map[string]time.Time{}}
	go k.run(ctx)

	guarded := map[string]string{"app": "guarded"}
	makeBoundPods(t, ns, name, map[string]string{"app": "free"}, "free-1", "free-2", "free-3")
	makeBoundPods(t, ns, name, guarded, "guarded-1", "guarded-2")
	mirror := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "static-" + name, Annotations: map[string]string{corev1.MirrorPodAnnotationKey: "x"}},
		Spec: corev1.PodSpec{NodeName: name, Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}}}
	if err := env.c.Create(ctx, mirror); err != nil {
		t.Fatalf("create mirror pod: %v", err)
	}
	budget := pdb(ns, "keep-two", 2, guarded)
	if err := env.c.Create(ctx, budget); err != nil {
		t.Fatal(err)
	}
	// The disruption controller of kube-controller-manager computes what
	// the budget allows.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var b policyv1.PodDisruptionBudget
		if err := env.c.Get(ctx, client.ObjectKeyFromObject(budget), &b); err != nil {
			t.Fatal(err)
		}
		if b.Status.ObservedGeneration == b.Generation && b.Status.CurrentHealthy == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PDB status not computed: %+v", b.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}

	opName := env.repaveWith(t, name, `"drainTimeout":"2m"`)
	// The free pods go; the guarded ones stay while the budget forbids it.
	env.waitOp(t, opName, time.Minute, func(*v1.Operation) bool {
		ev, _ := k.order()
		return len(ev) >= 3
	})
	time.Sleep(3 * time.Second)
	var node corev1.Node
	if err := env.c.Get(ctx, client.ObjectKey{Name: name}, &node); err != nil {
		t.Fatal(err)
	}
	if !node.Spec.Unschedulable {
		t.Errorf("Node %s is not cordoned during the drain", name)
	}
	ev, _ := k.order()
	for _, p := range ev {
		if strings.HasPrefix(p, "guarded") {
			t.Errorf("pod %s was evicted while its PodDisruptionBudget allowed no disruption (evicted: %v)", p, ev)
		}
	}
	if op := env.op(t, opName); stepOf(op, operations.StepDrain).State != v1.StepRunning || stepOf(op, operations.StepToken).State != v1.StepPending {
		t.Errorf("while the PDB blocks, DrainNode should run and nothing after it: %+v", op.Status.Steps)
	}
	allowed := time.Now()
	if err := env.c.Delete(ctx, budget); err != nil {
		t.Fatal(err)
	}
	op := env.waitOp(t, opName, 2*time.Minute, finished)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("repave: %s: %s", op.Status.Phase, op.Status.Message)
	}
	ev, when := k.order()
	t.Logf("evicted in order: %v", ev)
	for _, p := range []string{"guarded-1", "guarded-2"} {
		if w, ok := when[p]; !ok || w.Before(allowed) {
			t.Errorf("pod %s evicted at %v, before the PDB was removed at %v (or never)", p, w, allowed)
		}
	}
	for _, p := range []string{"free-1", "free-2", "free-3"} {
		if w, ok := when[p]; !ok || !w.Before(allowed) {
			t.Errorf("pod %s was not evicted before the PDB was removed", p)
		}
	}
	d := stepOf(op, operations.StepDrain)
	if d.State != v1.StepSucceeded || !strings.Contains(d.Message, "evicted 5 pods") || strings.Contains(d.Message, mirror.Name) {
		t.Errorf("DrainNode step: %s %q; want Succeeded, 5 pods evicted, the mirror pod untouched", d.State, d.Message)
	}
	if _, ok := when[mirror.Name]; ok {
		t.Errorf("the mirror pod was evicted")
	}
}

// With a short drainTimeout a PDB that never allows the eviction fails the
// repave without force (naming the budget and the pods, the Node
// uncordoned, nothing run on the host); with force the pods are deleted
// after the timeout, the step and a Warning event say so, and the repave
// goes on.
func TestForcedRepaveDeletesPDBProtectedPodsAfterDrainTimeout(t *testing.T) {
	const name = "drain-force"
	ns := env.drainNamespace(t, "drain-force")
	env.startController(t, "drain-force")
	env.provisioned(t, name, 35)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &podKubelet{t: t, ns: ns, node: name, when: map[string]time.Time{}}
	go k.run(ctx)
	guarded := map[string]string{"app": "guarded"}
	makeBoundPods(t, ns, name, guarded, "guarded-1")
	if err := env.c.Create(ctx, pdb(ns, "keep-one", 1, guarded)); err != nil {
		t.Fatal(err)
	}
	runs := env.runs(name)

	op := env.waitOp(t, env.repaveWith(t, name, `"drainTimeout":"5s"`), time.Minute, finished)
	c := meta.FindStatusCondition(op.Status.Conditions, stargate.ConditionSucceeded)
	if op.Status.Phase != v1.OperationFailed || c == nil || c.Reason != stargate.ReasonDrainBlocked ||
		!strings.Contains(op.Status.Message, ns+"/guarded-1") || !strings.Contains(op.Status.Message, "keep-one") {
		t.Fatalf("repave without force: %s %+v: %s", op.Status.Phase, c, op.Status.Message)
	}
	t.Logf("without force: %s", op.Status.Message)
	if env.runs(name) != runs {
		t.Errorf("the bootstrap script ran although the drain failed")
	}
	var node corev1.Node
	if err := env.c.Get(ctx, client.ObjectKey{Name: name}, &node); err != nil {
		t.Fatal(err)
	}
	if node.Spec.Unschedulable {
		t.Errorf("Node %s stays cordoned after the failed drain", name)
	}

	op = env.waitOp(t, env.repaveWith(t, name, `"drainTimeout":"5s","force":true`), 2*time.Minute, finished)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("forced repave: %s: %s", op.Status.Phase, op.Status.Message)
	}
	d := stepOf(op, operations.StepDrain)
	if !strings.Contains(d.Message, "(force)") || !strings.Contains(d.Message, ns+"/guarded-1") {
		t.Errorf("DrainNode step message does not say what force deleted: %q", d.Message)
	}
	env.waitWarningEvent(t, name, stargate.ReasonDrainForced)
}

// The measure of issue 11: time from the repave POST to Ready for a Node
// drained of 20 pods.
func TestRepaveOfNodeWithTwentyPodsTime(t *testing.T) {
	const name = "drain-twenty"
	ns := env.drainNamespace(t, "drain-twenty")
	env.startController(t, "drain-twenty")
	env.provisioned(t, name, 37)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &podKubelet{t: t, ns: ns, node: name, when: map[string]time.Time{}}
	go k.run(ctx)
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("p-%d", i))
	}
	makeBoundPods(t, ns, name, map[string]string{"app": "twenty"}, names...)
	start := time.Now()
	op := env.waitOp(t, env.repave(t, name, ""), 2*time.Minute, finished)
	took := time.Since(start)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("repave: %s", op.Status.Message)
	}
	d := stepOf(op, operations.StepDrain)
	if !strings.Contains(d.Message, "evicted 20 pods") {
		t.Errorf("DrainNode: %q", d.Message)
	}
	t.Logf("repave of a Node with 20 pods, POST to Ready: %s (DrainNode %s)", took.Round(time.Millisecond), d.CompletionTime.Sub(d.StartTime.Time))
}

// waitWarningEvent waits up to 20s for a Warning event with reason about
// the Server name in the datacenter namespace.
func (e *testEnv) waitWarningEvent(t *testing.T, name, reason string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var evs eventsv1.EventList
		if err := e.c.List(context.Background(), &evs, client.InNamespace(dc)); err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs.Items {
			if ev.Reason == reason && ev.Regarding.Name == name && ev.Type == corev1.EventTypeWarning {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Warning event %s on Server %s", reason, name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
