package repave

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/controller/rollout"
	"github.com/stargate-k8s/stargate/test/dcsim"
)

// rolloutServers are the Servers of the rollout tests: ro-0 ... ro-9 on
// workers 40 to 49, labelled rollout=tier, created if missing.
func (e *testEnv) rolloutServers(t *testing.T) []string {
	t.Helper()
	var names []string
	for i := 0; i < 10; i++ {
		name := fmt.Sprintf("ro-%d", i)
		names = append(names, name)
		s := dcsim.Server(dc, name, e.sim.Workers[40+i], "fast")
		s.Labels = map[string]string{"rollout": "tier"}
		if err := e.c.Create(context.Background(), s); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create Server %s: %v", name, err)
		}
	}
	return names
}

func (e *testEnv) createRollout(t *testing.T, name string, maxUnavailable intstr.IntOrString, profile string) *v1.ServerRollout {
	t.Helper()
	ro := &v1.ServerRollout{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: dc},
		Spec: v1.ServerRolloutSpec{
			Selector:       metav1.LabelSelector{MatchLabels: map[string]string{"rollout": "tier"}},
			MaxUnavailable: &maxUnavailable,
			Reason:         "test " + name,
		},
	}
	if profile != "" {
		ro.Spec.ProvisioningProfileRef = &v1.LocalObjectReference{Name: profile}
	}
	if err := e.c.Create(context.Background(), ro); err != nil {
		t.Fatalf("create ServerRollout %s: %v", name, err)
	}
	return ro
}

// waitRollout waits until the rollout has finished (completionTime set).
func (e *testEnv) waitRollout(t *testing.T, name string, timeout time.Duration) *v1.ServerRollout {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ro v1.ServerRollout
		if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: dc, Name: name}, &ro); err != nil {
			t.Fatal(err)
		}
		if ro.Status.CompletionTime != nil {
			return &ro
		}
		if time.Now().After(deadline) {
			t.Fatalf("ServerRollout %s did not finish within %s: %+v", name, timeout, ro.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// unavailableSampler counts, every interval, the named Servers whose Node
// is missing or not Ready, and keeps the highest count it saw.
type unavailableSampler struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	most    int
	samples int
}

func (e *testEnv) sampleUnavailable(names []string, interval time.Duration) *unavailableSampler {
	s := &unavailableSampler{stop: make(chan struct{}), done: make(chan struct{})}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(interval):
			}
			var nodes corev1.NodeList
			if err := e.c.List(context.Background(), &nodes); err != nil {
				continue
			}
			ready := 0
			for _, n := range nodes.Items {
				if !want[n.Name] {
					continue
				}
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
			s.mu.Lock()
			s.most = max(s.most, len(names)-ready)
			s.samples++
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *unavailableSampler) result() (most, samples int) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.most, s.samples
}

func rolloutOperations(t *testing.T, ro *v1.ServerRollout) []v1.Operation {
	t.Helper()
	var ops v1.OperationList
	if err := env.c.List(context.Background(), &ops, client.InNamespace(dc), client.MatchingLabels{rollout.LabelRolloutUID: string(ro.UID)}); err != nil {
		t.Fatal(err)
	}
	return ops.Items
}

// TestRolloutOfTenServersKeepsAtMostThreeUnavailable provisions ten
// Servers with one rollout (all at once: none has a Node yet), then rolls
// them again with maxUnavailable 3 while sampling their Nodes: never more
// than three are missing or not Ready, every Server gets exactly one
// Operation, and the rollout completes. It reports the rollout's time
// against the ideal, ceil(10/3) times one repave.
func TestRolloutOfTenServersKeepsAtMostThreeUnavailable(t *testing.T) {
	names := env.rolloutServers(t)
	env.startController(t, "rollout", "--max-concurrent-repaves=10", "--rollout-resync=2s")

	first := env.createRollout(t, "provision", intstr.FromString("100%"), "")
	done := env.waitRollout(t, first.Name, 4*time.Minute)
	if !meta.IsStatusConditionTrue(done.Status.Conditions, stargate.ConditionRolloutComplete) || done.Status.Succeeded != 10 {
		t.Fatalf("provisioning rollout did not complete: %+v", done.Status)
	}
	for _, n := range names {
		env.nodeReady(t, n)
	}

	sampler := env.sampleUnavailable(names, 100*time.Millisecond)
	start := time.Now()
	second := env.createRollout(t, "upgrade", intstr.FromInt32(3), "")
	done = env.waitRollout(t, second.Name, 6*time.Minute)
	total := time.Since(start)
	most, samples := sampler.result()

	if !meta.IsStatusConditionTrue(done.Status.Conditions, stargate.ConditionRolloutComplete) {
		t.Fatalf("rollout did not complete: %+v", done.Status.Conditions)
	}
	if done.Status.Succeeded != 10 || done.Status.Total != 10 || done.Status.Failed != 0 {
		t.Errorf("rollout counts: %d of %d succeeded, %d failed; want 10 of 10, 0", done.Status.Succeeded, done.Status.Total, done.Status.Failed)
	}
	ops := rolloutOperations(t, done)
	perServer := map[string]int{}
	var repave time.Duration
	for _, op := range ops {
		perServer[op.Labels[stargate.LabelServer]]++
		if op.Status.Phase != v1.OperationSucceeded {
			t.Errorf("Operation %s: %s %s", op.Name, op.Status.Phase, op.Status.Message)
			continue
		}
		repave += op.Status.CompletionTime.Sub(op.CreationTimestamp.Time)
	}
	for _, n := range names {
		if perServer[n] != 1 {
			t.Errorf("Server %s got %d Operations from the rollout, want exactly 1", n, perServer[n])
		}
		env.nodeReady(t, n)
	}
	if most > 3 {
		t.Errorf("%d of the 10 Servers were unavailable at once (of %d samples), want at most 3", most, samples)
	}
	if most < 2 {
		t.Errorf("at most %d Server was unavailable at once (of %d samples): the rollout did not run Servers in parallel", most, samples)
	}
	if len(ops) > 0 {
		mean := repave / time.Duration(len(ops))
		ideal := time.Duration(math.Ceil(10.0/3.0)) * mean
		t.Logf("rollout of 10 Servers at maxUnavailable 3: %s; mean repave %s; ideal ceil(10/3) x repave = %s; ratio %.2f; most unavailable %d (%d samples)",
			total.Round(time.Millisecond), mean.Round(time.Millisecond), ideal.Round(time.Millisecond), float64(total)/float64(ideal), most, samples)
	}
}

// TestRolloutStopsAtFirstFailure rolls the ten Servers with a profile
// whose script fails on ro-4: the rollout stops starting Operations, its
// Failed condition names ro-4 and its Operation, the Servers it had not
// reached keep no Operation, and it finishes once the running ones end.
func TestRolloutStopsAtFirstFailure(t *testing.T) {
	ctx := context.Background()
	names := env.rolloutServers(t)
	script := `. ./stargate.env
if [ "$STARGATE_NODE_NAME" = ro-4 ]; then echo "ro-4 is made to fail" >&2; exit 3; fi
` + dcsim.StandinScriptWithHeartbeat(env.stateDir, env.standin, 0, standinHeartbeat)
	for _, o := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "rollout-scripts", Namespace: dc}, Data: map[string]string{"fail.sh": script}},
		&v1.ProvisioningProfile{ObjectMeta: metav1.ObjectMeta{Name: "fail-on-ro-4", Namespace: dc}, Spec: v1.ProvisioningProfileSpec{
			KubernetesVersion:       "1.37",
			AdminUsername:           "root",
			SSHCredentialsSecretRef: &v1.LocalObjectReference{Name: dcsim.SSHSecret},
			BootstrapScriptRef:      &v1.ConfigMapKeyReference{Name: "rollout-scripts", Key: "fail.sh"},
		}},
	} {
		if err := env.c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	env.startController(t, "rollout-fail", "--max-concurrent-repaves=10", "--rollout-resync=2s")
	ro := env.createRollout(t, "stops", intstr.FromInt32(3), "fail-on-ro-4")
	done := env.waitRollout(t, ro.Name, 5*time.Minute)

	failed := meta.FindStatusCondition(done.Status.Conditions, stargate.ConditionRolloutFailed)
	if failed == nil || failed.Status != metav1.ConditionTrue || failed.Reason != stargate.ReasonTooManyFailures {
		t.Fatalf("want Failed=True reason %s, got %+v", stargate.ReasonTooManyFailures, done.Status.Conditions)
	}
	if !strings.Contains(failed.Message, "ro-4") {
		t.Errorf("Failed condition does not name ro-4: %q", failed.Message)
	}
	if meta.IsStatusConditionTrue(done.Status.Conditions, stargate.ConditionRolloutComplete) {
		t.Errorf("a stopped rollout says Complete: %+v", done.Status.Conditions)
	}
	started := map[string]v1.OperationPhase{}
	for _, op := range rolloutOperations(t, done) {
		started[op.Labels[stargate.LabelServer]] = op.Status.Phase
		if op.Status.Phase != v1.OperationSucceeded && op.Status.Phase != v1.OperationFailed {
			t.Errorf("Operation %s is still %s after the rollout finished", op.Name, op.Status.Phase)
		}
	}
	if started["ro-4"] != v1.OperationFailed {
		t.Errorf("ro-4's Operation: %q, want Failed", started["ro-4"])
	}
	var notReached []string
	for _, s := range done.Status.Servers {
		if _, ok := started[s.Name]; !ok {
			if s.State != v1.RolloutServerWaiting || s.Operation != "" {
				t.Errorf("Server %s has no Operation but status says %s %q", s.Name, s.State, s.Operation)
			}
			notReached = append(notReached, s.Name)
		}
	}
	sort.Strings(notReached)
	// Three run at a time in name order, so ro-4 starts in the second wave
	// at the latest and fails at once; at most ro-5 and ro-6 start beside it.
	if len(notReached) < 3 {
		t.Errorf("the rollout went on after ro-4 failed: only %v were not reached", notReached)
	}
	for _, n := range notReached {
		if n < "ro-5" {
			t.Errorf("Server %s before ro-4's wave was never started", n)
		}
	}
	t.Logf("Failed condition: %s; not reached: %v (of %d)", failed.Message, notReached, len(names))
	if done.Status.Failed != 1 || int(done.Status.Total) != len(names) {
		t.Errorf("counts: failed %d total %d", done.Status.Failed, done.Status.Total)
	}
}

// TestRolloutResumesAfterControllerKilled kills stargate-controller
// (SIGKILL) while a rollout's first Operations run and starts a new one:
// the rollout finishes, and every Server still has exactly one Operation
// of it (none lost, none started twice).
func TestRolloutResumesAfterControllerKilled(t *testing.T) {
	names := env.rolloutServers(t)
	first := env.startController(t, "rollout-kill", "--max-concurrent-repaves=10", "--rollout-resync=2s")
	ro := env.createRollout(t, "resumes", intstr.FromInt32(5), "slow")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var cur v1.ServerRollout
		if err := env.c.Get(context.Background(), client.ObjectKeyFromObject(ro), &cur); err != nil {
			t.Fatal(err)
		}
		if cur.Status.Running > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout started no Operation within 2m: %+v", cur.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	first.kill()
	env.startController(t, "rollout-kill-2", "--max-concurrent-repaves=10", "--rollout-resync=2s")
	done := env.waitRollout(t, ro.Name, 5*time.Minute)
	if !meta.IsStatusConditionTrue(done.Status.Conditions, stargate.ConditionRolloutComplete) || done.Status.Succeeded != int32(len(names)) {
		t.Fatalf("rollout did not complete after the restart: %+v", done.Status)
	}
	perServer := map[string]int{}
	for _, op := range rolloutOperations(t, done) {
		perServer[op.Labels[stargate.LabelServer]]++
	}
	for _, n := range names {
		if perServer[n] != 1 {
			t.Errorf("Server %s got %d Operations from the rollout, want exactly 1", n, perServer[n])
		}
	}
}
