// Package tailscale keeps the subnet routes of the tailnet's routers right:
// it finds each router's device by its tailnet IP, has the router advertise
// the routes Stargate wants (through a RouteAdvertiser, e.g. SSH running
// `tailscale set --advertise-routes`), and enables the wanted routes through
// the Tailscale API while keeping every enabled route Stargate does not own.
// Ownership is recorded, not inferred: a Router carries the routes Stargate
// enabled or had advertised on the device (Owned), and Record is called
// with the routes about to be added before any call adds them, so a crash
// between the two cannot leave a route Stargate enabled unrecorded. Only
// owned routes that are no longer wanted are withdrawn.
package tailscale

import (
	"context"
	"errors"
	"fmt"
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
	// Owned are the records of what Stargate added to the device; only
	// records of the device now holding TailnetIP (same device ID, or
	// none recorded) count.
	Owned []Ownership
	// Record, when set, is called before a call that enables or
	// advertises routes, with those that were not enabled (advertised)
	// before; when it fails nothing is added.
	Record func(ctx context.Context, add Ownership) error
}

// Ownership is what Stargate enabled and had advertised on one device.
type Ownership struct {
	DeviceID            string
	Enabled, Advertised []string
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
	// Restored are wanted routes this sync enabled or had advertised
	// that were not before it: new ones, or ones changed outside Stargate.
	Restored []string
	// Owned is what Stargate owns on the device after the sync: what it
	// added and is still enabled (advertised), plus owned routes it could
	// not withdraw. Withdrawn are the owned routes taken away.
	Owned, Withdrawn Ownership
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

func (s *Syncer) syncRouter(ctx context.Context, r Router, dev *tsclient.Device) RouterResult {
	res := RouterResult{TailnetIP: r.TailnetIP}
	if dev == nil {
		res.Err = fmt.Errorf("router %s: %w", r.TailnetIP, ErrDeviceNotFound)
		res.Unadvertised = sorted(r.Want)
		// Nothing is known of the device: what was owned stays owned.
		for _, o := range r.Owned {
			res.Owned.Enabled = append(res.Owned.Enabled, o.Enabled...)
			res.Owned.Advertised = append(res.Owned.Advertised, o.Advertised...)
		}
		res.Owned.Enabled, res.Owned.Advertised = sorted(keys(set(res.Owned.Enabled))), sorted(keys(set(res.Owned.Advertised)))
		return res
	}
	id := dev.NodeID
	if id == "" {
		id = dev.ID
	}
	res.DeviceID, res.DeviceName = id, dev.Name
	res.Owned.DeviceID, res.Withdrawn.DeviceID = id, id
	want := set(r.Want)
	advertised := set(dev.AdvertisedRoutes)
	enabled := set(dev.EnabledRoutes)
	advertisedBefore, enabledBefore := set(dev.AdvertisedRoutes), set(dev.EnabledRoutes)
	ownedEnabled, ownedAdvertised := map[string]bool{}, map[string]bool{}
	for _, o := range r.Owned {
		if o.DeviceID != "" && o.DeviceID != id {
			continue // another device had the address: not this one's routes
		}
		for _, e := range o.Enabled {
			ownedEnabled[e] = true
		}
		for _, a := range o.Advertised {
			ownedAdvertised[a] = true
		}
	}

	if r.ManageAdvertisement && s.Advertiser != nil {
		next, added := nextSet(advertised, want, ownedAdvertised)
		if !equal(next, advertised) {
			res.AdvertiseCalls++
			err := s.record(ctx, r, Ownership{DeviceID: id, Advertised: added})
			if err == nil {
				for _, a := range added {
					ownedAdvertised[a] = true
				}
				err = s.Advertiser.Advertise(ctx, r.TailnetIP, sorted(keys(next)))
				if err != nil {
					err = fmt.Errorf("advertise routes on %s: %w", r.TailnetIP, err)
				}
			}
			if err != nil {
				res.Err = err
			} else {
				for a := range ownedAdvertised {
					if !next[a] {
						res.Withdrawn.Advertised = append(res.Withdrawn.Advertised, a)
						delete(ownedAdvertised, a)
					}
				}
				if dr, err := s.Client.Devices().SubnetRoutes(ctx, id); err == nil {
					advertised = set(dr.Advertised)
				} else {
					advertised = next
				}
			}
		}
	}
	if res.Err == nil || !r.ManageAdvertisement {
		for a := range ownedAdvertised {
			// An owned route the router no longer advertises (someone
			// took it away) is no longer Stargate's to withdraw.
			if !advertised[a] && !want[a] {
				delete(ownedAdvertised, a)
			}
		}
	}

	next, added := nextSet(enabled, want, ownedEnabled)
	if !equal(next, enabled) {
		res.Drift = true
		res.EnableWrites++
		err := s.record(ctx, r, Ownership{DeviceID: id, Enabled: added})
		if err == nil {
			for _, e := range added {
				ownedEnabled[e] = true
			}
			if err = s.Client.Devices().SetSubnetRoutes(ctx, id, sorted(keys(next))); err != nil {
				err = fmt.Errorf("enable routes on device %s (%s): %w", dev.Name, id, err)
			}
		}
		if err != nil {
			res.Err = errors.Join(res.Err, err)
		} else {
			enabled = next
		}
	}
	for e := range ownedEnabled {
		if !enabled[e] {
			if !want[e] {
				res.Withdrawn.Enabled = append(res.Withdrawn.Enabled, e)
			}
			delete(ownedEnabled, e)
		}
	}
	for w := range want {
		if !advertised[w] {
			res.Unadvertised = append(res.Unadvertised, w)
		}
	}
	for w := range want {
		if (enabled[w] && !enabledBefore[w]) || (advertised[w] && !advertisedBefore[w]) {
			res.Restored = append(res.Restored, w)
		}
	}
	sort.Strings(res.Restored)
	sort.Strings(res.Unadvertised)
	sort.Strings(res.Withdrawn.Enabled)
	sort.Strings(res.Withdrawn.Advertised)
	res.Advertised, res.Enabled = sorted(keys(advertised)), sorted(keys(enabled))
	res.Owned.Enabled, res.Owned.Advertised = sorted(keys(ownedEnabled)), sorted(keys(ownedAdvertised))
	return res
}

// nextSet is have without the owned routes no longer wanted, plus want;
// added are the wanted routes have lacks.
func nextSet(have, want, owned map[string]bool) (next map[string]bool, added []string) {
	next = map[string]bool{}
	for h := range have {
		if !owned[h] || want[h] {
			next[h] = true
		}
	}
	for w := range want {
		next[w] = true
		if !have[w] {
			added = append(added, w)
		}
	}
	sort.Strings(added)
	return next, added
}

func (s *Syncer) record(ctx context.Context, r Router, add Ownership) error {
	if r.Record == nil || len(add.Enabled)+len(add.Advertised) == 0 {
		return nil
	}
	if err := r.Record(ctx, add); err != nil {
		return fmt.Errorf("record the routes Stargate adds to %s before adding them: %w", r.TailnetIP, err)
	}
	return nil
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
