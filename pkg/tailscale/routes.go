// Package tailscale keeps the subnet routes of the tailnet's routers right:
// it finds each router's device by its tailnet IP, has the router advertise
// the routes Stargate wants (through a RouteAdvertiser, e.g. SSH running
// `tailscale set --advertise-routes`), and enables the wanted routes through
// the Tailscale API while keeping every enabled route Stargate does not own.
package tailscale

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"

	tsclient "tailscale.com/client/tailscale/v2"
)

// RouteAdvertiser makes a router advertise exactly the given routes.
type RouteAdvertiser interface {
	Advertise(ctx context.Context, routerIP string, routes []string) error
}

// Router is what Stargate wants of one router.
type Router struct {
	// TailnetIP finds the router's device.
	TailnetIP string
	// Want are the routes that must be advertised and enabled.
	Want []string
	// ManageAdvertisement says Stargate keeps the router's advertised set
	// (DC routers); when false the router's own config does (AKS router).
	ManageAdvertisement bool
}

// RouterResult is what a sync saw and did on one router.
type RouterResult struct {
	TailnetIP string
	// DeviceID is the device's node ID; empty when no device has the IP.
	DeviceID string
	// DeviceName is the device's name.
	DeviceName string
	// Advertised and Enabled are the routes as left.
	Advertised, Enabled []string
	// Unadvertised are wanted routes the router does not advertise: enabled
	// in the API but carrying no traffic until the router advertises them.
	Unadvertised []string
	// EnableWrites counts route-enabling API writes; AdvertiseCalls calls
	// to the advertiser.
	EnableWrites, AdvertiseCalls int
	// Drift is true when enabled routes had to be changed.
	Drift bool
	// Err is why this router could not be synced.
	Err error
}

// ErrDeviceNotFound means no device of the tailnet has the router's IP.
var ErrDeviceNotFound = errors.New("no tailnet device has this IP")

// Syncer syncs routers.
type Syncer struct {
	Client *tsclient.Client
	// Advertiser may be nil: unadvertised routes are then only reported.
	Advertiser RouteAdvertiser
	// Owned says whether an enabled route belongs to Stargate (and may be
	// disabled when no longer wanted).
	Owned func(netip.Prefix) bool
}

// Sync lists the devices once and syncs every router. The error is for a
// failure that hits all routers (listing devices); per-router failures are
// in the results.
func (s *Syncer) Sync(ctx context.Context, routers []Router) ([]RouterResult, error) {
	devices, err := s.Client.Devices().List(ctx, tsclient.WithFields(tsclient.IncludeFieldsAll))
	if err != nil {
		return nil, fmt.Errorf("list tailnet devices: %w", err)
	}
	byIP := map[string]*tsclient.Device{}
	for i := range devices {
		for _, a := range devices[i].Addresses {
			byIP[a] = &devices[i]
		}
	}
	out := make([]RouterResult, 0, len(routers))
	for _, r := range routers {
		res := s.syncRouter(ctx, r, byIP[r.TailnetIP])
		out = append(out, res)
	}
	return out, nil
}

func (s *Syncer) owned(route string) bool {
	p, err := netip.ParsePrefix(route)
	return err == nil && s.Owned != nil && s.Owned(p)
}

func (s *Syncer) syncRouter(ctx context.Context, r Router, dev *tsclient.Device) RouterResult {
	res := RouterResult{TailnetIP: r.TailnetIP}
	if dev == nil {
		res.Err = fmt.Errorf("router %s: %w", r.TailnetIP, ErrDeviceNotFound)
		res.Unadvertised = sorted(r.Want)
		return res
	}
	id := dev.NodeID
	if id == "" {
		id = dev.ID
	}
	res.DeviceID, res.DeviceName = id, dev.Name
	want := set(r.Want)
	advertised := set(dev.AdvertisedRoutes)
	enabled := set(dev.EnabledRoutes)

	if r.ManageAdvertisement && s.Advertiser != nil {
		next := map[string]bool{}
		for a := range advertised {
			if !s.owned(a) || want[a] {
				next[a] = true
			}
		}
		for w := range want {
			next[w] = true
		}
		if !equal(next, advertised) {
			res.AdvertiseCalls++
			if err := s.Advertiser.Advertise(ctx, r.TailnetIP, sorted(keys(next))); err != nil {
				res.Err = fmt.Errorf("advertise routes on %s: %w", r.TailnetIP, err)
			} else if dr, err := s.Client.Devices().SubnetRoutes(ctx, id); err == nil {
				advertised = set(dr.Advertised)
			}
		}
	}

	next := map[string]bool{}
	for e := range enabled {
		if !s.owned(e) || want[e] {
			next[e] = true
		}
	}
	for w := range want {
		next[w] = true
	}
	if !equal(next, enabled) {
		res.Drift = true
		res.EnableWrites++
		if err := s.Client.Devices().SetSubnetRoutes(ctx, id, sorted(keys(next))); err != nil {
			res.Err = errors.Join(res.Err, fmt.Errorf("enable routes on device %s (%s): %w", dev.Name, id, err))
		} else {
			enabled = next
		}
	}
	for w := range want {
		if !advertised[w] {
			res.Unadvertised = append(res.Unadvertised, w)
		}
	}
	sort.Strings(res.Unadvertised)
	res.Advertised, res.Enabled = sorted(keys(advertised)), sorted(keys(enabled))
	return res
}

// Credentials name how to reach the API.
type Credentials struct {
	// APIKey, or ClientID and ClientSecret of an OAuth client.
	APIKey, ClientID, ClientSecret string
	// Tailnet is the tailnet name; "-" (the credential's own) when empty.
	Tailnet string
	// BaseURL overrides https://api.tailscale.com (tests).
	BaseURL string
}

// CredentialsFromEnv reads TS_API_KEY, or TS_OAUTH_CLIENT_ID and
// TS_OAUTH_CLIENT_SECRET, and TS_TAILNET.
func CredentialsFromEnv() Credentials {
	return Credentials{
		APIKey:       os.Getenv("TS_API_KEY"),
		ClientID:     os.Getenv("TS_OAUTH_CLIENT_ID"),
		ClientSecret: os.Getenv("TS_OAUTH_CLIENT_SECRET"),
		Tailnet:      os.Getenv("TS_TAILNET"),
	}
}

// CredentialsFromSecret reads the keys api-key, or client-id and
// client-secret, and optionally tailnet, of a Secret's data.
func CredentialsFromSecret(data map[string][]byte) Credentials {
	return Credentials{
		APIKey:       string(data["api-key"]),
		ClientID:     string(data["client-id"]),
		ClientSecret: string(data["client-secret"]),
		Tailnet:      string(data["tailnet"]),
	}
}

// NewClient builds an API client; OAuth client credentials win over an API key.
func NewClient(c Credentials) (*tsclient.Client, error) {
	cl := &tsclient.Client{Tailnet: c.Tailnet}
	if cl.Tailnet == "" {
		cl.Tailnet = "-"
	}
	switch {
	case c.ClientID != "" && c.ClientSecret != "":
		cl.Auth = &tsclient.OAuth{ClientID: c.ClientID, ClientSecret: c.ClientSecret, Scopes: []string{"devices:core", "devices:routes"}}
	case c.APIKey != "":
		cl.APIKey = c.APIKey
	default:
		return nil, errors.New("no Tailscale credentials: set an API key or OAuth client ID and secret")
	}
	if c.BaseURL != "" {
		u, err := parseURL(c.BaseURL)
		if err != nil {
			return nil, err
		}
		cl.BaseURL = u
	}
	return cl, nil
}

func set(ss []string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sorted(ss []string) []string {
	out := slices.Clone(ss)
	sort.Strings(out)
	return out
}

func equal(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
