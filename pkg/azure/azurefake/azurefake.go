// Package azurefake is an in-memory Azure route table behind the SDK's own
// armnetwork fake servers, for tests and benchmarks. Every write bumps the
// table's ETag; a PUT with a stale If-Match gets 412. Faults (412, 429 with
// Retry-After, 500) can be queued for the next writes, or every n-th write
// throttled with 429; fixed latencies model Azure's slow long-running PUTs.
// No traffic leaves the process.
package azurefake

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7/fake"
)

// Fault is an answer forced on a coming write.
type Fault struct {
	// Status is the HTTP status: 412, 429, 500, ...
	Status int
	// RetryAfter is the Retry-After header value, e.g. "1".
	RetryAfter string
}

// Stats counts calls that reached the fake.
type Stats struct {
	Reads, Writes int
	// RejectedWrites counts every write refused: queued faults, throttled
	// writes and 412s.
	RejectedWrites int
	// Conflicts counts writes refused with 412 because their If-Match was
	// not the table's ETag any more (a genuine race, not a queued fault).
	Conflicts int
	// Throttled counts writes answered 429 (queued or by ThrottleWrites).
	Throttled int
	// EarlyRetries counts writes sent by a client (told apart by its
	// User-Agent) before the Retry-After of its last 429 had passed.
	EarlyRetries int
}

// Change is one accepted write: the routes (name -> "prefix via next hop")
// before and after it.
type Change struct {
	Before, After map[string]string
}

// Table is one in-memory route table, served through the SDK fakes.
type Table struct {
	ResourceGroup, Name string
	// ReadLatency and WriteLatency are slept on each read and write.
	ReadLatency, WriteLatency time.Duration

	mu     sync.Mutex
	etag   int
	routes []armnetwork.Route
	faults []Fault
	stats  Stats
	// ifMatch records the If-Match of every table PUT, in order.
	ifMatch []string
	// beforeWrite runs once before the next write is applied, e.g. to
	// play a second controller writing in between.
	beforeWrite func()
	// throttleEvery answers every n-th write request with 429 and
	// throttleAfter as Retry-After; writeRequests counts them.
	throttleEvery, writeRequests int
	throttleAfter                string
	// retryAt is, per User-Agent, when its last 429 allows a retry.
	retryAt map[string]time.Time
	// hangWrites is how many of the next table PUTs never complete: the
	// write is applied, but the long-running operation stays in progress.
	hangWrites int
	// history records accepted writes when keepHistory is set.
	keepHistory bool
	history     []Change
}

// New returns an empty table.
func New(resourceGroup, name string) *Table {
	return &Table{ResourceGroup: resourceGroup, Name: name, etag: 1, retryAt: map[string]time.Time{}}
}

type ifMatchKey struct{}

// Transport is what ClientOptions.Transport takes: the SDK's fake server
// for RouteTables and Routes, behind a shim that plays queued faults as real
// HTTP answers (so the SDK's retry policy sees Retry-After) and hands the
// If-Match header to the fake.
func (t *Table) Transport() policy.Transporter {
	inner := fake.NewServerFactoryTransport(&fake.ServerFactory{
		RouteTablesServer: fake.RouteTablesServer{
			Get:                 t.get,
			BeginCreateOrUpdate: t.putTable,
		},
		RoutesServer: fake.RoutesServer{
			BeginCreateOrUpdate: t.putRoute,
			BeginDelete:         t.deleteRoute,
		},
	})
	return transport(func(req *http.Request) (*http.Response, error) {
		if req.Method == http.MethodPut || req.Method == http.MethodDelete {
			if f, ok := t.nextFault(req.Header.Get("User-Agent")); ok {
				return faultResponse(req, f), nil
			}
		}
		ctx := context.WithValue(req.Context(), ifMatchKey{}, req.Header.Get("If-Match"))
		return inner.Do(req.WithContext(ctx))
	})
}

type transport func(*http.Request) (*http.Response, error)

func (f transport) Do(req *http.Request) (*http.Response, error) { return f(req) }

func faultResponse(req *http.Request, f Fault) *http.Response {
	code := map[int]string{412: "PreconditionFailed", 429: "TooManyRequests", 500: "InternalServerError"}[f.Status]
	if code == "" {
		code = http.StatusText(f.Status)
	}
	body := fmt.Sprintf(`{"error":{"code":%q,"message":"injected by the test"}}`, code)
	h := http.Header{"Content-Type": []string{"application/json"}}
	if f.RetryAfter != "" {
		h.Set("Retry-After", f.RetryAfter)
	}
	return &http.Response{
		StatusCode: f.Status, Status: fmt.Sprintf("%d %s", f.Status, http.StatusText(f.Status)),
		Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: req,
	}
}

// nextFault says how a write request from the client ua is answered: a
// queued fault, a throttling 429, or (false) normally.
func (t *Table) nextFault(ua string) (Fault, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if at, ok := t.retryAt[ua]; ok {
		if now.Before(at) {
			t.stats.EarlyRetries++
		}
		delete(t.retryAt, ua)
	}
	t.writeRequests++
	var f Fault
	switch {
	case len(t.faults) > 0:
		f = t.faults[0]
		t.faults = t.faults[1:]
	case t.throttleEvery > 0 && t.writeRequests%t.throttleEvery == 0:
		f = Fault{Status: http.StatusTooManyRequests, RetryAfter: t.throttleAfter}
	default:
		return Fault{}, false
	}
	t.stats.RejectedWrites++
	if f.Status == http.StatusTooManyRequests {
		t.stats.Throttled++
		if secs, err := strconv.Atoi(f.RetryAfter); err == nil {
			t.retryAt[ua] = now.Add(time.Duration(secs) * time.Second)
		}
	}
	return f, true
}

// ThrottleWrites answers every n-th write request (counting from now on,
// queued faults included) with 429 and the Retry-After retryAfter, as
// Azure Resource Manager does when a subscription's write budget runs out.
// n <= 0 stops throttling.
func (t *Table) ThrottleWrites(n int, retryAfter string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.throttleEvery, t.throttleAfter, t.writeRequests = n, retryAfter, 0
}

// KeepHistory makes the table record every accepted write from now on.
func (t *Table) KeepHistory() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keepHistory = true
}

// History returns the accepted writes recorded since KeepHistory.
func (t *Table) History() []Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Change(nil), t.history...)
}

// FailNext queues faults for the coming writes, in order.
func (t *Table) FailNext(f ...Fault) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.faults = append(t.faults, f...)
}

// BeforeNextWrite runs fn once, right before the next write is applied
// (after its If-Match was taken), outside the table's lock.
func (t *Table) BeforeNextWrite(fn func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.beforeWrite = fn
}

// Stats returns the call counts so far.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// IfMatches returns the If-Match header of every table PUT so far.
func (t *Table) IfMatches() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.ifMatch...)
}

// ETag is the table's current ETag.
func (t *Table) ETag() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.etagLocked()
}

func (t *Table) etagLocked() string { return fmt.Sprintf(`W/"%d"`, t.etag) }

// Routes returns a copy of the routes, in table order.
func (t *Table) Routes() []armnetwork.Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	return cloneRoutes(t.routes)
}

// RouteMap returns name -> "prefix via nexthop".
func (t *Table) RouteMap() map[string]string {
	return routeMap(t.Routes())
}

func routeMap(routes []armnetwork.Route) map[string]string {
	out := make(map[string]string, len(routes))
	for _, r := range routes {
		desc := ""
		if p := r.Properties; p != nil {
			desc = to2(p.AddressPrefix) + " via " + to2(p.NextHopIPAddress)
		}
		out[to2(r.Name)] = desc
	}
	return out
}

// Set replaces or adds a route out of band (another actor, or drift).
func (t *Table) Set(name, prefix, nextHop string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := route(name, prefix, nextHop)
	for i := range t.routes {
		if to2(t.routes[i].Name) == name {
			t.routes[i] = r
			t.etag++
			return
		}
	}
	t.routes = append(t.routes, r)
	t.etag++
}

// Delete removes a route out of band.
func (t *Table) Delete(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deleteLocked(name)
}

func (t *Table) deleteLocked(name string) bool {
	for i := range t.routes {
		if to2(t.routes[i].Name) == name {
			t.routes = append(t.routes[:i], t.routes[i+1:]...)
			t.etag++
			return true
		}
	}
	return false
}

func route(name, prefix, nextHop string) armnetwork.Route {
	return armnetwork.Route{
		Name: to.Ptr(name),
		Properties: &armnetwork.RoutePropertiesFormat{
			AddressPrefix:    to.Ptr(prefix),
			NextHopType:      to.Ptr(armnetwork.RouteNextHopTypeVirtualAppliance),
			NextHopIPAddress: to.Ptr(nextHop),
		},
	}
}

func (t *Table) tableLocked() armnetwork.RouteTable {
	routes := make([]*armnetwork.Route, len(t.routes))
	for i := range t.routes {
		r := t.routes[i]
		routes[i] = &r
	}
	return armnetwork.RouteTable{
		ID:         to.Ptr(fmt.Sprintf("/subscriptions/sub/resourceGroups/%s/providers/Microsoft.Network/routeTables/%s", t.ResourceGroup, t.Name)),
		Name:       to.Ptr(t.Name),
		Location:   to.Ptr("westeurope"),
		Etag:       to.Ptr(t.etagLocked()),
		Properties: &armnetwork.RouteTablePropertiesFormat{Routes: routes, ProvisioningState: to.Ptr(armnetwork.ProvisioningStateSucceeded)},
	}
}

func (t *Table) check(rg, name string) bool { return rg == t.ResourceGroup && name == t.Name }

func (t *Table) get(ctx context.Context, rg, name string, _ *armnetwork.RouteTablesClientGetOptions) (resp azfake.Responder[armnetwork.RouteTablesClientGetResponse], errResp azfake.ErrorResponder) {
	sleep(ctx, t.ReadLatency)
	if !t.check(rg, name) {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.Reads++
	resp.SetResponse(http.StatusOK, armnetwork.RouteTablesClientGetResponse{RouteTable: t.tableLocked()}, nil)
	return
}

// write runs the common part of every write: latency, the racing hook, the
// If-Match check; apply changes the routes under the lock.
func (t *Table) write(ctx context.Context, apply func()) (status int, code string) {
	sleep(ctx, t.WriteLatency)
	ifMatch, _ := ctx.Value(ifMatchKey{}).(string)
	t.mu.Lock()
	hook := t.beforeWrite
	t.beforeWrite = nil
	t.mu.Unlock()
	if hook != nil {
		hook()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ifMatch != "" && ifMatch != "*" && ifMatch != t.etagLocked() {
		t.stats.RejectedWrites++
		t.stats.Conflicts++
		return http.StatusPreconditionFailed, "PreconditionFailed"
	}
	var before map[string]string
	if t.keepHistory {
		before = routeMap(t.routes)
	}
	apply()
	if t.keepHistory {
		t.history = append(t.history, Change{Before: before, After: routeMap(t.routes)})
	}
	t.etag++
	t.stats.Writes++
	return http.StatusOK, ""
}

func (t *Table) putTable(ctx context.Context, rg, name string, rt armnetwork.RouteTable, _ *armnetwork.RouteTablesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armnetwork.RouteTablesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
	if !t.check(rg, name) {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	t.mu.Lock()
	im, _ := ctx.Value(ifMatchKey{}).(string)
	t.ifMatch = append(t.ifMatch, im)
	t.mu.Unlock()
	var out armnetwork.RouteTable
	status, code := t.write(ctx, func() {
		t.routes = t.routes[:0]
		if rt.Properties != nil {
			for _, r := range rt.Properties.Routes {
				if r != nil {
					t.routes = append(t.routes, *r)
				}
			}
		}
	})
	if status != http.StatusOK {
		errResp.SetResponseError(status, code)
		return
	}
	t.mu.Lock()
	out = t.tableLocked()
	hang := t.hangWrites > 0
	if hang {
		t.hangWrites--
	}
	t.mu.Unlock()
	if hang {
		// In progress for as long as anyone polls at the SDK's minimum
		// frequency of a second (over a day).
		for range 100000 {
			resp.AddNonTerminalResponse(http.StatusCreated, nil)
		}
	}
	resp.SetTerminalResponse(http.StatusOK, armnetwork.RouteTablesClientCreateOrUpdateResponse{RouteTable: out}, nil)
	return
}

// HangNextWrites makes the next n table PUTs long-running operations that
// do not complete: the routes are written, but polling never sees the end.
func (t *Table) HangNextWrites(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hangWrites = n
}

func (t *Table) putRoute(ctx context.Context, rg, table, name string, r armnetwork.Route, _ *armnetwork.RoutesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armnetwork.RoutesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
	if !t.check(rg, table) {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	r.Name = to.Ptr(name)
	status, code := t.write(ctx, func() {
		for i := range t.routes {
			if to2(t.routes[i].Name) == name {
				t.routes[i] = r
				return
			}
		}
		t.routes = append(t.routes, r)
	})
	if status != http.StatusOK {
		errResp.SetResponseError(status, code)
		return
	}
	resp.SetTerminalResponse(http.StatusOK, armnetwork.RoutesClientCreateOrUpdateResponse{Route: r}, nil)
	return
}

func (t *Table) deleteRoute(ctx context.Context, rg, table, name string, _ *armnetwork.RoutesClientBeginDeleteOptions) (resp azfake.PollerResponder[armnetwork.RoutesClientDeleteResponse], errResp azfake.ErrorResponder) {
	if !t.check(rg, table) {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	status, code := t.write(ctx, func() {
		for i := range t.routes {
			if to2(t.routes[i].Name) == name {
				t.routes = append(t.routes[:i], t.routes[i+1:]...)
				return
			}
		}
	})
	if status != http.StatusOK {
		errResp.SetResponseError(status, code)
		return
	}
	resp.SetTerminalResponse(http.StatusOK, armnetwork.RoutesClientDeleteResponse{}, nil)
	return
}

func cloneRoutes(in []armnetwork.Route) []armnetwork.Route {
	out := make([]armnetwork.Route, len(in))
	copy(out, in)
	return out
}

func to2(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
