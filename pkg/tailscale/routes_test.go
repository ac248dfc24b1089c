package tailscale_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stargate-k8s/stargate/pkg/tailscale"
	"github.com/stargate-k8s/stargate/pkg/tailscale/tailscalefake"
)

var pool = netip.MustParsePrefix("10.244.0.0/16")

func owned(p netip.Prefix) bool { return pool.Overlaps(p) }

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
	return fk, &tailscale.Syncer{Client: cl, Advertiser: adv, Owned: owned}, adv
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
				{TailnetIP: "100.64.0.10", Want: []string{"10.50.1.0/24", "10.244.1.0/24", "10.244.2.0/24"}, ManageAdvertisement: true},
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
