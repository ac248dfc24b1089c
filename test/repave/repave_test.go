package repave

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/controller/operations"
)

func stepStates(op *v1.Operation) map[string]v1.StepState {
	m := map[string]v1.StepState{}
	for _, s := range op.Status.Steps {
		m[s.Name] = s.State
	}
	return m
}

func (e *testEnv) runs(node string) int {
	b, _ := os.ReadFile(filepath.Join(e.stateDir, node, "runs"))
	return strings.Count(string(b), "run")
}

func (e *testEnv) noTokenLeft(t *testing.T, op *v1.Operation) {
	t.Helper()
	var list corev1.SecretList
	if err := e.c.List(context.Background(), &list, client.InNamespace("kube-system"), client.MatchingLabels{bootstrap.LabelOperation: string(op.UID)}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("bootstrap token %s left behind after Operation %s", list.Items[0].Name, op.Name)
	}
}

func (e *testEnv) nodeReady(t *testing.T, name string) *corev1.Node {
	t.Helper()
	var n corev1.Node
	if err := e.c.Get(context.Background(), client.ObjectKey{Name: name}, &n); err != nil {
		t.Fatalf("Node %s: %v", name, err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return &n
		}
	}
	t.Fatalf("Node %s is not Ready: %+v", name, n.Status.Conditions)
	return nil
}

func TestRepaveThroughJumpHostMakesReadyNode(t *testing.T) {
	w := env.sim.Workers[0]
	env.server(t, "worker-1", w, nil)
	ctl := env.startController(t, "jump")
	name := env.repave(t, "worker-1", "")
	op := env.waitOp(t, name, 2*time.Minute, finished)
	defer func() {
		log, _ := os.ReadFile(ctl.log)
		if m := finishedLine.FindString(string(log)); m != "" {
			t.Log(m)
		}
	}()
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("Operation %s: %s: %s\noutput:\n%s", name, op.Status.Phase, op.Status.Message, op.Status.OutputTail)
	}
	states := stepStates(op)
	for _, s := range operations.RepaveSteps {
		if states[s] != v1.StepSucceeded {
			t.Errorf("step %s is %q, want Succeeded", s, states[s])
		}
	}
	for _, s := range op.Status.Steps {
		if s.StartTime == nil || s.CompletionTime == nil {
			t.Errorf("step %s lacks start or completion time", s.Name)
		}
	}
	c := meta.FindStatusCondition(op.Status.Conditions, stargate.ConditionSucceeded)
	if c == nil || c.Status != "True" {
		t.Errorf("condition Succeeded: %+v", c)
	}
	if !strings.Contains(op.Status.OutputTail, "kubelet-standin started for worker-1") || !strings.Contains(op.Status.OutputTail, "[REDACTED]") {
		t.Errorf("output tail lacks the script's output or its redaction:\n%s", op.Status.OutputTail)
	}

	node := env.nodeReady(t, "worker-1")
	for k, v := range map[string]string{stargate.LabelServer: "worker-1", stargate.LabelDatacenter: dc, bootstrap.LabelAzureManaged: "false", "example.com/rack": "r1"} {
		if node.Labels[k] != v {
			t.Errorf("Node label %s=%q, want %q", k, node.Labels[k], v)
		}
	}
	var srv v1.Server
	if err := env.c.Get(context.Background(), client.ObjectKey{Namespace: dc, Name: "worker-1"}, &srv); err != nil {
		t.Fatal(err)
	}
	if srv.Status.Phase != v1.ServerReady || srv.Status.NodeName != "worker-1" || srv.Status.LastOperation != name {
		t.Errorf("Server status: phase %s node %s lastOperation %s", srv.Status.Phase, srv.Status.NodeName, srv.Status.LastOperation)
	}
	// Ready also summarises RoutesReady, which the routes controller owns.
	for _, ct := range []string{stargate.ConditionProvisioned, stargate.ConditionNodeReady} {
		if c := meta.FindStatusCondition(srv.Status.Conditions, ct); c == nil || c.Status != "True" {
			t.Errorf("Server condition %s: %+v", ct, c)
		}
	}
	env.noTokenLeft(t, op)

	// The kubelet's serving CSR was approved by stargate-controller (its
	// names match the Server) and signed by kube-controller-manager.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var csrs certificatesv1.CertificateSigningRequestList
		if err := env.c.List(context.Background(), &csrs); err != nil {
			t.Fatal(err)
		}
		signed := false
		for _, c := range csrs.Items {
			if c.Spec.SignerName == certificatesv1.KubeletServingSignerName && c.Spec.Username == "system:node:worker-1" && len(c.Status.Certificate) > 0 {
				signed = true
			}
		}
		if signed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the serving CSR of worker-1 was not approved and signed")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The path really went through the router: the router's sshd logged
	// our login, and the worker saw it come from the router's address.
	rlog, _ := os.ReadFile(env.sim.Router.SSHDLog)
	if !strings.Contains(string(rlog), "Accepted publickey for root") {
		t.Errorf("router sshd logged no login")
	}
	wlog, _ := os.ReadFile(w.SSHDLog)
	if !strings.Contains(string(wlog), "Accepted publickey for root from 192.0.2.1 ") {
		t.Errorf("worker login did not come from the router:\n%s", wlog)
	}
}

func TestWrongHostKeyFailsWithoutSession(t *testing.T) {
	w := env.sim.Workers[1]
	wrong := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(env.sim.Router.HostSigner.PublicKey())))
	env.server(t, "worker-2", w, func(s *v1.Server) { s.Spec.HostKey = wrong })
	before, _ := os.ReadFile(w.SSHDLog)
	env.startController(t, "hostkey")
	name := env.repave(t, "worker-2", "")
	op := env.waitOp(t, name, time.Minute, finished)
	if op.Status.Phase != v1.OperationFailed {
		t.Fatalf("phase %s, want Failed", op.Status.Phase)
	}
	c := meta.FindStatusCondition(op.Status.Conditions, stargate.ConditionSucceeded)
	if c == nil || c.Reason != stargate.ReasonHostKeyMismatch {
		t.Fatalf("condition: %+v, want reason HostKeyMismatch", c)
	}
	want := ssh.FingerprintSHA256(env.sim.Router.HostSigner.PublicKey())
	got := ssh.FingerprintSHA256(w.HostSigner.PublicKey())
	if !strings.Contains(c.Message, want) || !strings.Contains(c.Message, got) {
		t.Errorf("message lacks both fingerprints (%s, %s): %s", want, got, c.Message)
	}
	if stepStates(op)[operations.StepConnect] != v1.StepFailed || stepStates(op)[operations.StepScript] != v1.StepPending {
		t.Errorf("steps: %v", stepStates(op))
	}
	time.Sleep(200 * time.Millisecond)
	after, _ := os.ReadFile(w.SSHDLog)
	newLog := strings.TrimPrefix(string(after), string(before))
	if strings.Contains(newLog, "Accepted publickey") || strings.Contains(newLog, "session") {
		t.Errorf("the worker's sshd opened a session:\n%s", newLog)
	}
	if env.runs("worker-2") != 0 {
		t.Errorf("the script ran")
	}
	env.noTokenLeft(t, op)
	var srv v1.Server
	_ = env.c.Get(context.Background(), client.ObjectKey{Namespace: dc, Name: "worker-2"}, &srv)
	if pc := meta.FindStatusCondition(srv.Status.Conditions, stargate.ConditionProvisioned); srv.Status.Phase != v1.ServerFailed || pc == nil || pc.Reason != stargate.ReasonHostKeyMismatch {
		t.Errorf("Server: phase %s, Provisioned %+v", srv.Status.Phase, pc)
	}
}

func TestUnreachableWorkerRetriesThenFails(t *testing.T) {
	env.server(t, "worker-gone", nil, func(s *v1.Server) {
		s.Spec.HostKey = env.sim.Workers[0].HostKey
	})
	ctl := env.startController(t, "unreachable")
	name := env.repave(t, "worker-gone", "")
	op := env.waitOp(t, name, 2*time.Minute, finished)
	if op.Status.Phase != v1.OperationFailed {
		t.Fatalf("phase %s, want Failed", op.Status.Phase)
	}
	c := meta.FindStatusCondition(op.Status.Conditions, stargate.ConditionSucceeded)
	if c == nil || c.Reason != stargate.ReasonUnreachable || !strings.Contains(c.Message, "gave up after 3 attempts") || !strings.Contains(c.Message, "through router") {
		t.Fatalf("condition: %+v", c)
	}
	log, _ := os.ReadFile(ctl.log)
	if n := strings.Count(string(log), "SSH connection failed, retrying"); n != 2 {
		t.Errorf("controller logged %d retries, want 2", n)
	}
	env.noTokenLeft(t, op)
	var list corev1.SecretList
	_ = env.c.List(context.Background(), &list, client.InNamespace("kube-system"), client.MatchingLabels{bootstrap.LabelServer: "worker-gone"})
	if len(list.Items) != 0 {
		t.Errorf("token left for worker-gone")
	}
}

func TestControllerKilledMidOperationResumes(t *testing.T) {
	w := env.sim.Workers[2]
	env.server(t, "worker-3", w, nil)
	ctl := env.startController(t, "kill-1")
	name := env.repave(t, "worker-3", "slow")
	// The slow script sleeps 6s: kill while it runs.
	op := env.waitOp(t, name, time.Minute, func(op *v1.Operation) bool {
		return stepStates(op)[operations.StepScript] == v1.StepRunning && env.runs("worker-3") == 1
	})
	ctl.kill()
	killed := op.DeepCopy()
	time.Sleep(500 * time.Millisecond)
	env.startController(t, "kill-2")
	op = env.waitOp(t, name, 2*time.Minute, finished)
	if op.Status.Phase != v1.OperationSucceeded {
		t.Fatalf("phase %s: %s\n%s", op.Status.Phase, op.Status.Message, op.Status.OutputTail)
	}
	if n := env.runs("worker-3"); n != 1 {
		t.Errorf("the script ran %d times, want once", n)
	}
	for _, before := range killed.Status.Steps {
		if before.State != v1.StepSucceeded && before.State != v1.StepRunning {
			continue
		}
		for _, after := range op.Status.Steps {
			if after.Name == before.Name && !after.StartTime.Equal(before.StartTime) {
				t.Errorf("step %s started again after the restart (%v, then %v)", before.Name, before.StartTime, after.StartTime)
			}
		}
	}
	var tokens corev1.SecretList
	_ = env.c.List(context.Background(), &tokens, client.InNamespace("kube-system"), client.MatchingLabels{bootstrap.LabelServer: "worker-3"})
	if len(tokens.Items) != 0 {
		t.Errorf("token left behind")
	}
	env.nodeReady(t, "worker-3")
	if !strings.Contains(op.Status.OutputTail, "kubelet-standin started for worker-3") {
		t.Errorf("the resumed run lost the output:\n%s", op.Status.OutputTail)
	}
	log, _ := os.ReadFile(filepath.Join(env.dir, "controller-kill-2.log"))
	if !strings.Contains(string(log), "resuming repave") {
		t.Errorf("the second controller did not resume")
	}
}

func TestTwentyServersWithConcurrencyFive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var names []string
	for i := 3; i < 23; i++ {
		w := env.sim.Workers[i]
		env.server(t, "c-"+w.Name, w, nil)
		names = append(names, "c-"+w.Name)
	}
	// Watch every Operation; the watch sees changes in etcd order, so
	// counting Running ones along it never misses an overlap.
	var list v1.OperationList
	if err := env.c.List(ctx, &list, client.InNamespace(dc)); err != nil {
		t.Fatal(err)
	}
	wc, err := client.NewWithWatch(env.world.ControlPlane.Config, client.Options{Scheme: env.c.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := wc.Watch(ctx, &v1.OperationList{}, client.InNamespace(dc), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	maxRunning := make(chan int, 1)
	go func() {
		running := map[string]bool{}
		most := 0
		for ev := range watch.ResultChan() {
			op, ok := ev.Object.(*v1.Operation)
			if !ok {
				continue
			}
			running[op.Name] = op.Status.Phase == v1.OperationRunning
			n := 0
			for _, r := range running {
				if r {
					n++
				}
			}
			most = max(most, n)
		}
		maxRunning <- most
	}()

	env.startController(t, "twenty", "--max-concurrent-repaves=5")
	var ops []string
	for _, n := range names {
		ops = append(ops, env.repave(t, n, ""))
	}
	for i, name := range ops {
		op := env.waitOp(t, name, 4*time.Minute, finished)
		if op.Status.Phase != v1.OperationSucceeded {
			t.Errorf("%s: %s: %s", names[i], op.Status.Phase, op.Status.Message)
			continue
		}
		env.nodeReady(t, names[i])
	}
	watch.Stop()
	if most := <-maxRunning; most > 5 || most < 2 {
		t.Errorf("at most %d Operations ran at once, want 5 at most (and some parallelism)", most)
	} else {
		t.Logf("at most %d Operations ran at once", most)
	}
}

// TestNoSecretLeaks runs last: it scans every log, event and status the
// other tests produced for the SSH private key and any bootstrap token.
func TestZZNoSecretLeaks(t *testing.T) {
	ctx := context.Background()
	var secrets []string
	for _, l := range strings.Split(string(env.sim.ClientKeyPEM), "\n") {
		if l = strings.TrimSpace(l); len(l) > 20 && !strings.HasPrefix(l, "-----") {
			secrets = append(secrets, l)
		}
	}
	// Every token any test delivered is in the stand-ins' kubeconfigs.
	dirs, _ := os.ReadDir(env.stateDir)
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(env.stateDir, d.Name(), "bootstrap-kubelet.conf"))
		if err != nil {
			continue
		}
		tok := between(string(b), "token: ", "\n")
		if tok == "" {
			t.Fatalf("no token in %s's bootstrap kubeconfig", d.Name())
		}
		id, secret, _ := strings.Cut(tok, ".")
		_ = id
		secrets = append(secrets, tok, secret)
	}
	if len(secrets) < 10 {
		t.Fatalf("too few secrets to scan for (%d); did the other tests run?", len(secrets))
	}
	var texts = map[string]string{}
	logs, _ := filepath.Glob(filepath.Join(env.dir, "controller-*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		texts[filepath.Base(l)] = string(b)
	}
	var ops v1.OperationList
	if err := env.c.List(ctx, &ops, client.InNamespace(dc)); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops.Items {
		texts["Operation "+op.Name] = toJSON(t, op.Status)
	}
	var servers v1.ServerList
	if err := env.c.List(ctx, &servers, client.InNamespace(dc)); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers.Items {
		texts["Server "+s.Name] = toJSON(t, s.Status)
	}
	for _, ns := range []string{dc, "default", "kube-system"} {
		var evs corev1.EventList
		if err := env.c.List(ctx, &evs, client.InNamespace(ns)); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		for _, ev := range evs.Items {
			texts["Event "+ev.Name] = ev.Message + " " + ev.Reason
		}
	}
	if len(texts) < 10 {
		t.Fatalf("too little to scan (%d texts)", len(texts))
	}
	for where, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s contains a secret (%d chars starting %q)", where, len(s), s[:4])
			}
		}
	}
	t.Logf("scanned %d logs, statuses and events for %d secrets", len(texts), len(secrets))
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
