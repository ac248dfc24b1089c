package tailscale_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stargate-k8s/stargate/pkg/tailscale"
	"github.com/stargate-k8s/stargate/pkg/tailscale/tailscalefake"
)

// recordingAdvertiser stands in for the SSH advertiser: it records calls and
// plays the router by updating the fake's advertised routes.
type recordingAdvertiser struct {
	mu    sync.Mutex
	calls []string
	fake  *tailscalefake.Server
}

func (a *recordingAdvertiser) Advertise(_ context.Context, ip string, routes []string) error {
	a.mu.Lock()
	a.calls = append(a.calls, ip+" "+strings.Join(routes, ","))
	a.mu.Unlock()
	return a.fake.SetAdvertisedByIP(ip, routes)
}

func setup(t *testing.T, creds tailscale.Credentials) (*tailscalefake.Server, *tailscale.Syncer, *recordingAdvertiser) {
	t.Helper()
	fk := tailscalefake.New("tskey-api-test", "oauth-id", "oauth-secret")
	t.Cleanup(fk.Close)
	fk.AddDevice(tailscalefake.Device{NodeID: "nAKS", Name: "aks-router.tail.ts.net", Addresses: []string{"100.64.0.1"},
		Advertised: []string{"10.0.0.0/16", "10.244.0.0/16"}, Enabled: []string{"10.0.0.0/16"}})
	fk.AddDevice(tailscalefake.Device{NodeID: "nEast", Name: "east-router.tail.ts.net", Addresses: []string{"100.64.0.10", "fd7a:115c:a1e0::a"},
		Advertised: []string{"10.50.1.0/24", "192.168.7.0/24"}, Enabled: []string{"192.168.7.0/24", "10.244.200.0/24"}})
	creds.BaseURL = fk.URL
	cl, err := tailscale.NewClient(creds)
	if err != nil {
		t.Fatal(err)
	}
	adv := &recordingAdvertiser{fake: fk}
	return fk, &tailscale.Syncer{Client: cl, Advertiser: adv}, adv
}

func TestSyncEnablesWantedKeepsForeignAndDisablesStaleOwned(t *testing.T) {
	for _, tc := range []struct {
		name  string
		creds tailscale.Credentials
		auth  string
	}{
		{"api key", tailscale.Credentials{APIKey: "tskey-api-test"}, "basic"},
		{"oauth client", tailscale.Credentials{ClientID: "oauth-id", ClientSecret: "oauth-secret"}, "bearer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fk, s, adv := setup(t, tc.creds)
			routers := []tailscale.Router{
				{TailnetIP: "100.64.0.1", Want: []string{"10.0.0.0/16", "10.244.0.0/16"}},
				{TailnetIP: "100.64.0.10", Want: []string{"10.50.1.0/24", "10.244.1.0/24", "10.244.2.0/24"}, ManageAdvertisement: true,
					Owned: []tailscale.Ownership{{DeviceID: "nEast", Enabled: []string{"10.244.200.0/24"}}}},
			}
			res, err := s.Sync(context.Background(), routers)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if r.Err != nil || len(r.Unadvertised) != 0 {
					t.Fatalf("%s: err=%v unadvertised=%v", r.TailnetIP, r.Err, r.Unadvertised)
				}
			}
			east := fk.Device("nEast")
			if want := []string{"10.244.1.0/24", "10.244.2.0/24", "10.50.1.0/24", "192.168.7.0/24"}; !slices.Equal(east.Enabled, want) {
				t.Fatalf("east enabled %v, want %v (foreign kept, stale owned 10.244.200.0/24 dropped)", east.Enabled, want)
			}
			if want := []string{"10.244.1.0/24", "10.244.2.0/24", "10.50.1.0/24", "192.168.7.0/24"}; !slices.Equal(east.Advertised, want) {
				t.Fatalf("east advertised %v, want %v", east.Advertised, want)
			}
			if len(adv.calls) != 1 || !strings.HasPrefix(adv.calls[0], "100.64.0.10 ") {
				t.Fatalf("advertiser calls %v, want one for the DC router only", adv.calls)
			}
			if w := fk.Writes(); w != 2 {
				t.Fatalf("%d route writes, want 2 (one per router)", w)
			}
			for _, r := range fk.Requests() {
				if r.Path == "/api/v2/oauth/token" {
					continue
				}
				if r.Auth != tc.auth {
					t.Fatalf("request %s %s authenticated by %q, want %q", r.Method, r.Path, r.Auth, tc.auth)
				}
				if strings.HasSuffix(r.Path, "/devices") && r.Query != "fields=all" {
					t.Fatalf("device list without fields=all: %q", r.Query)
				}
			}
			// Steady state: one list, nothing written.
			before := len(fk.Requests())
			if _, err := s.Sync(context.Background(), routers); err != nil {
				t.Fatal(err)
			}
			if w := fk.Writes(); w != 2 || len(fk.Requests()) != before+1 {
				t.Fatalf("steady state made %d requests, %d writes in all", len(fk.Requests())-before, w)
			}
		})
	}
}

func TestSyncReportsUnadvertisedAndMissingDevices(t *testing.T) {
	fk, s, _ := setup(t, tailscale.Credentials{APIKey: "tskey-api-test"})
	s.Advertiser = nil // no SSH: the gap is reported, not hidden
	res, err := s.Sync(context.Background(), []tailscale.Router{
		{TailnetIP: "100.64.0.10", Want: []string{"10.50.1.0/24", "10.244.1.0/24"}, ManageAdvertisement: true},
		{TailnetIP: "100.64.0.99", Want: []string{"10.244.9.0/24"}, ManageAdvertisement: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := res[0].Unadvertised; !slices.Equal(got, []string{"10.244.1.0/24"}) {
		t.Fatalf("unadvertised %v", got)
	}
	if !slices.Contains(fk.Device("nEast").Enabled, "10.244.1.0/24") {
		t.Fatal("wanted route not pre-enabled")
	}
	if !errors.Is(res[1].Err, tailscale.ErrDeviceNotFound) {
		t.Fatalf("missing router: %v", res[1].Err)
	}
}

// TestSyncWithdrawsOnlyRecordedRoutes: a route an admin enabled by hand,
// even inside the pod pool, stays; a recorded one of another device that
// now has the address is not this device's; routes are recorded before
// the call that adds them.
func TestSyncWithdrawsOnlyRecordedRoutes(t *testing.T) {
	fk, s, adv := setup(t, tailscale.Credentials{APIKey: "tskey-api-test"})
	fk.SetEnabled("nEast", []string{"10.244.9.0/24", "10.244.200.0/24", "10.244.201.0/24", "192.168.7.0/24"})
	var recorded []tailscale.Ownership
	r := tailscale.Router{TailnetIP: "100.64.0.10", Want: []string{"10.244.1.0/24"}, ManageAdvertisement: true,
		Owned: []tailscale.Ownership{
			{DeviceID: "nEast", Enabled: []string{"10.244.200.0/24"}, Advertised: []string{"10.50.1.0/24"}},
			{DeviceID: "nOld", Enabled: []string{"10.244.201.0/24"}},
		},
		Record: func(_ context.Context, add tailscale.Ownership) error {
			d := fk.Device("nEast")
			for _, e := range add.Enabled {
				if slices.Contains(d.Enabled, e) {
					t.Errorf("%s recorded after it was enabled", e)
				}
			}
			for _, a := range add.Advertised {
				if slices.Contains(d.Advertised, a) {
					t.Errorf("%s recorded after it was advertised", a)
				}
			}
			recorded = append(recorded, add)
			return nil
		}}
	res, err := s.Sync(context.Background(), []tailscale.Router{r})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if want := []string{"10.244.1.0/24", "10.244.201.0/24", "10.244.9.0/24", "192.168.7.0/24"}; !slices.Equal(fk.Device("nEast").Enabled, want) {
		t.Fatalf("enabled %v, want %v", fk.Device("nEast").Enabled, want)
	}
	if want := []string{"10.244.1.0/24", "192.168.7.0/24"}; !slices.Equal(fk.Device("nEast").Advertised, want) {
		t.Fatalf("advertised %v, want %v (owned 10.50.1.0/24 withdrawn)", fk.Device("nEast").Advertised, want)
	}
	if len(recorded) != 2 || !slices.Equal(recorded[0].Advertised, []string{"10.244.1.0/24"}) || !slices.Equal(recorded[1].Enabled, []string{"10.244.1.0/24"}) {
		t.Fatalf("recorded %+v", recorded)
	}
	if o := res[0].Owned; !slices.Equal(o.Enabled, []string{"10.244.1.0/24"}) || !slices.Equal(o.Advertised, []string{"10.244.1.0/24"}) || o.DeviceID != "nEast" {
		t.Fatalf("owned after %+v", o)
	}
	if w := res[0].Withdrawn; !slices.Equal(w.Enabled, []string{"10.244.200.0/24"}) || !slices.Equal(w.Advertised, []string{"10.50.1.0/24"}) {
		t.Fatalf("withdrawn %+v", w)
	}
	// A failed record adds nothing.
	r.Want, r.Owned = []string{"10.244.1.0/24", "10.244.2.0/24"}, []tailscale.Ownership{res[0].Owned}
	r.Record = func(context.Context, tailscale.Ownership) error { return errors.New("conflict") }
	calls, writes := len(adv.calls), fk.Writes()
	res, _ = s.Sync(context.Background(), []tailscale.Router{r})
	if res[0].Err == nil || fk.Writes() != writes || len(adv.calls) != calls || slices.Contains(fk.Device("nEast").Enabled, "10.244.2.0/24") {
		t.Fatalf("unrecorded route added: err=%v enabled=%v", res[0].Err, fk.Device("nEast").Enabled)
	}
}
