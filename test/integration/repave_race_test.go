package integration

import (
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
)

// TestConcurrentRepavesOnlyOneWins fires many repaves of one Server at
// once through the aggregator: exactly one gets an Operation, every other
// one a 409, and only one Operation exists. When that Operation has
// finished, the next repave is accepted again.
func TestConcurrentRepavesOnlyOneWins(t *testing.T) {
	ctx := testContext(t)
	servers := client.StargateV1alpha1().Servers(dc)
	// A fresh Server each run, so the test also passes with -count.
	fresh := server("", "10.50.1.40")
	fresh.GenerateName = "racer-"
	fresh.Spec.Hostname = "racer"
	created, err := servers.Create(ctx, fresh, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	racer := created.Name

	const callers = 16
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		won       []string
		conflicts int
		others    []error
	)
	start := make(chan struct{})
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			op, err := servers.Repave(ctx, racer, &v1alpha1.RepaveRequest{Reason: "race"}, metav1.CreateOptions{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, op.Name)
			case apierrors.IsConflict(err):
				conflicts++
			default:
				others = append(others, err)
			}
		}()
	}
	close(start)
	wg.Wait()

	if len(others) > 0 {
		t.Fatalf("repaves failed other than with 409: %v", others)
	}
	if len(won) != 1 || conflicts != callers-1 {
		t.Fatalf("%d repaves won (%q) and %d got 409; want exactly 1 and %d", len(won), won, conflicts, callers-1)
	}
	if ops := operationsOf(t, racer); len(ops) != 1 || ops[0] != won[0] {
		t.Fatalf("Operations of %s = %q, want only the winner %q", racer, ops, won[0])
	}
	srv, err := servers.Get(ctx, racer, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Status.LastOperation != won[0] {
		t.Errorf("status.lastOperation = %q, want the winner %q", srv.Status.LastOperation, won[0])
	}

	// The Operations of a server can be selected by field, as kubectl does
	// with --field-selector.
	selected, err := client.StargateV1alpha1().Operations(dc).List(ctx, metav1.ListOptions{FieldSelector: "spec.serverRef.name=" + racer})
	if err != nil {
		t.Fatalf("list Operations by spec.serverRef.name: %v", err)
	}
	if len(selected.Items) != 1 || selected.Items[0].Name != won[0] {
		t.Errorf("field selector spec.serverRef.name=%s selected %d Operations, want only %q", racer, len(selected.Items), won[0])
	}

	// Finish the Operation as the controller would; the server is free again.
	op, err := client.StargateV1alpha1().Operations(dc).Get(ctx, won[0], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	op.Status.Phase = v1alpha1.OperationFailed
	op.Status.Message = "test: finished"
	if _, err := client.StargateV1alpha1().Operations(dc).UpdateStatus(ctx, op, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	next, err := servers.Repave(ctx, racer, &v1alpha1.RepaveRequest{Reason: "again"}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("repave after the Operation failed: %v", err)
	}
	if next.Name == won[0] {
		t.Errorf("second repave returned the first Operation %q", next.Name)
	}
}
