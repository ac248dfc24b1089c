// Package azure keeps the Stargate-owned routes of an Azure VNet route table
// right. It reads the table, diffs the routes whose name carries Stargate's
// prefix against the wanted ones, and writes all changes in one PUT of the
// table guarded by its ETag, so routes of others are never touched and a
// concurrent writer is never overwritten.
package azure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

// Route is one route of the table, as Stargate sees it.
type Route struct {
	// Name is the route's name; Stargate's carry its prefix.
	Name string
	// AddressPrefix is the destination CIDR.
	AddressPrefix string
	// NextHop is the next-hop IP of a VirtualAppliance route; empty for
	// other next-hop types.
	NextHop string
}

func (r Route) String() string {
	if r.NextHop == "" {
		return r.AddressPrefix
	}
	return r.AddressPrefix + " via " + r.NextHop
}

// Table is one route table and the name prefix that marks Stargate's routes.
type Table struct {
	Client        *armnetwork.RouteTablesClient
	ResourceGroup string
	Name          string
	// Prefix marks the routes Stargate owns, e.g. "stargate-".
	Prefix string
	// MaxRoutes is the route limit of the table (Azure's is 400); a write
	// that would pass it is not attempted.
	MaxRoutes int
	// ConflictRetries is how often a write refused with 412 is re-read and
	// tried again before giving up.
	ConflictRetries int
	// PollFrequency is how often a long-running PUT is polled (at least
	// a second, the SDK's minimum; 5s when 0).
	PollFrequency time.Duration
	// OperationTimeout bounds one PUT of the table, its long-running
	// operation polled to the end included (DefaultOperationTimeout when
	// 0): an operation that hangs fails the write with ErrOperationTimeout
	// instead of holding the pass.
	OperationTimeout time.Duration
}

// DefaultOperationTimeout bounds a route table PUT and its polling.
const DefaultOperationTimeout = 2 * time.Minute

// DefaultTryTimeout bounds each HTTP request (one try) to the Azure API.
const DefaultTryTimeout = 30 * time.Second

// ErrOperationTimeout means a long-running operation did not complete
// within Table.OperationTimeout.
var ErrOperationTimeout = errors.New("long-running operation did not complete in time")

// ClientOptions are the pipeline options Stargate uses: the SDK's retry
// policy honours Retry-After on 429 (and 503) and backs off exponentially
// on 5xx; transport, when not nil, replaces the HTTP client (tests pass the
// SDK's fake server transport).
func ClientOptions(transport policy.Transporter) *arm.ClientOptions {
	o := &arm.ClientOptions{}
	o.Retry = policy.RetryOptions{
		MaxRetries:    6,
		RetryDelay:    time.Second,
		MaxRetryDelay: time.Minute,
		StatusCodes:   []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout},
		// A request that hangs is given up and retried.
		TryTimeout: DefaultTryTimeout,
	}
	if transport != nil {
		o.Transport = transport
	}
	return o
}

// NewRouteTablesClient builds a client with azidentity's default credential
// chain (environment, workload identity, managed identity, Azure CLI).
func NewRouteTablesClient(subscriptionID string, opts *arm.ClientOptions) (*armnetwork.RouteTablesClient, error) {
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("azure credentials: %w", err)
	}
	return armnetwork.NewRouteTablesClient(subscriptionID, cred, opts)
}

// Snapshot is the table as last read.
type Snapshot struct {
	ETag string
	// Owned are Stargate's routes, sorted by name.
	Owned []Route
	// Foreign counts the routes of others.
	Foreign int
	// Total counts every route.
	Total int
}

// Diff is what a sync changes.
type Diff struct {
	Add, Update, Delete []Route
}

// Empty says whether nothing changes.
func (d Diff) Empty() bool { return len(d.Add)+len(d.Update)+len(d.Delete) == 0 }

// Result says what a Sync saw and did.
type Result struct {
	// Before is the table as first read; After as left (Before when
	// nothing was written).
	Before, After Snapshot
	// Diff is the change written last (empty when the table was right).
	Diff Diff
	// Writes counts PUTs of the table that succeeded; Conflicts those
	// refused with 412.
	Writes, Conflicts int
}

// ErrRouteLimit means the wanted routes do not fit under the table's limit.
var ErrRouteLimit = errors.New("route table limit")

// Read reads the table.
func (t *Table) Read(ctx context.Context) (Snapshot, armnetwork.RouteTable, error) {
	resp, err := t.Client.Get(ctx, t.ResourceGroup, t.Name, nil)
	if err != nil {
		return Snapshot{}, armnetwork.RouteTable{}, fmt.Errorf("get route table %s/%s: %w", t.ResourceGroup, t.Name, err)
	}
	return t.snapshot(resp.RouteTable), resp.RouteTable, nil
}

func (t *Table) snapshot(rt armnetwork.RouteTable) Snapshot {
	s := Snapshot{ETag: str(rt.Etag)}
	if rt.Properties == nil {
		return s
	}
	for _, r := range rt.Properties.Routes {
		if r == nil {
			continue
		}
		s.Total++
		name := str(r.Name)
		if !t.owns(name) {
			s.Foreign++
			continue
		}
		s.Owned = append(s.Owned, fromARM(r))
	}
	sort.Slice(s.Owned, func(i, j int) bool { return s.Owned[i].Name < s.Owned[j].Name })
	return s
}

func (t *Table) owns(name string) bool { return strings.HasPrefix(name, t.Prefix) }

func fromARM(r *armnetwork.Route) Route {
	out := Route{Name: str(r.Name)}
	if p := r.Properties; p != nil {
		out.AddressPrefix = str(p.AddressPrefix)
		if p.NextHopType != nil && *p.NextHopType == armnetwork.RouteNextHopTypeVirtualAppliance {
			out.NextHop = str(p.NextHopIPAddress)
		}
	}
	return out
}

func toARM(r Route) *armnetwork.Route {
	return &armnetwork.Route{
		Name: to.Ptr(r.Name),
		Properties: &armnetwork.RoutePropertiesFormat{
			AddressPrefix:    to.Ptr(r.AddressPrefix),
			NextHopType:      to.Ptr(armnetwork.RouteNextHopTypeVirtualAppliance),
			NextHopIPAddress: to.Ptr(r.NextHop),
		},
	}
}

// DiffOwned compares Stargate's routes in a table with the wanted ones.
func DiffOwned(owned, want []Route) Diff {
	have := make(map[string]Route, len(owned))
	for _, r := range owned {
		have[r.Name] = r
	}
	var d Diff
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w.Name] = true
		h, ok := have[w.Name]
		switch {
		case !ok:
			d.Add = append(d.Add, w)
		case h != w:
			d.Update = append(d.Update, w)
		}
	}
	for _, h := range owned {
		if !wanted[h.Name] {
			d.Delete = append(d.Delete, h)
		}
	}
	return d
}

// Sync makes Stargate's routes in the table equal want (every name must
// carry the prefix) and leaves all other routes as they are. All changes go
// out in one PUT with If-Match; when someone else wrote in between (412),
// the table is read again and the diff recomputed.
func (t *Table) Sync(ctx context.Context, want []Route) (Result, error) {
	for _, w := range want {
		if !t.owns(w.Name) {
			return Result{}, fmt.Errorf("route %s lacks the owned prefix %q", w.Name, t.Prefix)
		}
	}
	var res Result
	retries := t.ConflictRetries
	if retries <= 0 {
		retries = 5
	}
	for attempt := 0; ; attempt++ {
		snap, rt, err := t.Read(ctx)
		if err != nil {
			return res, err
		}
		if attempt == 0 {
			res.Before = snap
		}
		res.After = snap
		d := DiffOwned(snap.Owned, want)
		res.Diff = d
		if d.Empty() {
			return res, nil
		}
		if t.MaxRoutes > 0 && snap.Foreign+len(want) > t.MaxRoutes {
			return res, fmt.Errorf("%w: %d routes of others and %d of Stargate's would pass the limit of %d in %s",
				ErrRouteLimit, snap.Foreign, len(want), t.MaxRoutes, t.Name)
		}
		after, err := t.put(ctx, rt, want, snap.ETag)
		if err == nil {
			res.Writes++
			res.After = after
			return res, nil
		}
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusPreconditionFailed && attempt < retries {
			res.Conflicts++
			continue
		}
		return res, err
	}
}

// put writes rt with its Stargate routes replaced by want.
func (t *Table) put(ctx context.Context, rt armnetwork.RouteTable, want []Route, etag string) (Snapshot, error) {
	if rt.Properties == nil {
		rt.Properties = &armnetwork.RouteTablePropertiesFormat{}
	}
	routes := make([]*armnetwork.Route, 0, len(rt.Properties.Routes)+len(want))
	for _, r := range rt.Properties.Routes {
		if r != nil && !t.owns(str(r.Name)) {
			routes = append(routes, r)
		}
	}
	for _, w := range want {
		routes = append(routes, toARM(w))
	}
	rt.Properties.Routes = routes
	// Azure ignores read-only fields on PUT; dropping them keeps the body small.
	rt.Properties.Subnets = nil
	rt.Properties.ProvisioningState = nil
	timeout := t.OperationTimeout
	if timeout <= 0 {
		timeout = DefaultOperationTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%w: put route table %s/%s still running after %v", ErrOperationTimeout, t.ResourceGroup, t.Name, timeout))
	defer cancel()
	if etag != "" {
		ctx = policy.WithHTTPHeader(ctx, http.Header{"If-Match": []string{etag}})
	}
	poller, err := t.Client.BeginCreateOrUpdate(ctx, t.ResourceGroup, t.Name, rt, nil)
	if err != nil {
		return Snapshot{}, fmt.Errorf("put route table %s/%s: %w", t.ResourceGroup, t.Name, err)
	}
	freq := t.PollFrequency
	if freq <= 0 {
		freq = 5 * time.Second
	}
	freq = max(freq, time.Second) // the SDK's minimum
	resp, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: freq})
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrOperationTimeout) {
			return Snapshot{}, cause
		}
		return Snapshot{}, fmt.Errorf("put route table %s/%s: %w", t.ResourceGroup, t.Name, err)
	}
	return t.snapshot(resp.RouteTable), nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
