package azure_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"

	"github.com/stargate-k8s/stargate/pkg/azure"
	"github.com/stargate-k8s/stargate/pkg/azure/azurefake"
)

// Two AKS clusters in one VNet whose subnets share one route table, each
// with its own stargate-controller: every controller owns the routes under
// its own prefix (-azure-route-prefix), and both write the whole table (a
// PUT guarded by the ETag) whenever their Servers change. This is the race a
// real deployment sees: two replicas of one controller do not run passes at
// the same time (leader election), and if they briefly did they would write
// the same routes under the same names (names follow from the CIDR alone),
// so a lost update could not even be seen. With two owners a PUT built on a
// stale read would silently drop the other cluster's newest routes; the
// ETag turns that into a 412 and a re-read.
//
// The prefixes must not be prefixes of each other ("stargate-" would own
// "stargate-west-..." too): hence stargate-east- and stargate-west-.

// racer is one cluster's controller: its own client (its own User-Agent,
// so the fake can tell whether it honours its own Retry-After) on the
// shared table.
type racer struct {
	name  string
	table *azure.Table
	// cidr is the second octet of its pod CIDRs.
	octet int
	rng   *rand.Rand

	// final is the set it wanted last (name -> "prefix via next hop").
	final map[string]string
	// conflicts and writes as its Syncs reported them; failedSyncs counts
	// Syncs that gave up (and were tried again, as the next pass would).
	conflicts, writes, failedSyncs int
}

func newRacer(t *testing.T, fk *azurefake.Table, name string, octet int, seed uint64) *racer {
	t.Helper()
	opts := azure.ClientOptions(fk.Transport())
	opts.Telemetry.ApplicationID = "stargate-" + name
	// Backoff of 5xx only; a 429's wait comes from its Retry-After.
	opts.Retry.RetryDelay = 20 * time.Millisecond
	client, err := armnetwork.NewRouteTablesClient("sub", &azfake.TokenCredential{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &racer{
		name:  name,
		table: &azure.Table{Client: client, ResourceGroup: "rg", Name: "aks-rt", Prefix: "stargate-" + name + "-", MaxRoutes: 400, PollFrequency: time.Second},
		octet: octet,
		rng:   rand.New(rand.NewPCG(seed, seed)),
	}
}

// wantAt is what the cluster wants in round i: the pod CIDRs of a moving
// window of servers (one joins, and every other round one leaves), the
// subnet route of its datacenter, and, every third round, a changed next
// hop for the subnet (the AKS router moved).
func (r *racer) wantAt(i int) []azure.Route {
	hop := "10.224.0.4"
	if i%3 == 2 {
		hop = "10.224.0.5"
	}
	out := []azure.Route{{Name: r.table.Prefix + "subnet", AddressPrefix: fmt.Sprintf("10.%d.255.0/24", r.octet), NextHop: hop}}
	for s := i / 2; s <= 8+i; s++ {
		out = append(out, azure.Route{
			Name:          fmt.Sprintf("%spod-10-%d-%d-0-24", r.table.Prefix, r.octet, s),
			AddressPrefix: fmt.Sprintf("10.%d.%d.0/24", r.octet, s),
			NextHop:       "10.224.0.4",
		})
	}
	return out
}

// run plays rounds passes. A Sync that gives up (412 more often than
// ConflictRetries, or an error) is tried again at once, as the reconciler
// requeues; any error other than a 412 fails the test.
func (r *racer) run(ctx context.Context, t *testing.T, rounds int) {
	for i := range rounds {
		want := r.wantAt(i)
		for {
			res, err := r.table.Sync(ctx, want)
			r.conflicts += res.Conflicts
			r.writes += res.Writes
			if err == nil {
				break
			}
			var re *azcore.ResponseError
			if !errors.As(err, &re) || re.StatusCode != http.StatusPreconditionFailed {
				t.Errorf("%s round %d: %v", r.name, i, err)
				return
			}
			r.failedSyncs++
		}
		// The next event comes a little later: 0-10 ms.
		time.Sleep(time.Duration(r.rng.IntN(10_000)) * time.Microsecond)
	}
	r.final = map[string]string{}
	for _, w := range r.wantAt(rounds - 1) {
		r.final[w.Name] = w.AddressPrefix + " via " + w.NextHop
	}
}

type raceCase struct {
	rounds int
	// throttleEvery: every n-th write request gets 429 with Retry-After 1.
	throttleEvery int
}

func TestTwoControllersRacingOnOneTable(t *testing.T) {
	t.Run("412", func(t *testing.T) { raceOnOneTable(t, raceCase{rounds: 25}) })
	t.Run("412 and 429 with Retry-After", func(t *testing.T) { raceOnOneTable(t, raceCase{rounds: 10, throttleEvery: 7}) })
}

func raceOnOneTable(t *testing.T, c raceCase) {
	fk := azurefake.New("rg", "aks-rt")
	// Azure's latencies (50 ms per read, seconds per long-running PUT),
	// scaled down so a test of many rounds takes seconds; what matters is
	// that the window between a controller's read and its write is long
	// next to the other's writes, as it is in Azure.
	fk.ReadLatency, fk.WriteLatency = 5*time.Millisecond, 25*time.Millisecond
	foreign := map[string]string{
		"corp-default":    "0.0.0.0/0 via 10.224.0.9",
		"corp-onprem-vpn": "172.16.0.0/12 via 10.224.0.10",
	}
	for name, desc := range foreign {
		prefix, hop, _ := strings.Cut(desc, " via ")
		fk.Set(name, prefix, hop)
	}
	fk.KeepHistory()
	if c.throttleEvery > 0 {
		fk.ThrottleWrites(c.throttleEvery, "1")
	}
	racers := []*racer{newRacer(t, fk, "east", 101, 1), newRacer(t, fk, "west", 102, 2)}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	// A third actor (someone's IaC) adds a route of its own while the
	// controllers race; it writes out of band, bumping the ETag.
	wg.Go(func() {
		for i := range 3 {
			time.Sleep(time.Duration(40+60*i) * time.Millisecond)
			fk.Set(fmt.Sprintf("corp-late-%d", i), fmt.Sprintf("172.31.%d.0/24", i), "10.224.0.11")
		}
	})
	for _, r := range racers {
		wg.Go(func() { r.run(ctx, t, c.rounds) })
	}
	wg.Wait()
	took := time.Since(start)
	if t.Failed() {
		return
	}
	for i := range 3 {
		foreign[fmt.Sprintf("corp-late-%d", i)] = fmt.Sprintf("172.31.%d.0/24 via 10.224.0.11", i)
	}

	st := fk.Stats()
	hist := fk.History()
	t.Logf("%d rounds each in %v: fake saw %d reads, %d writes accepted, %d refused with 412, %d throttled (429); east %d writes %d conflicts %d gave up, west %d writes %d conflicts %d gave up",
		c.rounds, took.Round(time.Millisecond), st.Reads, st.Writes, st.Conflicts, st.Throttled,
		racers[0].writes, racers[0].conflicts, racers[0].failedSyncs, racers[1].writes, racers[1].conflicts, racers[1].failedSyncs)

	// The race happened: the fake refused stale writes, and the syncers
	// saw those refusals (a Sync that gave up does not report its last).
	if st.Conflicts == 0 {
		t.Fatal("no 412 was answered: the controllers did not race")
	}
	if seen := racers[0].conflicts + racers[1].conflicts + racers[0].failedSyncs + racers[1].failedSyncs; seen != st.Conflicts {
		t.Errorf("the syncers saw %d 412s, the fake answered %d", seen, st.Conflicts)
	}
	if st.Writes != racers[0].writes+racers[1].writes || len(hist) != st.Writes {
		t.Errorf("accepted writes: fake %d, history %d, syncers %d", st.Writes, len(hist), racers[0].writes+racers[1].writes)
	}
	if c.throttleEvery > 0 {
		if st.Throttled == 0 {
			t.Error("no write was throttled")
		}
		if st.EarlyRetries > 0 {
			t.Errorf("%d writes came before their Retry-After had passed", st.EarlyRetries)
		}
		if took < time.Second {
			t.Errorf("finished in %v although writes were told to wait 1s", took)
		}
	}

	// No write touched a route outside its writer's prefix: every accepted
	// write changed the routes of one owner only, so nothing of the other
	// cluster, nor a foreign route, was lost or changed on the way.
	for i, ch := range hist {
		owners := map[string]bool{}
		for name := range union(ch.Before, ch.After) {
			if ch.Before[name] != ch.After[name] {
				owners[ownerOf(name)] = true
			}
		}
		if len(owners) != 1 || owners["foreign"] {
			t.Errorf("write %d changed routes of %v", i+1, slices.Sorted(maps.Keys(owners)))
		}
	}

	// The table ends as both clusters want it, with every foreign route.
	want := map[string]string{}
	maps.Copy(want, foreign)
	for _, r := range racers {
		maps.Copy(want, r.final)
	}
	got := fk.RouteMap()
	for name, desc := range want {
		if got[name] != desc {
			t.Errorf("route %s: got %q, want %q", name, got[name], desc)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("route %s (%s) left behind", name, got[name])
		}
	}
}

func ownerOf(name string) string {
	for _, o := range []string{"east", "west"} {
		if strings.HasPrefix(name, "stargate-"+o+"-") {
			return o
		}
	}
	return "foreign"
}

func union(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
