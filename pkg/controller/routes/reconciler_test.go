package routes

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/azure"
	"github.com/stargate-k8s/stargate/pkg/azure/azurefake"
	"github.com/stargate-k8s/stargate/pkg/cilium"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/pkg/ipam"
	"github.com/stargate-k8s/stargate/pkg/tailscale"
	"github.com/stargate-k8s/stargate/pkg/tailscale/tailscalefake"
)

func testServers(n int, cidr func(i int) string) []client.Object {
	var out []client.Object
	for i := range n {
		dc := fmt.Sprintf("dc-%d", i%2)
		out = append(out, &v1alpha1.Server{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w%02d", i), Namespace: dc, Generation: 1},
			Spec:       v1alpha1.ServerSpec{Hostname: fmt.Sprintf("w%02d", i), IPAddress: fmt.Sprintf("10.50.%d.%d", i%2, 10+i), RouterIP: fmt.Sprintf("100.64.1.%d", i%2)},
			Status:     v1alpha1.ServerStatus{PodCIDR: cidr(i)},
		})
	}
	return out
}

// testDatacenters declares dc-0 and dc-1, the namespaces of testServers.
func testDatacenters() []client.Object {
	var out []client.Object
	for d := range 2 {
		out = append(out, &v1alpha1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("dc-%d", d)},
			Spec: v1alpha1.DatacenterSpec{Namespace: fmt.Sprintf("dc-%d", d), WorkerSubnet: fmt.Sprintf("10.50.%d.0/24", d),
				Router: v1alpha1.DatacenterRouter{IP: fmt.Sprintf("100.64.1.%d", d)}, AgentGateway: fmt.Sprintf("10.50.%d.1", d)},
		})
	}
	return out
}

type fixture struct {
	r   *Reconciler
	az  *azurefake.Table
	ts  *tailscalefake.Server
	kub client.Client
}

func newFixture(t *testing.T, pool ipam.Config, objs []client.Object) *fixture {
	t.Helper()
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(cilium.CiliumNodeGVK, meta.RESTScopeRoot)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Node"}, meta.RESTScopeRoot)
	mapper.Add(v1alpha1.SchemeGroupVersion.WithKind("Server"), meta.RESTScopeNamespace)
	mapper.Add(v1alpha1.SchemeGroupVersion.WithKind("Datacenter"), meta.RESTScopeRoot)
	objs = append(testDatacenters(), objs...)
	kube := fake.NewClientBuilder().WithScheme(manager.Scheme).WithRESTMapper(mapper).WithObjects(objs...).WithStatusSubresource(&v1alpha1.Server{}, &v1alpha1.Datacenter{}).Build()
	az := azurefake.New("rg", "rt")
	rtc, err := armnetwork.NewRouteTablesClient("sub", &azfake.TokenCredential{}, azure.ClientOptions(az.Transport()))
	if err != nil {
		t.Fatal(err)
	}
	ts := tailscalefake.New("key", "", "")
	t.Cleanup(ts.Close)
	for d := range 2 {
		ts.AddDevice(tailscalefake.Device{NodeID: fmt.Sprintf("n%d", d), Name: fmt.Sprintf("r%d", d), Addresses: []string{fmt.Sprintf("100.64.1.%d", d)}})
	}
	tsc, err := tailscale.NewClient(tailscale.Credentials{APIKey: "key", BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.EnableAzure, o.EnableTailscale, o.EnableCilium = true, true, false
	o.AzureNextHop = "10.224.0.4"
	r := &Reconciler{Options: o, Pool: pool, Client: kube, CiliumReader: kube, Recorder: &record.FakeRecorder{},
		AzureTable: &azure.Table{Client: rtc, ResourceGroup: "rg", Name: "rt", Prefix: o.RoutePrefix, MaxRoutes: o.MaxRoutes},
		Tailscale:  &tailscale.Syncer{Client: tsc}, Now: time.Now}
	return &fixture{r: r, az: az, ts: ts, kub: kube}
}

func (f *fixture) server(t *testing.T, ns, name string) *v1alpha1.Server {
	t.Helper()
	var s v1alpha1.Server
	if err := f.kub.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestRouteLimitIsAConditionThatSuggestsBlocks(t *testing.T) {
	pool := ipam.Config{Pool: netip.MustParsePrefix("10.244.0.0/16"), Size: 24}
	f := newFixture(t, pool, testServers(12, func(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }))
	f.r.AzureTable.MaxRoutes = 10 // 12 pod + 2 subnet routes do not fit
	if _, err := f.r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := f.server(t, "dc-0", "w00")
	c := meta.FindStatusCondition(s.Status.Conditions, "AzureRouteSynced")
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "RouteLimitExceeded" || !strings.Contains(c.Message, "-datacenter-block-size") {
		t.Fatalf("AzureRouteSynced %+v", c)
	}
	if f.az.Stats().Writes != 0 {
		t.Fatal("wrote past the route limit")
	}

	// Near the limit: synced, but the condition says so.
	f.r.AzureTable.MaxRoutes, f.r.MaxRoutes = 15, 15
	if _, err := f.r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = f.server(t, "dc-0", "w00")
	c = meta.FindStatusCondition(s.Status.Conditions, "AzureRouteSynced")
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != "NearRouteLimit" || !strings.Contains(c.Message, "14 of at most 15") {
		t.Fatalf("AzureRouteSynced near the limit %+v", c)
	}
}

func TestBlocksNeedOneAzureRoutePerDatacenterBlock(t *testing.T) {
	pool := ipam.Config{Pool: netip.MustParsePrefix("10.244.0.0/16"), Size: 24, BlockSize: 20}
	// dc-0 servers in 10.244.0.0/20, dc-1 in 10.244.16.0/20.
	f := newFixture(t, pool, testServers(12, func(i int) string { return fmt.Sprintf("10.244.%d.0/24", (i%2)*16+i/2) }))
	azBefore, tsBefore := testutil.ToFloat64(routeWrites.WithLabelValues("azure")), testutil.ToFloat64(routeWrites.WithLabelValues("tailscale"))
	st, err := f.r.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := testutil.ToFloat64(routeWrites.WithLabelValues("azure")) - azBefore; d != 1 {
		t.Fatalf("stargate_route_writes_total{layer=azure} rose by %v, want 1", d)
	}
	if d := testutil.ToFloat64(routeWrites.WithLabelValues("tailscale")) - tsBefore; d != 2 {
		t.Fatalf("stargate_route_writes_total{layer=tailscale} rose by %v, want 2", d)
	}
	// Drift: the same wanted state, a route gone: the next pass repairs
	// it and counts the repair.
	driftBefore := testutil.ToFloat64(driftRepaired.WithLabelValues("azure"))
	f.az.Delete("stargate-block-10-244-0-0-20")
	if st, err := f.r.Pass(context.Background()); err != nil || st.Drift["azure"] != 1 {
		t.Fatalf("drift pass: %+v %v", st, err)
	}
	if d := testutil.ToFloat64(driftRepaired.WithLabelValues("azure")) - driftBefore; d != 1 {
		t.Fatalf("stargate_route_drift_repaired_total{layer=azure} rose by %v, want 1", d)
	}
	m := f.az.RouteMap()
	if len(m) != 4 || m["stargate-block-10-244-0-0-20"] == "" || m["stargate-block-10-244-16-0-20"] == "" {
		t.Fatalf("table %v, want 2 block + 2 subnet routes", m)
	}
	if st.AzureWrites != 1 || st.TailscaleWrites != 2 || f.az.Stats().Writes != 2 {
		t.Fatalf("writes azure=%d tailscale=%d", st.AzureWrites, st.TailscaleWrites)
	}
	if got := f.ts.Device("n1").Enabled; len(got) != 2 || got[0] != "10.244.16.0/20" {
		t.Fatalf("router 1 enabled %v", got)
	}
}

func TestUnadvertisedRoutesAreReportedNotHidden(t *testing.T) {
	pool := ipam.Config{Pool: netip.MustParsePrefix("10.244.0.0/16"), Size: 24}
	f := newFixture(t, pool, testServers(2, func(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }))
	if _, err := f.r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := f.server(t, "dc-0", "w00")
	c := meta.FindStatusCondition(s.Status.Conditions, "TailscaleRoutesApproved")
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "NotAdvertised" || !strings.Contains(c.Message, "10.244.0.0/24") {
		t.Fatalf("TailscaleRoutesApproved %+v", c)
	}
	if r := meta.FindStatusCondition(s.Status.Conditions, "RoutesReady"); r == nil || r.Status != metav1.ConditionFalse || !strings.Contains(r.Message, "tailscale: NotAdvertised") {
		t.Fatalf("RoutesReady %+v", r)
	}
	// Once the router advertises, the next pass reports it healthy, and a
	// pass after that writes nothing.
	if err := f.ts.SetAdvertisedByIP("100.64.1.0", []string{"10.244.0.0/24", "10.50.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = f.server(t, "dc-0", "w00")
	if c := meta.FindStatusCondition(s.Status.Conditions, "TailscaleRoutesApproved"); c.Status != metav1.ConditionTrue || c.Reason != "Approved" {
		t.Fatalf("after advertising: %+v", c)
	}
	st, err := f.r.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.AzureWrites+st.TailscaleWrites+st.StatusWrites+st.FinalizerWrites != 0 {
		t.Fatalf("steady pass wrote: %+v", st)
	}
}

// Servers outside any datacenter, or outside their datacenter's network,
// are not routed on any layer, and their layers say why.
func TestServerOutsideItsDatacenterIsNotRouted(t *testing.T) {
	pool := ipam.Config{Pool: netip.MustParsePrefix("10.244.0.0/16"), Size: 24}
	objs := testServers(2, func(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) })
	outside := &v1alpha1.Server{
		ObjectMeta: metav1.ObjectMeta{Name: "x1", Namespace: "dc-9", Generation: 1},
		Spec:       v1alpha1.ServerSpec{Hostname: "x1", IPAddress: "10.50.9.10", RouterIP: "100.64.1.0"},
		Status:     v1alpha1.ServerStatus{PodCIDR: "10.244.9.0/24"},
	}
	misfit := &v1alpha1.Server{
		ObjectMeta: metav1.ObjectMeta{Name: "x2", Namespace: "dc-0", Generation: 1},
		Spec:       v1alpha1.ServerSpec{Hostname: "x2", IPAddress: "10.77.0.10", RouterIP: "100.64.1.0"},
		Status:     v1alpha1.ServerStatus{PodCIDR: "10.244.8.0/24"},
	}
	f := newFixture(t, pool, append(objs, outside, misfit))
	if _, err := f.r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.az.Routes() {
		if p := *r.Properties.AddressPrefix; p == "10.244.9.0/24" || p == "10.244.8.0/24" || p == "10.50.9.0/24" || p == "10.77.0.0/24" {
			t.Errorf("Azure route %s for a Server outside its datacenter", p)
		}
	}
	if d := f.ts.Device("n0"); slices.Contains(d.Enabled, "10.244.9.0/24") || slices.Contains(d.Enabled, "10.244.8.0/24") {
		t.Errorf("router enabled %v, with the CIDR of a Server outside its datacenter", d.Enabled)
	}
	for _, tc := range []struct {
		s      *v1alpha1.Server
		reason string
	}{{outside, stargate.ReasonNoDatacenter}, {misfit, stargate.ReasonNotInDatacenterNetwork}} {
		s := f.server(t, tc.s.Namespace, tc.s.Name)
		c := meta.FindStatusCondition(s.Status.Conditions, stargate.ConditionAzureRouteSynced)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
			t.Errorf("%s: AzureRouteSynced %+v, want False %s", tc.s.Name, c, tc.reason)
		}
	}
	// The members are routed all the same.
	if s := f.server(t, "dc-0", "w00"); meta.FindStatusCondition(s.Status.Conditions, stargate.ConditionAzureRouteSynced).Status != metav1.ConditionTrue {
		t.Errorf("member w00 not routed: %+v", s.Status.Conditions)
	}
}

func TestTailscaleOwnershipIsRecordedAndOnlyRecordedRoutesAreWithdrawn(t *testing.T) {
	pool := ipam.Config{Pool: netip.MustParsePrefix("10.244.0.0/16"), Size: 24}
	f := newFixture(t, pool, testServers(2, func(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }))
	// An admin enabled a route inside the pod pool by hand.
	f.ts.SetEnabled("n0", []string{"10.244.9.0/24"})
	ctx := context.Background()
	if _, err := f.r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	var dc v1alpha1.Datacenter
	if err := f.kub.Get(ctx, client.ObjectKey{Name: "dc-0"}, &dc); err != nil {
		t.Fatal(err)
	}
	want := []v1alpha1.TailscaleRouteRecord{{TailnetIP: "100.64.1.0", DeviceID: "n0", Enabled: []string{"10.244.0.0/24", "10.50.0.0/24"}}}
	if fmt.Sprint(dc.Status.Tailscale) != fmt.Sprint(want) || !slices.Contains(dc.Finalizers, stargate.FinalizerRoutes) {
		t.Fatalf("dc-0 status.tailscale %+v finalizers %v, want %+v and %s", dc.Status.Tailscale, dc.Finalizers, want, stargate.FinalizerRoutes)
	}
	if got := f.ts.Device("n0").Enabled; !slices.Equal(got, []string{"10.244.0.0/24", "10.244.9.0/24", "10.50.0.0/24"}) {
		t.Fatalf("n0 enabled %v", got)
	}
	// The Datacenter goes: its routes are withdrawn, the admin's stays,
	// and then it is released.
	if err := f.kub.Delete(ctx, &dc); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.ts.Device("n0").Enabled; !slices.Equal(got, []string{"10.244.9.0/24"}) {
		t.Fatalf("n0 enabled %v after its Datacenter was deleted, want only the admin's 10.244.9.0/24", got)
	}
	if err := f.kub.Get(ctx, client.ObjectKey{Name: "dc-0"}, &dc); err == nil {
		t.Fatalf("Datacenter dc-0 not released: finalizers %v status.tailscale %+v", dc.Finalizers, dc.Status.Tailscale)
	}
	if got := f.ts.Device("n1").Enabled; !slices.Equal(got, []string{"10.244.1.0/24", "10.50.1.0/24"}) {
		t.Fatalf("n1 enabled %v: the other datacenter lost its routes", got)
	}
}

// TestHungAzureOperationEndsThePassWithACondition: a route table write
// whose long-running operation never completes ends the pass within the
// bound, with AzureRouteSynced False (AzureOperationTimeout).
func TestHungAzureOperationEndsThePassWithACondition(t *testing.T) {
	pool := ipam.Config{Pool: netip.MustParsePrefix("10.244.0.0/16"), Size: 24}
	f := newFixture(t, pool, testServers(2, func(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }))
	f.r.AzureTable.OperationTimeout, f.r.AzureTable.PollFrequency = 2*time.Second, time.Second
	f.az.HangNextWrites(1)
	start := time.Now()
	st, err := f.r.Pass(context.Background())
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took > f.r.AzureTable.OperationTimeout+3*time.Second || len(st.Errors) == 0 {
		t.Fatalf("pass took %v (bound %v), errors %v", took, f.r.AzureTable.OperationTimeout, st.Errors)
	}
	c := meta.FindStatusCondition(f.server(t, "dc-0", "w00").Status.Conditions, "AzureRouteSynced")
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "AzureOperationTimeout" || !strings.Contains(c.Message, "still running after 2s") {
		t.Fatalf("AzureRouteSynced %+v", c)
	}
	t.Logf("pass with a hung Azure operation returned in %v: %s", took.Round(time.Millisecond), c.Message)
}

// TestStatusConflictIsRetriedWithoutAnotherPass: status writes that lose
// to another writer (a node agent) are retried on a fresh copy within the
// pass; the pass is not run again at once, so Azure and Tailscale are not
// called again for it.
func TestStatusConflictIsRetriedWithoutAnotherPass(t *testing.T) {
	pool := ipam.Config{Pool: netip.MustParsePrefix("10.244.0.0/16"), Size: 24}
	f := newFixture(t, pool, testServers(2, func(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }))
	var conflicts atomic.Int32
	f.r.Client = interceptor.NewClient(f.kub.(client.WithWatch), interceptor.Funcs{
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			if _, ok := obj.(*v1alpha1.Server); ok && sub == "status" && conflicts.Add(1) <= 3 {
				return apierrors.NewConflict(schema.GroupResource{Group: "stargate.io", Resource: "servers"}, obj.GetName(), errors.New("the object has been modified"))
			}
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
	})
	f.r.APIReader = f.kub
	reads := f.az.Stats().Reads
	res, err := f.r.Reconcile(context.Background(), ctrl.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter < f.r.Resync && res.RequeueAfter < 30*time.Second {
		t.Fatalf("requeued after %v: a status conflict bought another pass", res.RequeueAfter)
	}
	if n := f.az.Stats().Reads - reads; n != 1 || conflicts.Load() < 4 {
		t.Fatalf("%d Azure reads for one pass, %d status writes (3 conflicting)", n, conflicts.Load())
	}
	for _, name := range []string{"w00", "w01"} {
		if c := meta.FindStatusCondition(f.server(t, fmt.Sprintf("dc-%d", name[2]-'0'), name).Status.Conditions, "RoutesReady"); c == nil {
			t.Fatalf("%s: status not written after the conflicts", name)
		}
	}
}
