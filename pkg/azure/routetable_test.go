package azure_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"

	"github.com/stargate-k8s/stargate/pkg/azure"
	"github.com/stargate-k8s/stargate/pkg/azure/azurefake"
)

func newTable(t *testing.T, fk *azurefake.Table) *azure.Table {
	t.Helper()
	opts := azure.ClientOptions(fk.Transport())
	opts.Retry.RetryDelay = 10 * time.Millisecond
	client, err := armnetwork.NewRouteTablesClient("sub", &azfake.TokenCredential{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &azure.Table{Client: client, ResourceGroup: "rg", Name: "aks-rt", Prefix: "stargate-", MaxRoutes: 400, PollFrequency: time.Millisecond}
}

func want(n int) []azure.Route {
	var out []azure.Route
	for i := range n {
		out = append(out, azure.Route{Name: fmt.Sprintf("stargate-pod-10-244-%d-0-24", i), AddressPrefix: fmt.Sprintf("10.244.%d.0/24", i), NextHop: "10.224.0.4"})
	}
	return out
}

func TestSyncWritesAllChangesInOnePutAndLeavesForeignRoutes(t *testing.T) {
	fk := azurefake.New("rg", "aks-rt")
	fk.Set("other-team-default", "0.0.0.0/0", "10.224.0.9")
	fk.Set("stargate-pod-10-244-99-0-24", "10.244.99.0/24", "10.224.0.4") // owned, no longer wanted
	tbl := newTable(t, fk)
	etag := fk.ETag()

	res, err := tbl.Sync(context.Background(), want(30))
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes != 1 || len(res.Diff.Add) != 30 || len(res.Diff.Delete) != 1 {
		t.Fatalf("writes=%d diff=%+v", res.Writes, res.Diff)
	}
	if got := fk.IfMatches(); len(got) != 1 || got[0] != etag {
		t.Fatalf("If-Match headers %v, want [%s]", got, etag)
	}
	m := fk.RouteMap()
	if m["other-team-default"] != "0.0.0.0/0 via 10.224.0.9" {
		t.Fatalf("foreign route changed: %q", m["other-team-default"])
	}
	if _, ok := m["stargate-pod-10-244-99-0-24"]; ok || len(m) != 31 {
		t.Fatalf("table has %d routes: %v", len(m), m)
	}

	// Steady state: a read, no write.
	before := fk.Stats()
	res, err = tbl.Sync(context.Background(), want(30))
	if err != nil || res.Writes != 0 || !res.Diff.Empty() {
		t.Fatalf("second sync: %+v, %v", res, err)
	}
	if after := fk.Stats(); after.Writes != before.Writes || after.Reads != before.Reads+1 {
		t.Fatalf("steady state stats %+v -> %+v", before, after)
	}

	// Drift: a changed next hop and a deleted route are both repaired in one write.
	fk.Set("stargate-pod-10-244-3-0-24", "10.244.3.0/24", "10.224.0.66")
	fk.Delete("stargate-pod-10-244-4-0-24")
	res, err = tbl.Sync(context.Background(), want(30))
	if err != nil || res.Writes != 1 || len(res.Diff.Add) != 1 || len(res.Diff.Update) != 1 {
		t.Fatalf("drift sync: %+v, %v", res, err)
	}
}

func TestSyncRacingWriterGets412AndLosesNothing(t *testing.T) {
	fk := azurefake.New("rg", "aks-rt")
	tbl := newTable(t, fk)
	// Another controller adds its route between our read and our write.
	fk.BeforeNextWrite(func() { fk.Set("foreign-racer", "10.251.0.0/24", "10.224.0.5") })
	res, err := tbl.Sync(context.Background(), want(3))
	if err != nil {
		t.Fatal(err)
	}
	if res.Conflicts != 1 || res.Writes != 1 {
		t.Fatalf("conflicts=%d writes=%d, want 1 and 1", res.Conflicts, res.Writes)
	}
	m := fk.RouteMap()
	if _, ok := m["foreign-racer"]; !ok {
		t.Fatalf("the racing writer's route was lost: %v", m)
	}
	for _, w := range want(3) {
		if _, ok := m[w.Name]; !ok {
			t.Fatalf("%s missing: %v", w.Name, m)
		}
	}
}

func TestSyncHonoursRetryAfterAndBacksOffOn5xx(t *testing.T) {
	fk := azurefake.New("rg", "aks-rt")
	tbl := newTable(t, fk)
	fk.FailNext(azurefake.Fault{Status: 429, RetryAfter: "1"}, azurefake.Fault{Status: 500}, azurefake.Fault{Status: 503})
	start := time.Now()
	res, err := tbl.Sync(context.Background(), want(5))
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("finished after %v, before the 1s Retry-After", el)
	}
	if res.Writes != 1 || len(fk.RouteMap()) != 5 {
		t.Fatalf("writes=%d table=%v", res.Writes, fk.RouteMap())
	}
	if s := fk.Stats(); s.RejectedWrites != 3 || s.Writes != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSyncRefusesToPassTheRouteLimit(t *testing.T) {
	fk := azurefake.New("rg", "aks-rt")
	fk.Set("foreign", "0.0.0.0/0", "10.0.0.1")
	tbl := newTable(t, fk)
	tbl.MaxRoutes = 10
	_, err := tbl.Sync(context.Background(), want(10))
	if !errors.Is(err, azure.ErrRouteLimit) {
		t.Fatalf("got %v, want ErrRouteLimit", err)
	}
	if fk.Stats().Writes != 0 {
		t.Fatal("wrote past the limit")
	}
}

// TestHungLongRunningOperationIsBounded: a PUT whose long-running operation
// never completes fails the sync with ErrOperationTimeout once the bound
// has passed, instead of polling forever.
func TestHungLongRunningOperationIsBounded(t *testing.T) {
	fk := azurefake.New("rg", "aks-rt")
	tbl := newTable(t, fk)
	tbl.OperationTimeout = 2 * time.Second
	fk.HangNextWrites(1)
	start := time.Now()
	_, err := tbl.Sync(context.Background(), want(3))
	took := time.Since(start)
	if !errors.Is(err, azure.ErrOperationTimeout) {
		t.Fatalf("sync with a hung operation: %v, want ErrOperationTimeout", err)
	}
	if took < tbl.OperationTimeout || took > tbl.OperationTimeout+2*time.Second {
		t.Fatalf("sync returned after %v, want about the bound of %v", took, tbl.OperationTimeout)
	}
	t.Logf("hung operation given up after %v: %v", took.Round(time.Millisecond), err)
	// The next sync, with a working API, finds the routes written.
	if _, err := tbl.Sync(context.Background(), want(3)); err != nil {
		t.Fatal(err)
	}
}
