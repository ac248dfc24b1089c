package operations

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	v1 "github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// A wait for a Node that never registers leaves nothing behind, however it
// ends: at its deadline, when its Operation is deleted (the run's context
// is cancelled) or when the controller stops. Before, every 5-second poll
// registered one more waiter that only a change of that Node released.
func TestNodeWaitLeavesNoWaiterBehind(t *testing.T) {
	r, _, kube := testWorld(t)
	r.Opts.NodeReadyTimeout = 300 * time.Millisecond
	p := newRepave(t, r, kube)
	goroutines := runtime.NumGoroutine()

	// At the deadline.
	if _, err := p.waitForNode(context.Background()); err == nil || !strings.Contains(err.Error(), "has not registered") {
		t.Fatalf("wait ended with %v, want the Node-not-ready failure", err)
	}
	if n := r.nodes.registered(); n != 0 {
		t.Errorf("%d waiters registered after the wait timed out, want 0", n)
	}
	// Cancelled mid-wait (Operation deleted, controller stopping); and many
	// waits at once, woken by a change of their Node half way.
	r.Opts.NodeReadyTimeout = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 50)
	for range 50 {
		go func() {
			_, err := p.waitForNode(ctx)
			done <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.nodes.registered() < 50 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := r.nodes.registered(); n != 50 {
		t.Fatalf("%d waiters registered by 50 waits", n)
	}
	r.nodes.notify("s1") // the Node changed, still not there: all wait again
	time.Sleep(100 * time.Millisecond)
	cancel()
	for range 50 {
		if err := <-done; err == nil {
			t.Fatal("a cancelled wait succeeded")
		}
	}
	if n := r.nodes.registered(); n != 0 {
		t.Errorf("%d waiters registered after every wait was cancelled, want 0", n)
	}
	// Goroutines of the waits are gone too (a few of the runtime's may
	// come and go).
	deadline = time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > goroutines+2 {
		t.Errorf("%d goroutines after the waits ended, %d before", g, goroutines)
	}
}

// An Operation the Server's claim does not name (created directly instead
// of through servers/NAME/repave, or one the Server has since given to
// another) fails in ResolveReferences: no connection, no token, and the
// Server's status is not touched.
func TestOperationNotNamedByClaimFailsWithoutTouchingServer(t *testing.T) {
	for _, claim := range []string{"", "newer-op"} {
		t.Run("claim="+claim, func(t *testing.T) {
			r, c, kube := testWorld(t)
			ctx := context.Background()
			var s v1.Server
			if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: "s1"}, &s); err != nil {
				t.Fatal(err)
			}
			s.Status.LastOperation = claim
			if err := kube.Status().Update(ctx, &s); err != nil {
				t.Fatal(err)
			}
			writes := c.serverWrites.Load()
			dialed := false
			r.Dial = func(context.Context, string, string) (conn net.Conn, err error) {
				dialed = true
				return nil, errors.New("no route")
			}
			if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "op"}}); err != nil {
				t.Fatal(err)
			}
			op := getOp(t, kube)
			if op.Status.Phase != v1.OperationFailed || len(op.Status.Conditions) != 1 || op.Status.Conditions[0].Reason != stargate.ReasonNotClaimed {
				t.Fatalf("phase %s, conditions %+v: want Failed with reason %s", op.Status.Phase, op.Status.Conditions, stargate.ReasonNotClaimed)
			}
			if !strings.Contains(op.Status.Message, "status.lastOperation") || !strings.Contains(op.Status.Message, "servers/s1/repave") {
				t.Errorf("message %q does not say what claims the Server and how to repave", op.Status.Message)
			}
			if dialed {
				t.Error("the controller connected to the host for an Operation the Server does not run")
			}
			if got := c.serverWrites.Load(); got != writes {
				t.Errorf("%d Server status writes by an Operation the Server does not run", got-writes)
			}
			if got := tokens(t, kube); len(got) != 0 {
				t.Errorf("%d bootstrap tokens made", len(got))
			}
			var after v1.Server
			if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: "s1"}, &after); err != nil {
				t.Fatal(err)
			}
			if after.Status.LastOperation != claim {
				t.Errorf("status.lastOperation %q, want %q unchanged", after.Status.LastOperation, claim)
			}
		})
	}
}
