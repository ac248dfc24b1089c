// Command bench-routes measures one route reconcile pass of
// stargate-controller over many Servers: Azure and Tailscale write calls,
// wall time with fixed per-call latencies in the fakes, and CPU per pass,
// cold and at steady state; beside it the naive way, one write per route.
//
// Everything runs in this process: Servers, Nodes and CiliumNodes live in
// controller-runtime's fake client, Azure behind the SDK's fake server
// (pkg/azure/azurefake), Tailscale behind an httptest fake on loopback.
//
//	go run ./hack/bench-routes -servers 1000 -datacenters 5
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/azure"
	"github.com/stargate-k8s/stargate/pkg/azure/azurefake"
	"github.com/stargate-k8s/stargate/pkg/cilium"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/pkg/controller/routes"
	"github.com/stargate-k8s/stargate/pkg/ipam"
	"github.com/stargate-k8s/stargate/pkg/tailscale"
	"github.com/stargate-k8s/stargate/pkg/tailscale/tailscalefake"
)

var profile string

type config struct {
	servers, dcs                     int
	azRead, azWrite, tsRead, tsWrite time.Duration
	blockSize                        int
	pool                             string
}

func main() {
	var c config
	flag.IntVar(&c.servers, "servers", 1000, "Servers")
	flag.IntVar(&c.dcs, "datacenters", 5, "datacenters (namespaces), each with its own router")
	flag.DurationVar(&c.azRead, "azure-read-latency", 50*time.Millisecond, "latency of an Azure read")
	flag.DurationVar(&c.azWrite, "azure-write-latency", 2*time.Second, "latency of an Azure write (long-running PUT)")
	flag.DurationVar(&c.tsRead, "tailscale-read-latency", 50*time.Millisecond, "latency of a Tailscale read")
	flag.DurationVar(&c.tsWrite, "tailscale-write-latency", 100*time.Millisecond, "latency of a Tailscale write")
	flag.IntVar(&c.blockSize, "datacenter-block-size", 16, "datacenter block prefix length (0: one Azure route per server)")
	flag.StringVar(&c.pool, "pool", "10.64.0.0/10", "pod CIDR pool")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the steady passes here")
	flag.Parse()
	profile = *cpuprofile
	ctrllog.SetLogger(logr.Discard())
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench-routes:", err)
		os.Exit(1)
	}
}

func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// world is the in-memory cluster and fakes.
type world struct {
	kube  client.Client
	az    *azurefake.Table
	ts    *tailscalefake.Server
	table *azure.Table
	tsc   *tailscale.Syncer
	pool  ipam.Config
	srv   []*v1alpha1.Server
	cache *cachedClient
}

type advertiser struct {
	ts    *tailscalefake.Server
	calls int
}

func (a *advertiser) Advertise(_ context.Context, ip string, routes []string) error {
	a.calls++
	return a.ts.SetAdvertisedByIP(ip, routes)
}

func newWorld(c config, latency bool) (*world, error) {
	pool := netip.MustParsePrefix(c.pool)
	w := &world{pool: ipam.Config{Pool: pool, Size: 24, BlockSize: c.blockSize}}
	if err := w.pool.Validate(); err != nil {
		return nil, err
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(cilium.CiliumNodeGVK, meta.RESTScopeRoot)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Node"}, meta.RESTScopeRoot)
	mapper.Add(v1alpha1.SchemeGroupVersion.WithKind("Server"), meta.RESTScopeNamespace)
	var taken ipam.Taken
	var objs []client.Object
	for i := range c.servers {
		dc := fmt.Sprintf("dc-%d", i%c.dcs)
		name := fmt.Sprintf("w%04d", i)
		p, err := w.pool.Allocate(dc+"/"+name, dc, taken)
		if err != nil {
			return nil, err
		}
		taken = append(taken, ipam.Holder{Prefix: p, Owner: dc + "/" + name, Datacenter: dc})
		s := &v1alpha1.Server{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: dc, Generation: 1},
			Spec: v1alpha1.ServerSpec{Hostname: name, IPAddress: fmt.Sprintf("10.50.%d.%d", i%c.dcs, 1+(i/c.dcs)%250),
				RouterIP: fmt.Sprintf("100.64.1.%d", 1+i%c.dcs)},
			Status: v1alpha1.ServerStatus{PodCIDR: p.String()},
		}
		w.srv = append(w.srv, s)
		objs = append(objs, s)
	}
	w.kube = fake.NewClientBuilder().WithScheme(manager.Scheme).WithRESTMapper(mapper).
		WithObjects(objs...).WithStatusSubresource(&v1alpha1.Server{}).Build()

	w.az = azurefake.New("rg", "rt")
	w.az.Set("corp-default", "0.0.0.0/0", "10.224.0.9")
	w.ts = tailscalefake.New("key", "", "")
	w.ts.AddDevice(tailscalefake.Device{NodeID: "nAKS", Name: "aks", Addresses: []string{"100.64.0.1"}, Advertised: []string{"10.0.0.0/16", "10.244.0.0/16"}})
	for d := range c.dcs {
		w.ts.AddDevice(tailscalefake.Device{NodeID: fmt.Sprintf("n%d", d), Name: fmt.Sprintf("dc-%d-router", d), Addresses: []string{fmt.Sprintf("100.64.1.%d", d+1)},
			Advertised: []string{"192.168.0.0/24"}, Enabled: []string{"192.168.0.0/24"}})
	}
	if latency {
		w.az.ReadLatency, w.az.WriteLatency = c.azRead, c.azWrite
		w.ts.ReadLatency, w.ts.WriteLatency = c.tsRead, c.tsWrite
	}
	opts := azure.ClientOptions(w.az.Transport())
	rtc, err := armnetwork.NewRouteTablesClient("sub", &azfake.TokenCredential{}, opts)
	if err != nil {
		return nil, err
	}
	w.table = &azure.Table{Client: rtc, ResourceGroup: "rg", Name: "rt", Prefix: "stargate-", PollFrequency: time.Second}
	tsc, err := tailscale.NewClient(tailscale.Credentials{APIKey: "key", BaseURL: w.ts.URL})
	if err != nil {
		return nil, err
	}
	w.tsc = &tailscale.Syncer{Client: tsc, Owned: pool.Overlaps, Advertiser: &advertiser{ts: w.ts}}
	return w, nil
}

// cachedClient stands in for the manager's informer cache: reads are
// served as deep copies of a snapshot (what the cache does), so the CPU
// measured is the controller's and not the fake client's JSON round trips.
// Writes go to the fake client; refresh takes a new snapshot between passes.
type cachedClient struct {
	client.Client
	servers v1alpha1.ServerList
	nodes   corev1.NodeList
	cns     unstructured.UnstructuredList
}

func (c *cachedClient) refresh(ctx context.Context) error {
	c.cns = unstructured.UnstructuredList{}
	c.cns.SetGroupVersionKind(cilium.CiliumNodeGVK.GroupVersion().WithKind("CiliumNodeList"))
	if err := c.Client.List(ctx, &c.servers); err != nil {
		return err
	}
	if err := c.Client.List(ctx, &c.nodes); err != nil {
		return err
	}
	return c.Client.List(ctx, &c.cns)
}

func (c *cachedClient) List(ctx context.Context, l client.ObjectList, opts ...client.ListOption) error {
	switch l := l.(type) {
	case *v1alpha1.ServerList:
		c.servers.DeepCopyInto(l)
	case *corev1.NodeList:
		c.nodes.DeepCopyInto(l)
	case *unstructured.UnstructuredList:
		c.cns.DeepCopyInto(l)
	default:
		return c.Client.List(ctx, l, opts...)
	}
	return nil
}

func (w *world) reconciler() *routes.Reconciler {
	o := routes.DefaultOptions()
	o.EnableAzure, o.EnableTailscale, o.EnableCilium = true, true, true
	o.AzureNextHop, o.AKSRouterTailnetIP = "10.224.0.4", "100.64.0.1"
	o.MaxRoutes = 0 // the naive comparison runs past Azure's 400; see the note
	w.cache = &cachedClient{Client: w.kube}
	if err := w.cache.refresh(context.Background()); err != nil {
		panic(err)
	}
	return &routes.Reconciler{Options: o, Pool: w.pool, Client: w.cache, CiliumReader: w.cache, Recorder: &record.FakeRecorder{},
		AzureTable: w.table, Tailscale: w.tsc}
}

type row struct {
	name                       string
	azureWrites, tsWrites, k8s int
	wall, cpu                  time.Duration
	modelled                   bool
}

func run(c config) error {
	ctx := context.Background()
	fmt.Printf("servers=%d datacenters=%d pool=%s block=/%d latency: azure read %v write %v, tailscale read %v write %v\n\n",
		c.servers, c.dcs, c.pool, c.blockSize, c.azRead, c.azWrite, c.tsRead, c.tsWrite)
	var rows []row

	// Stargate, with the fakes' latencies.
	w, err := newWorld(c, true)
	if err != nil {
		return err
	}
	r := w.reconciler()
	for i, name := range []string{"stargate cold", "stargate steady"} {
		az0, ts0 := w.az.Stats().Writes, w.ts.Writes()
		cpu0, t0 := cpu(), time.Now()
		st, err := r.Pass(ctx)
		if err != nil {
			return err
		}
		if len(st.Errors) > 0 {
			return fmt.Errorf("pass %d: %v", i, st.Errors[0])
		}
		fmt.Printf("%s: steps %v\n", name, roundAll(st.Took))
		rows = append(rows, row{name: name, azureWrites: w.az.Stats().Writes - az0, tsWrites: w.ts.Writes() - ts0,
			k8s: st.StatusWrites + st.FinalizerWrites + st.CiliumWrites + st.NodeWrites, wall: time.Since(t0), cpu: cpu() - cpu0})
		if err := w.cache.refresh(ctx); err != nil {
			return err
		}
	}
	// CPU of a steady pass without latency, averaged: the controller's own cost.
	w0, err := newWorld(c, false)
	if err != nil {
		return err
	}
	r0 := w0.reconciler()
	if _, err := r0.Pass(ctx); err != nil {
		return err
	}
	if err := w0.cache.refresh(ctx); err != nil {
		return err
	}
	const n = 5
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0, t0 := cpu(), time.Now()
	for range n {
		if _, err := r0.Pass(ctx); err != nil {
			return err
		}
	}
	rows = append(rows, row{name: fmt.Sprintf("stargate steady, no latency (mean of %d)", n), wall: time.Since(t0) / n, cpu: (cpu() - cpu0) / n})

	// Naive: one write per route, per-server Azure routes, one Tailscale
	// POST per route. Run without latency; wall time is modelled as the
	// calls times their latency plus the measured time.
	nv, err := newWorld(c, false)
	if err != nil {
		return err
	}
	naive, err := naivePass(ctx, nv, c)
	if err != nil {
		return err
	}
	rows = append(rows, naive)

	fmt.Println("| run | Azure writes | Tailscale writes | Kubernetes writes | wall time | CPU |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		wall := r.wall.Round(time.Millisecond).String()
		if r.modelled {
			wall += " (modelled)"
		}
		fmt.Printf("| %s | %d | %d | %d | %s | %s |\n", r.name, r.azureWrites, r.tsWrites, r.k8s, wall, r.cpu.Round(time.Millisecond))
	}
	fmt.Printf("\nAzure routes in the table: stargate %d (of which foreign 1), naive %d\n", len(w.az.Routes()), len(nv.az.Routes()))
	return nil
}

// naivePass writes every Azure route with its own PUT (the Routes API) and
// enables every Tailscale route with its own POST.
func naivePass(ctx context.Context, w *world, c config) (row, error) {
	opts := azure.ClientOptions(w.az.Transport())
	rc, err := armnetwork.NewRoutesClient("sub", &azfake.TokenCredential{}, opts)
	if err != nil {
		return row{}, err
	}
	cpu0, t0 := cpu(), time.Now()
	reads := 0
	type rt struct{ name, prefix string }
	var want []rt
	subnets := map[string]bool{}
	perRouter := map[string][]string{}
	for _, s := range w.srv {
		want = append(want, rt{"stargate-pod-" + strings.NewReplacer(".", "-", "/", "-").Replace(s.Status.PodCIDR), s.Status.PodCIDR})
		a := netip.MustParseAddr(s.Spec.IPAddress)
		sub, _ := a.Prefix(24)
		if !subnets[sub.String()] {
			subnets[sub.String()] = true
			want = append(want, rt{"stargate-subnet-" + strings.NewReplacer(".", "-", "/", "-").Replace(sub.String()), sub.String()})
			perRouter[s.Spec.RouterIP] = append(perRouter[s.Spec.RouterIP], sub.String())
		}
		perRouter[s.Spec.RouterIP] = append(perRouter[s.Spec.RouterIP], s.Status.PodCIDR)
	}
	for _, r := range want {
		p, err := rc.BeginCreateOrUpdate(ctx, "rg", "rt", r.name, armnetwork.Route{Properties: &armnetwork.RoutePropertiesFormat{
			AddressPrefix: to.Ptr(r.prefix), NextHopType: to.Ptr(armnetwork.RouteNextHopTypeVirtualAppliance), NextHopIPAddress: to.Ptr("10.224.0.4")}}, nil)
		if err != nil {
			return row{}, err
		}
		if _, err := p.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Second}); err != nil {
			return row{}, err
		}
	}
	devs, err := w.tsc.Client.Devices().List(ctx)
	if err != nil {
		return row{}, err
	}
	reads++
	tsWrites := 0
	for _, d := range devs {
		enabled := append([]string(nil), d.EnabledRoutes...)
		for _, r := range perRouter[d.Addresses[0]] {
			if err := w.ts.SetAdvertisedByIP(d.Addresses[0], append(enabled, r)); err != nil {
				return row{}, err
			}
			enabled = append(enabled, r)
			if err := w.tsc.Client.Devices().SetSubnetRoutes(ctx, d.NodeID, enabled); err != nil {
				return row{}, err
			}
			tsWrites++
		}
	}
	measured := time.Since(t0)
	azWrites := w.az.Stats().Writes
	modelled := measured + time.Duration(azWrites)*c.azWrite + time.Duration(tsWrites)*c.tsWrite + time.Duration(reads)*c.tsRead
	return row{name: "naive cold (one write per route)", azureWrites: azWrites, tsWrites: tsWrites, wall: modelled, cpu: cpu() - cpu0, modelled: true}, nil
}

func roundAll(m map[string]time.Duration) string {
	var parts []string
	for _, k := range []string{"plan", "azure", "tailscale", "cilium", "status"} {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k].Round(time.Millisecond)))
	}
	return strings.Join(parts, " ")
}
