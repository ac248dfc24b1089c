package operations

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/bootstrap"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
)

const ns = "dc-1"

// testRead marks the test's own reads, which calls does not count.
type testRead struct{}

// calls counts what the reconciler asks of the API server.
type calls struct{ statusWrites, secretLists, serverWrites atomic.Int32 }

func testWorld(t *testing.T) (*Reconciler, *calls, client.Client) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _, _ := ed25519.GenerateKey(rand.Reader)
	hk, _ := ssh.NewPublicKey(hostPub)
	objs := []client.Object{
		&v1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-one"}, Spec: v1.DatacenterSpec{
			Namespace: ns, WorkerSubnet: "192.0.2.0/24", Router: v1.DatacenterRouter{IP: "100.64.1.1"}, AgentGateway: "192.0.2.1",
		}},
		&v1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s1", UID: "server-uid"}, Spec: v1.ServerSpec{
			Hostname: "s1", IPAddress: "192.0.2.10", RouterIP: "100.64.1.1", HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hk))),
			ProvisioningProfileRef: &v1.LocalObjectReference{Name: "p"},
		}, Status: v1.ServerStatus{LastOperation: "op"}}, // claimed for op, as servers/s1/repave does
		&v1.ProvisioningProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}, Spec: v1.ProvisioningProfileSpec{
			KubernetesVersion: "1.37", AdminUsername: "root", SSHCredentialsSecretRef: &v1.LocalObjectReference{Name: "ssh"},
		}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ssh"}, Type: corev1.SecretTypeSSHAuth,
			Data: map[string][]byte{corev1.SSHAuthPrivateKey: pem.EncodeToMemory(block)}},
		&v1.Operation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "op", UID: "op-uid"}, Spec: v1.OperationSpec{
			ServerRef: v1.LocalObjectReference{Name: "s1"}, ProvisioningProfileRef: v1.LocalObjectReference{Name: "p"},
		}},
	}
	c := &calls{}
	kube := fake.NewClientBuilder().WithScheme(manager.Scheme).WithObjects(objs...).
		WithStatusSubresource(&v1.Operation{}, &v1.Server{}).
		WithInterceptorFuncs(interceptor.Funcs{
			List: func(ctx context.Context, cl client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				if _, ok := list.(*corev1.SecretList); ok && ctx.Value(testRead{}) == nil {
					c.secretLists.Add(1)
				}
				return cl.List(ctx, list, opts...)
			},
			SubResourceUpdate: func(ctx context.Context, cl client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				switch obj.(type) {
				case *v1.Operation:
					c.statusWrites.Add(1)
				case *v1.Server:
					c.serverWrites.Add(1)
				}
				return cl.SubResource(sub).Update(ctx, obj, opts...)
			},
		}).Build()
	opts := NewOptions()
	opts.APIServerURL = "https://192.0.2.1:6443"
	opts.SSHAttempts = 1
	r := &Reconciler{Client: kube, APIReader: kube, Direct: kube, Recorder: events.NewFakeRecorder(100), Opts: opts,
		nodes: newNodeWaiter(), caPEM: []byte("ca"),
		Dial: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no route to host") },
	}
	return r, c, kube
}

func getOp(t *testing.T, kube client.Client) *v1.Operation {
	t.Helper()
	var op v1.Operation
	if err := kube.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "op"}, &op); err != nil {
		t.Fatal(err)
	}
	return &op
}

// A repave that fails to connect: the first write records the Operation's
// start, its first step (which only reads) as done and Connect as
// running, one write ends the Operation; no token was made, so none is
// looked for; the Server gets the result before the Operation ends.
func TestRepaveUnreachableWritesOncePerStep(t *testing.T) {
	r, c, kube := testWorld(t)
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "op"}}); err != nil {
		t.Fatal(err)
	}
	op := getOp(t, kube)
	if op.Status.Phase != v1.OperationFailed {
		t.Fatalf("phase %s: %s", op.Status.Phase, op.Status.Message)
	}
	states := map[string]v1.StepState{}
	for _, s := range op.Status.Steps {
		states[s.Name] = s.State
	}
	if states[StepResolve] != v1.StepSucceeded || states[StepConnect] != v1.StepFailed || states[StepToken] != v1.StepPending {
		t.Errorf("steps: %v", states)
	}
	if !strings.Contains(op.Status.Message, "no route to host") {
		t.Errorf("message: %s", op.Status.Message)
	}
	if got := c.statusWrites.Load(); got != 2 {
		t.Errorf("%d status writes, want 2 (start with the first step done and Connect running, end)", got)
	}
	if got := c.secretLists.Load(); got != 0 {
		t.Errorf("listed bootstrap tokens %d times; no step made one", got)
	}
	var s v1.Server
	if err := kube.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "s1"}, &s); err != nil {
		t.Fatal(err)
	}
	if s.Status.Phase != v1.ServerFailed || s.Status.LastOperation != "op" {
		t.Errorf("Server status: %s, lastOperation %q", s.Status.Phase, s.Status.LastOperation)
	}
	if got := c.serverWrites.Load(); got != 2 {
		t.Errorf("%d Server status writes, want 2 (Provisioning, Failed)", got)
	}
}

func newRepave(t *testing.T, r *Reconciler, kube client.Client) *repave {
	t.Helper()
	p := &repave{opRun: newOpRun(r, getOp(t, kube), ctrl.Log)}
	if err := p.resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, s := range RepaveSteps {
		p.op.Status.Steps = append(p.op.Status.Steps, v1.OperationStep{Name: s, State: v1.StepPending})
	}
	return p
}

func tokens(t *testing.T, kube client.Client) []corev1.Secret {
	t.Helper()
	var list corev1.SecretList
	if err := kube.List(context.WithValue(context.Background(), testRead{}, true), &list, client.InNamespace(bootstrap.TokenNamespace), client.MatchingLabels{bootstrap.LabelOperation: "op-uid"}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// A fresh token step makes the token without looking for an earlier one
// (none can exist), hands it to the payload and deletes it by name.
func TestFreshTokenStepMakesOneTokenAndDeletesIt(t *testing.T) {
	r, c, kube := testWorld(t)
	p := newRepave(t, r, kube)
	ctx := context.Background()
	if err := p.step(ctx, StepToken, p.createToken); err != nil {
		t.Fatal(err)
	}
	if _, err := p.payload(ctx); err != nil {
		t.Fatal(err)
	}
	made := tokens(t, kube)
	if n := len(made); n != 1 {
		t.Fatalf("%d tokens, want 1", n)
	}
	if got := c.secretLists.Load(); got != 0 {
		t.Errorf("listed tokens %d times, want 0", got)
	}
	// It expires when the repave can no longer use it.
	v := string(made[0].Data["expiration"])
	if v == "" {
		v = made[0].StringData["expiration"] // the fake client keeps stringData as written
	}
	exp, err := time.Parse(time.RFC3339, v)
	if err != nil {
		t.Fatalf("token expiration %q: %v", v, err)
	}
	if d := time.Until(exp); d > r.Opts.TokenLifetime() || d < r.Opts.TokenLifetime()-time.Minute {
		t.Errorf("token expires in %s, want about %s", d.Round(time.Second), r.Opts.TokenLifetime())
	}
	if err := p.deleteTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(tokens(t, kube)); n != 0 {
		t.Errorf("%d tokens left", n)
	}
}

// A token step an earlier run started (Running in the status) finds that
// run's token instead of making another, and finish looks for every
// token of the Operation.
func TestResumedTokenStepReusesTheToken(t *testing.T) {
	r, c, kube := testWorld(t)
	ctx := context.Background()
	tok, _ := bootstrap.NewToken()
	earlier := bootstrap.TokenSecret(tok, metav1.Now().Add(3600e9), "earlier run", map[string]string{bootstrap.LabelOperation: "op-uid"})
	if err := kube.Create(ctx, earlier); err != nil {
		t.Fatal(err)
	}
	p := newRepave(t, r, kube)
	p.findStep(StepToken).State = v1.StepRunning
	if err := p.step(ctx, StepToken, p.createToken); err != nil {
		t.Fatal(err)
	}
	if ts := tokens(t, kube); len(ts) != 1 || ts[0].Name != earlier.Name {
		t.Fatalf("tokens %v, want only the earlier run's", ts)
	}
	if !strings.Contains(p.findStep(StepToken).Message, "exists") {
		t.Errorf("step message: %s", p.findStep(StepToken).Message)
	}
	if got := c.statusWrites.Load(); got != 0 {
		t.Errorf("a resumed step was recorded again (%d writes)", got)
	}
	if err := p.deleteTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(tokens(t, kube)); n != 0 {
		t.Errorf("%d tokens left", n)
	}
	if got := c.secretLists.Load(); got != 2 {
		t.Errorf("listed tokens %d times, want 2 (find the earlier one, delete all)", got)
	}
}

// A Server whose hostname another Server or a foreign Node already holds
// is refused in ResolveReferences: before a connection, before a token
// exists, and without deleting the foreign Node.
func TestRepaveOfAnotherMachinesNodeNameFailsBeforeAnyToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		holder client.Object
		want   string
	}{
		{"another Server in another namespace", &v1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-2", Name: "other"},
			Spec: v1.ServerSpec{Hostname: "s1", IPAddress: "192.0.2.20"}}, "Server dc-2/other"},
		{"an AKS node", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "s1", Labels: map[string]string{"kubernetes.azure.com/cluster": "mc"}}}, "Node s1"},
		{"a node labelled for another Server", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "s1",
			Labels: map[string]string{"stargate.io/server": "s1", "stargate.io/datacenter": "dc-2"}}}, "Node s1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, kube := testWorld(t)
			ctx := context.Background()
			if err := kube.Create(ctx, tc.holder); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "op"}}); err != nil {
				t.Fatal(err)
			}
			op := getOp(t, kube)
			states := map[string]v1.StepState{}
			for _, s := range op.Status.Steps {
				states[s.Name] = s.State
			}
			if op.Status.Phase != v1.OperationFailed || states[StepResolve] != v1.StepFailed || states[StepToken] != v1.StepPending {
				t.Fatalf("phase %s, steps %v: want Failed in %s", op.Status.Phase, states, StepResolve)
			}
			if !strings.Contains(op.Status.Message, tc.want) || !strings.Contains(op.Status.Message, "s1") {
				t.Errorf("message %q does not name the holder %s", op.Status.Message, tc.want)
			}
			var tokens corev1.SecretList
			if err := kube.List(context.WithValue(ctx, testRead{}, true), &tokens, client.InNamespace(bootstrap.TokenNamespace)); err != nil {
				t.Fatal(err)
			}
			if len(tokens.Items) != 0 {
				t.Errorf("%d bootstrap tokens made for a name another machine holds", len(tokens.Items))
			}
			if n, ok := tc.holder.(*corev1.Node); ok {
				if err := kube.Get(ctx, client.ObjectKeyFromObject(n), &corev1.Node{}); err != nil {
					t.Errorf("the foreign Node is gone: %v", err)
				}
			}
		})
	}
}

// A Server outside any datacenter, or outside its datacenter's network,
// is refused in ResolveReferences with the InDatacenter reason: before a
// connection and before a token exists.
func TestRepaveOfServerOutsideItsDatacenterFailsBeforeAnyToken(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mutate     func(ctx context.Context, t *testing.T, kube client.Client)
		wantReason string
		want       string
	}{
		{"no Datacenter names the namespace", func(ctx context.Context, t *testing.T, kube client.Client) {
			if err := kube.Delete(ctx, &v1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-one"}}); err != nil {
				t.Fatal(err)
			}
		}, stargate.ReasonNoDatacenter, "spec.namespace is " + ns},
		{"the Server is outside the worker subnet", func(ctx context.Context, t *testing.T, kube client.Client) {
			var dc v1.Datacenter
			if err := kube.Get(ctx, client.ObjectKey{Name: "dc-one"}, &dc); err != nil {
				t.Fatal(err)
			}
			dc.Spec.WorkerSubnet, dc.Spec.AgentGateway = "198.51.100.0/24", "198.51.100.1"
			if err := kube.Update(ctx, &dc); err != nil {
				t.Fatal(err)
			}
		}, stargate.ReasonNotInDatacenterNetwork, "spec.ipAddress"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, kube := testWorld(t)
			ctx := context.Background()
			tc.mutate(ctx, t, kube)
			if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "op"}}); err != nil {
				t.Fatal(err)
			}
			op := getOp(t, kube)
			states := map[string]v1.StepState{}
			for _, s := range op.Status.Steps {
				states[s.Name] = s.State
			}
			if op.Status.Phase != v1.OperationFailed || states[StepResolve] != v1.StepFailed || states[StepConnect] != v1.StepPending || states[StepToken] != v1.StepPending {
				t.Fatalf("phase %s, steps %v: want Failed in %s", op.Status.Phase, states, StepResolve)
			}
			if c := op.Status.Conditions; len(c) != 1 || c[0].Reason != tc.wantReason || !strings.Contains(c[0].Message, tc.want) {
				t.Errorf("conditions %+v: want reason %s, a message naming %q", c, tc.wantReason, tc.want)
			}
			var tokens corev1.SecretList
			if err := kube.List(context.WithValue(ctx, testRead{}, true), &tokens, client.InNamespace(bootstrap.TokenNamespace)); err != nil {
				t.Fatal(err)
			}
			if len(tokens.Items) != 0 {
				t.Errorf("%d bootstrap tokens made for a Server outside its datacenter", len(tokens.Items))
			}
		})
	}
}
