// Command bench-routes measures route reconcile passes of stargate-controller
// over many Servers: Azure and Tailscale write calls, wall time to converge
// with fixed per-call latencies in the fakes, and CPU per pass, cold and at
// steady state; beside it the naive way, one write per route, measured in
// the same run with the same latencies scaled down (-latency-scale).
//
// Everything runs in this process: Servers, Nodes and CiliumNodes live in
// controller-runtime's fake client, Azure behind the SDK's fake server
// (pkg/azure/azurefake), Tailscale behind an httptest fake on loopback.
// The CPU spent inside the fakes is measured around each call to them, so
// the reconciler's own CPU is reported apart from the fakes'.
//
//	go run ./hack/bench-routes -servers 1000 -datacenters 5 -latency-scale 0.01
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
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

type config struct {
	servers, dcs                     int
	azRead, azWrite, tsRead, tsWrite time.Duration
	blockSize                        int
	pool                             string
	scale                            float64
	naive                            bool
	steadyProfile, coldProfile       string
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
	flag.Float64Var(&c.scale, "latency-scale", 0.01, "the measured comparison runs Stargate and the naive way with every latency times this (0.01: a 2s Azure write costs 20ms)")
	flag.BoolVar(&c.naive, "naive", true, "run the naive baseline (one write per route) in the measured comparison")
	flag.StringVar(&c.steadyProfile, "cpuprofile", "", "write a CPU profile of the steady passes without latency here")
	flag.StringVar(&c.coldProfile, "cold-cpuprofile", "", "write a CPU profile of the cold pass with full latency here")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench-routes:", err)
		os.Exit(1)
	}
}

// cpu is the process's user+system time.
func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// meter adds up the CPU spent inside calls to the fakes, and the bytes
// they allocate. A pass is sequential and waits for each call, so the
// process's CPU over a call is the fake's, with any background GC work
// that runs meanwhile (which is why cold passes are also profiled).
type meter struct {
	kube, azure, tailscale atomic.Int64
	alloc                  atomic.Uint64
}

func (m *meter) measure(d *atomic.Int64, f func()) {
	c0, a0 := cpu(), allocated()
	f()
	d.Add(int64(cpu() - c0))
	m.alloc.Add(allocated() - a0)
}

// fakeCPU is CPU spent inside the fakes: the Kubernetes fake client's
// writes, the Azure fake server (SDK fake + in-memory table) and the
// Tailscale round trips (loopback HTTP + httptest handler).
type fakeCPU struct{ kube, azure, tailscale time.Duration }

func (m *meter) read() fakeCPU {
	return fakeCPU{time.Duration(m.kube.Load()), time.Duration(m.azure.Load()), time.Duration(m.tailscale.Load())}
}

func (f fakeCPU) sub(g fakeCPU) fakeCPU {
	return fakeCPU{f.kube - g.kube, f.azure - g.azure, f.tailscale - g.tailscale}
}

func (f fakeCPU) total() time.Duration { return f.kube + f.azure + f.tailscale }

type azureMeter struct {
	inner policy.Transporter
	m     *meter
}

func (t azureMeter) Do(req *http.Request) (resp *http.Response, err error) {
	t.m.measure(&t.m.azure, func() { resp, err = t.inner.Do(req) })
	return resp, err
}

type tailscaleMeter struct {
	inner http.RoundTripper
	m     *meter
}

func (t tailscaleMeter) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	t.m.measure(&t.m.tailscale, func() { resp, err = t.inner.RoundTrip(req) })
	return resp, err
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
	m     *meter
	c     config
	scale float64
}

type advertiser struct {
	ts    *tailscalefake.Server
	calls int
}

func (a *advertiser) Advertise(_ context.Context, ip string, routes []string) error {
	a.calls++
	return a.ts.SetAdvertisedByIP(ip, routes)
}

func scaled(d time.Duration, f float64) time.Duration { return time.Duration(float64(d) * f) }

// newWorld builds the fakes with every latency times scale (0: none).
func newWorld(c config, scale float64) (*world, error) {
	pool := netip.MustParsePrefix(c.pool)
	w := &world{pool: ipam.Config{Pool: pool, Size: 24, BlockSize: c.blockSize}, m: &meter{}, c: c, scale: scale}
	if err := w.pool.Validate(); err != nil {
		return nil, err
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(cilium.CiliumNodeGVK, meta.RESTScopeRoot)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Node"}, meta.RESTScopeRoot)
	mapper.Add(v1alpha1.SchemeGroupVersion.WithKind("Server"), meta.RESTScopeNamespace)
	mapper.Add(v1alpha1.SchemeGroupVersion.WithKind("Datacenter"), meta.RESTScopeRoot)
	var taken ipam.Taken
	var objs []client.Object
	// The controller acts only on Servers of declared datacenters.
	for d := range c.dcs {
		dc := fmt.Sprintf("dc-%d", d)
		objs = append(objs, &v1alpha1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: dc},
			Spec: v1alpha1.DatacenterSpec{Namespace: dc, WorkerSubnet: fmt.Sprintf("10.50.%d.0/24", d),
				Router: v1alpha1.DatacenterRouter{IP: fmt.Sprintf("100.64.1.%d", d+1)}, AgentGateway: fmt.Sprintf("10.50.%d.254", d)},
		})
	}
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
		WithObjects(objs...).WithStatusSubresource(&v1alpha1.Server{}, &v1alpha1.Datacenter{}).Build()

	w.az = azurefake.New("rg", "rt")
	w.az.Set("corp-default", "0.0.0.0/0", "10.224.0.9")
	w.ts = tailscalefake.New("key", "", "")
	w.ts.AddDevice(tailscalefake.Device{NodeID: "nAKS", Name: "aks", Addresses: []string{"100.64.0.1"}, Advertised: []string{"10.0.0.0/16", "10.244.0.0/16"}})
	for d := range c.dcs {
		w.ts.AddDevice(tailscalefake.Device{NodeID: fmt.Sprintf("n%d", d), Name: fmt.Sprintf("dc-%d-router", d), Addresses: []string{fmt.Sprintf("100.64.1.%d", d+1)},
			Advertised: []string{"192.168.0.0/24"}, Enabled: []string{"192.168.0.0/24"}})
	}
	w.az.ReadLatency, w.az.WriteLatency = scaled(c.azRead, scale), scaled(c.azWrite, scale)
	w.ts.ReadLatency, w.ts.WriteLatency = scaled(c.tsRead, scale), scaled(c.tsWrite, scale)
	rtc, err := armnetwork.NewRouteTablesClient("sub", &azfake.TokenCredential{}, azure.ClientOptions(w.azureTransport()))
	if err != nil {
		return nil, err
	}
	w.table = &azure.Table{Client: rtc, ResourceGroup: "rg", Name: "rt", Prefix: "stargate-", PollFrequency: time.Second}
	tsc, err := tailscale.NewClient(tailscale.Credentials{APIKey: "key", BaseURL: w.ts.URL})
	if err != nil {
		return nil, err
	}
	tsc.HTTP = &http.Client{Timeout: time.Minute, Transport: tailscaleMeter{inner: &http.Transport{}, m: w.m}}
	w.tsc = &tailscale.Syncer{Client: tsc, Advertiser: &advertiser{ts: w.ts}}
	return w, nil
}

func (w *world) azureTransport() policy.Transporter {
	return azureMeter{inner: w.az.Transport(), m: w.m}
}

func (w *world) close() { w.ts.Close() }

// cachedClient stands in for the manager's informer cache: reads are
// served as deep copies of a snapshot (what the cache does), so the CPU
// measured is the controller's and not the fake client's JSON round trips.
// Writes go to the fake client, metered; refresh takes a new snapshot
// between passes.
type cachedClient struct {
	client.Client
	m       *meter
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

func (c *cachedClient) List(ctx context.Context, l client.ObjectList, opts ...client.ListOption) (err error) {
	switch l := l.(type) {
	case *v1alpha1.ServerList:
		c.servers.DeepCopyInto(l)
	case *corev1.NodeList:
		c.nodes.DeepCopyInto(l)
	case *unstructured.UnstructuredList:
		c.cns.DeepCopyInto(l)
	default:
		c.m.measure(&c.m.kube, func() { err = c.Client.List(ctx, l, opts...) })
	}
	return err
}

func (c *cachedClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) (err error) {
	c.m.measure(&c.m.kube, func() { err = c.Client.Get(ctx, key, obj, opts...) })
	return err
}

func (c *cachedClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) (err error) {
	c.m.measure(&c.m.kube, func() { err = c.Client.Create(ctx, obj, opts...) })
	return err
}

func (c *cachedClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) (err error) {
	c.m.measure(&c.m.kube, func() { err = c.Client.Update(ctx, obj, opts...) })
	return err
}

func (c *cachedClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) (err error) {
	c.m.measure(&c.m.kube, func() { err = c.Client.Patch(ctx, obj, patch, opts...) })
	return err
}

func (c *cachedClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) (err error) {
	c.m.measure(&c.m.kube, func() { err = c.Client.Delete(ctx, obj, opts...) })
	return err
}

func (c *cachedClient) Status() client.SubResourceWriter {
	return meteredStatus{SubResourceWriter: c.Client.Status(), m: c.m}
}

type meteredStatus struct {
	client.SubResourceWriter
	m *meter
}

func (s meteredStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) (err error) {
	s.m.measure(&s.m.kube, func() { err = s.SubResourceWriter.Update(ctx, obj, opts...) })
	return err
}

func (s meteredStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) (err error) {
	s.m.measure(&s.m.kube, func() { err = s.SubResourceWriter.Patch(ctx, obj, patch, opts...) })
	return err
}

func (w *world) reconciler() *routes.Reconciler {
	o := routes.DefaultOptions()
	o.EnableAzure, o.EnableTailscale, o.EnableCilium = true, true, true
	o.AzureNextHop, o.AKSRouterTailnetIP = "10.224.0.4", "100.64.0.1"
	o.MaxRoutes = 0 // the naive comparison runs past Azure's 400; see the note
	w.cache = &cachedClient{Client: w.kube, m: w.m}
	if err := w.cache.refresh(context.Background()); err != nil {
		panic(err)
	}
	return &routes.Reconciler{Options: o, Pool: w.pool, Client: w.cache, CiliumReader: w.cache, Recorder: &record.FakeRecorder{},
		AzureTable: w.table, Tailscale: w.tsc, CPUTime: cpu}
}

// result is one measured run.
type result struct {
	name                       string
	azureWrites, tsWrites, k8s int
	// wall is the whole pass; cloud the Azure and Tailscale steps of it
	// (for the naive way, its whole run: it does nothing else).
	wall, cloud time.Duration
	// cpu is the process's CPU over the pass; cloudCPU over the Azure and
	// Tailscale steps; fakes the part of cpu spent inside the fakes.
	cpu, cloudCPU time.Duration
	fakes         fakeCPU
	steps         string
	// split is where the CPU went by the profile (profiled passes only).
	split *cpuSplit
	// floor is the latency the fakes slept over the run: calls times
	// their latency, the least wall time the calls can take.
	floor time.Duration
	// calls says which calls made the floor.
	calls callCount
}

// callCount counts calls that reached the fakes.
type callCount struct{ azReads, azWrites, tsReads, tsWrites int }

func (w *world) calls() callCount {
	st := w.az.Stats()
	n := callCount{azReads: st.Reads, azWrites: st.Writes}
	for _, r := range w.ts.Requests() {
		switch r.Method {
		case http.MethodGet:
			n.tsReads++
		case http.MethodPost:
			n.tsWrites++
		}
	}
	return n
}

func (n callCount) sub(m callCount) callCount {
	return callCount{n.azReads - m.azReads, n.azWrites - m.azWrites, n.tsReads - m.tsReads, n.tsWrites - m.tsWrites}
}

// latency is what the calls sleep in the fakes with latencies times scale.
func (n callCount) latency(c config, scale float64) time.Duration {
	return scaled(time.Duration(n.azReads)*c.azRead+time.Duration(n.azWrites)*c.azWrite+
		time.Duration(n.tsReads)*c.tsRead+time.Duration(n.tsWrites)*c.tsWrite, scale)
}

func (n callCount) String() string {
	return fmt.Sprintf("Azure %d reads + %d writes, Tailscale %d reads + %d writes", n.azReads, n.azWrites, n.tsReads, n.tsWrites)
}

// own is the reconciler's CPU: by the profile when the pass was
// profiled, else the process's minus the fakes'.
func (r result) own() time.Duration {
	if r.split != nil {
		return r.split.own()
	}
	return r.cpu - r.fakes.total()
}

// cloudOwn is the reconciler's CPU in the Azure and Tailscale steps.
func (r result) cloudOwn() time.Duration { return r.cloudCPU - r.fakes.azure - r.fakes.tailscale }

// pass runs one Stargate pass and measures it; profile says whether to
// profile it (and where to write the profile, when not "-").
func (w *world) pass(ctx context.Context, r *routes.Reconciler, name, profile string) (result, error) {
	az0, ts0, m0, n0 := w.az.Stats().Writes, w.ts.Writes(), w.m.read(), w.calls()
	var prof *profiler
	if profile != "" {
		var err error
		if prof, err = startProfiler(w.m); err != nil {
			return result{}, err
		}
	}
	cpu0, t0 := cpu(), time.Now()
	st, err := r.Pass(ctx)
	wall, used := time.Since(t0), cpu()-cpu0
	var split *cpuSplit
	if prof != nil {
		sp, data, perr := prof.stop()
		if perr != nil {
			return result{}, perr
		}
		if profile != "-" {
			if perr := os.WriteFile(profile, data, 0o644); perr != nil {
				return result{}, perr
			}
		}
		split = &sp
	}
	if err != nil {
		return result{}, err
	}
	if len(st.Errors) > 0 {
		return result{}, fmt.Errorf("%s: %v", name, st.Errors[0])
	}
	res := result{name: name, azureWrites: w.az.Stats().Writes - az0, tsWrites: w.ts.Writes() - ts0,
		k8s:  st.StatusWrites + st.FinalizerWrites + st.CiliumWrites + st.NodeWrites,
		wall: wall, cloud: st.Took["azure"] + st.Took["tailscale"], cpu: used, cloudCPU: st.CPU["azure"] + st.CPU["tailscale"],
		fakes: w.m.read().sub(m0), steps: steps(st), calls: w.calls().sub(n0), split: split}
	res.floor = res.calls.latency(w.c, w.scale)
	if res.k8s == 0 {
		return res, nil // the snapshot is still right
	}
	return res, w.cache.refresh(ctx)
}

func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func ms(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
}

func run(c config) error {
	ctx := context.Background()
	fmt.Printf("servers=%d datacenters=%d pool=%s block=/%d\nlatency: azure read %v write %v, tailscale read %v write %v; measured comparison at x%g: azure read %v write %v, tailscale read %v write %v\n\n",
		c.servers, c.dcs, c.pool, c.blockSize, c.azRead, c.azWrite, c.tsRead, c.tsWrite,
		c.scale, scaled(c.azRead, c.scale), scaled(c.azWrite, c.scale), scaled(c.tsRead, c.scale), scaled(c.tsWrite, c.scale))

	// 1. Stargate with the full latencies: cold, then steady.
	var full []result
	w, err := newWorld(c, 1)
	if err != nil {
		return err
	}
	r := w.reconciler()
	for _, name := range []string{"Stargate cold", "Stargate steady state"} {
		prof := ""
		if name == "Stargate cold" {
			prof = orDefault(c.coldProfile, "-")
		}
		res, err := w.pass(ctx, r, name, prof)
		if err != nil {
			return err
		}
		full = append(full, res)
	}
	w.close()

	// 2. The measured comparison: Stargate and the naive way, each from
	// cold on its own fresh world, with the same scaled latencies.
	var vs []result
	ws, err := newWorld(c, c.scale)
	if err != nil {
		return err
	}
	res, err := ws.pass(ctx, ws.reconciler(), "Stargate cold", "-")
	if err != nil {
		return err
	}
	vs = append(vs, res)
	ws.close()
	if c.naive {
		nv, err := newWorld(c, c.scale)
		if err != nil {
			return err
		}
		res, err := naivePass(ctx, nv)
		if err != nil {
			return err
		}
		vs = append(vs, res)
		nv.close()
	}

	// 3. Without latency: a cold pass, then steady passes averaged (the
	// controller's CPU per pass at steady state).
	w0, err := newWorld(c, 0)
	if err != nil {
		return err
	}
	r0 := w0.reconciler()
	cold0, err := w0.pass(ctx, r0, "Stargate cold, no latency", "-")
	if err != nil {
		return err
	}
	const n = 5
	var steady result
	stop, err := startProfile(c.steadyProfile)
	if err != nil {
		return err
	}
	for i := range n {
		res, err := w0.pass(ctx, r0, "", "")
		if err != nil {
			return err
		}
		if res.azureWrites+res.tsWrites+res.k8s > 0 {
			return fmt.Errorf("steady pass %d wrote: %+v", i, res)
		}
		steady.wall += res.wall / n
		steady.cpu += res.cpu / n
		steady.fakes.kube += res.fakes.kube / n
		steady.fakes.azure += res.fakes.azure / n
		steady.fakes.tailscale += res.fakes.tailscale / n
	}
	stop()
	steady.name = fmt.Sprintf("Stargate steady state, no latency (mean of %d)", n)
	w0.close()

	fmt.Println("Stargate passes. Wall: the whole pass, and its Azure + Tailscale steps. CPU: the process's; of it spent inside calls to the fakes;")
	fmt.Println("the reconciler's own: for cold passes from a CPU profile (its samples plus its share, by bytes allocated, of the background GC), for steady ones the process's minus the fakes'.")
	fmt.Println()
	fmt.Println("| run | Azure writes | Tailscale writes | Kubernetes writes | wall time (cloud steps) | CPU | fake Kubernetes | fake Azure + Tailscale | reconciler's own CPU |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range append(full, cold0, steady) {
		cloud := ""
		if r.cloud > 0 {
			cloud = " (" + ms(r.cloud) + ")"
		}
		fmt.Printf("| %s | %d | %d | %d | %s%s | %s | %s | %s | %s |\n", r.name, r.azureWrites, r.tsWrites, r.k8s, ms(r.wall), cloud,
			ms(r.cpu), ms(r.fakes.kube), ms(r.fakes.azure+r.fakes.tailscale), ms(r.own()))
	}
	fmt.Println()
	for _, r := range append(full, cold0) {
		fmt.Printf("%s, per step: %s\n", r.name, r.steps)
	}
	fmt.Println()
	for _, r := range []result{full[0], vs[0], cold0} {
		fmt.Printf("%s (%s), CPU profile: %v\n", r.name, r.floorName(), r.split)
	}

	fmt.Printf("\nMeasured comparison, every latency x%g, each from cold (cloud layers: the Azure and Tailscale steps of the Stargate pass; the naive way does only those):\n\n", c.scale)
	fmt.Println("| run | Azure writes | Tailscale writes | wall time to converge the cloud layers | of it the fakes' latency | CPU of it | of it the fakes' | reconciler's own | whole Stargate pass |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range vs {
		whole := "—"
		if r.k8s > 0 {
			whole = fmt.Sprintf("%s, %s CPU, %d Kubernetes writes", ms(r.wall), ms(r.cpu), r.k8s)
		}
		fmt.Printf("| %s | %d | %d | %s | %s | %s | %s | %s | %s |\n", r.name, r.azureWrites, r.tsWrites, ms(r.cloud), ms(r.floor), ms(r.cloudCPU),
			ms(r.fakes.azure+r.fakes.tailscale), ms(r.cloudOwn()), whole)
	}
	fmt.Println()
	for _, r := range vs {
		fmt.Printf("%s: calls %v\n", r.name, r.calls)
	}
	if len(vs) == 2 {
		s, nv := vs[0], vs[1]
		fmt.Printf("\nnaive / Stargate: wall %.0fx, Azure writes %.0fx, Tailscale writes %.0fx, CPU %.1fx, reconciler's own CPU %.1fx\n",
			ratio(nv.cloud, s.cloud), float64(nv.azureWrites)/float64(max(s.azureWrites, 1)), float64(nv.tsWrites)/float64(max(s.tsWrites, 1)),
			ratio(nv.cloudCPU, s.cloudCPU), ratio(nv.cloudOwn(), s.cloudOwn()))
		// The time beyond the latency does not scale with it; with the
		// full latencies the naive way would take that plus its calls
		// times the full latencies.
		fmt.Printf("naive with the full latencies (calls x latency + the measured time beyond the latency): %s, against the Stargate cold pass's cloud steps %s\n",
			ms(nv.calls.latency(c, 1)+nv.cloud-nv.floor), ms(full[0].cloud))
	}
	return nil
}

func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (r result) floorName() string {
	if r.floor == 0 {
		return "no latency"
	}
	return fmt.Sprintf("fakes slept %s", ms(r.floor))
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }

func steps(st routes.PassStats) string {
	var parts []string
	for _, k := range []string{"plan", "azure", "tailscale", "cilium", "status"} {
		parts = append(parts, fmt.Sprintf("%s %s (CPU %s)", k, ms(st.Took[k]), ms(st.CPU[k])))
	}
	return strings.Join(parts, ", ")
}

// naivePass converges the cloud layers the naive way: every Azure route
// with its own PUT (the Routes API, one long-running operation per route)
// and every Tailscale route enabled with its own POST. It is a lower bound
// of a naive controller: it reads nothing but the device list once.
func naivePass(ctx context.Context, w *world) (result, error) {
	rc, err := armnetwork.NewRoutesClient("sub", &azfake.TokenCredential{}, azure.ClientOptions(w.azureTransport()))
	if err != nil {
		return result{}, err
	}
	m0, n0 := w.m.read(), w.calls()
	cpu0, t0 := cpu(), time.Now()
	type rt struct{ name, prefix string }
	var want []rt
	subnets := map[string]bool{}
	perRouter := map[string][]string{}
	dash := strings.NewReplacer(".", "-", "/", "-")
	for _, s := range w.srv {
		want = append(want, rt{"stargate-pod-" + dash.Replace(s.Status.PodCIDR), s.Status.PodCIDR})
		a := netip.MustParseAddr(s.Spec.IPAddress)
		sub, _ := a.Prefix(24)
		if !subnets[sub.String()] {
			subnets[sub.String()] = true
			want = append(want, rt{"stargate-subnet-" + dash.Replace(sub.String()), sub.String()})
			perRouter[s.Spec.RouterIP] = append(perRouter[s.Spec.RouterIP], sub.String())
		}
		perRouter[s.Spec.RouterIP] = append(perRouter[s.Spec.RouterIP], s.Status.PodCIDR)
	}
	for _, r := range want {
		p, err := rc.BeginCreateOrUpdate(ctx, "rg", "rt", r.name, armnetwork.Route{Properties: &armnetwork.RoutePropertiesFormat{
			AddressPrefix: to.Ptr(r.prefix), NextHopType: to.Ptr(armnetwork.RouteNextHopTypeVirtualAppliance), NextHopIPAddress: to.Ptr("10.224.0.4")}}, nil)
		if err != nil {
			return result{}, err
		}
		if _, err := p.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Second}); err != nil {
			return result{}, err
		}
	}
	devs, err := w.tsc.Client.Devices().List(ctx)
	if err != nil {
		return result{}, err
	}
	tsWrites := 0
	for _, d := range devs {
		enabled := append([]string(nil), d.EnabledRoutes...)
		for _, r := range perRouter[d.Addresses[0]] {
			if err := w.ts.SetAdvertisedByIP(d.Addresses[0], append(enabled, r)); err != nil {
				return result{}, err
			}
			enabled = append(enabled, r)
			if err := w.tsc.Client.Devices().SetSubnetRoutes(ctx, d.NodeID, enabled); err != nil {
				return result{}, err
			}
			tsWrites++
		}
	}
	wall, used := time.Since(t0), cpu()-cpu0
	if got := len(w.az.Routes()); got != len(want)+1 {
		return result{}, fmt.Errorf("naive: %d routes in the table, want %d", got, len(want)+1)
	}
	n := w.calls().sub(n0)
	return result{name: "naive cold: one write per route", azureWrites: w.az.Stats().Writes, tsWrites: tsWrites,
		wall: wall, cloud: wall, cpu: used, cloudCPU: used, fakes: w.m.read().sub(m0), calls: n, floor: n.latency(w.c, w.scale)}, nil
}
