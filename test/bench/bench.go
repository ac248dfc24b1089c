package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/stargate-k8s/stargate/test/framework"
)

// Options configure Run.
type Options struct {
	// N is the number of Servers each side creates, gets and lists.
	N int
	// Concurrency is the number of requests in flight for creates, status
	// updates and gets.
	Concurrency int
	// Rounds splits creates, status updates and each pass of gets into
	// rounds; every round runs the sides one after the other in a rotated
	// order, so warm-up, etcd growth and background load fall on all sides alike.
	Rounds int
	// GetPasses is how often every object is read.
	GetPasses int
	// Lists is how many full lists each side serves per content type.
	Lists int
	// ContentTypes are the response media types to measure gets and lists in
	// (short names json, protobuf, cbor or full media types). JSON is always
	// measured; a type a side does not offer is reported as such.
	ContentTypes []string
	// Status sets a full status on every Server (conditions, route layers)
	// through the status subresource, so gets and lists carry what a
	// provisioned Server carries.
	Status bool
	// Direct also measures stargate-apiserver called directly, to separate
	// the aggregator's proxy hop from the server's own cost.
	Direct bool
	// StargateEtcd is "embedded" (stargate-apiserver's default: etcd in its
	// own process) or "shared" (the kube-apiserver's etcd, as with
	// --etcd-servers).
	StargateEtcd string
	// StargateBinary is the stargate-apiserver to run; built from
	// ./cmd/apiserver when empty.
	StargateBinary string
	// Dir keeps the world's files (logs, certificates); temporary when empty.
	Dir string
	// Logf reports progress.
	Logf func(format string, args ...any)
}

func (o *Options) complete() error {
	if o.N <= 0 || o.Concurrency <= 0 || o.Rounds <= 0 || o.GetPasses <= 0 || o.Lists <= 0 {
		return errors.New("n, concurrency, rounds, get passes and lists must be positive")
	}
	if o.Rounds > o.N {
		o.Rounds = o.N
	}
	var mts []string
	for _, ct := range append([]string{"json"}, o.ContentTypes...) {
		if mt := MediaType(ct); !slices.Contains(mts, mt) {
			mts = append(mts, mt)
		}
	}
	o.ContentTypes = mts
	if o.StargateEtcd != "embedded" && o.StargateEtcd != "shared" {
		return fmt.Errorf("stargate etcd must be embedded or shared, not %q", o.StargateEtcd)
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

// Phases, in the order they run.
const (
	PhaseCreate = "create"
	PhaseStatus = "status"
	PhaseGet    = "get"
	PhaseList   = "list"
)

// Result is what one side did in one phase, summed over rounds.
type Result struct {
	Phase, Side, MediaType string
	Ops                    int
	// Wall is the time the side's requests took, summed over its rounds.
	Wall  time.Duration
	Bytes int64 // response bytes
	// Items is the number of objects per list.
	Items     int
	latencies []time.Duration
	CPU       CPU
}

// OpsPerSec is the throughput.
func (r *Result) OpsPerSec() float64 { return float64(r.Ops) / r.Wall.Seconds() }

// PerOp is the wall time per operation at the phase's concurrency.
func (r *Result) PerOp() time.Duration { return r.Wall / time.Duration(r.Ops) }

// CPUPerOp is the CPU time per operation of one process ("" for all of the world).
func (r *Result) CPUPerOp(proc string) time.Duration {
	if proc == "" {
		return r.CPU.total() / time.Duration(r.Ops)
	}
	return r.CPU.Procs[proc] / time.Duration(r.Ops)
}

// Quantile of the request latencies, q in [0,1].
func (r *Result) Quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[int(q*float64(len(r.latencies)-1))]
}

// Report is the outcome of a run.
type Report struct {
	Options       Options
	KubeVersion   string
	Sides         []*Side
	Results       []*Result
	Started       time.Time
	Took          time.Duration
	StargateNotes string
}

// Result finds a result; nil when that combination did not run.
func (r *Report) Result(phase, side, mediaType string) *Result {
	for _, res := range r.Results {
		if res.Phase == phase && res.Side == side && res.MediaType == mediaType {
			return res
		}
	}
	return nil
}

// Side names.
const (
	SideAggregated = "aggregated"
	SideCRD        = "CRD"
	SideDirect     = "direct"
)

// Run starts a test world, measures, and stops the world again.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.complete(); err != nil {
		return nil, err
	}
	rep := &Report{Options: o, Started: time.Now()}
	w, err := startWorld(ctx, &o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := w.stop(); err != nil {
			o.Logf("stopping the world: %v", err)
		}
	}()
	if v, err := w.cp.Kube.Discovery().ServerVersion(); err == nil {
		rep.KubeVersion = v.GitVersion
	}
	b := &bench{o: o, rep: rep, world: w}
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	if err := b.measure(ctx); err != nil {
		return nil, err
	}
	rep.Took = time.Since(rep.Started)
	return rep, nil
}

type world struct {
	cp       *framework.ControlPlane
	stargate *framework.Stargate
	dir      string
	tempDir  bool
}

// startWorld is framework.StartWorld, except that stargate-apiserver can
// share the control plane's etcd, whose address is only known once the
// control plane runs.
func startWorld(ctx context.Context, o *Options) (_ *world, err error) {
	w := &world{dir: o.Dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.stop())
		}
	}()
	bins, err := framework.FindBinaries("")
	if err != nil {
		return nil, err
	}
	if o.StargateBinary == "" {
		root, err := framework.RepoRoot()
		if err != nil {
			return nil, err
		}
		o.Logf("building stargate-apiserver from ./cmd/apiserver")
		if o.StargateBinary, err = framework.BuildStargate(ctx, root, bins.Dir); err != nil {
			return nil, err
		}
	}
	if w.dir == "" {
		if w.dir, err = os.MkdirTemp("", "stargate-bench-"); err != nil {
			return nil, err
		}
		w.tempDir = true
	} else if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return nil, err
	}
	if w.cp, err = framework.StartControlPlane(framework.ControlPlaneOptions{Dir: filepath.Join(w.dir, "kube"), Binaries: bins, Logf: o.Logf}); err != nil {
		return nil, err
	}
	sopts := framework.StargateOptions{Binary: o.StargateBinary, Dir: filepath.Join(w.dir, "stargate"), Logf: o.Logf}
	if o.StargateEtcd == "shared" {
		sopts.EtcdServers = w.cp.EtcdURL()
	}
	if w.stargate, err = w.cp.NewStargate(sopts); err != nil {
		return nil, err
	}
	if err := w.stargate.Start(ctx); err != nil {
		return nil, err
	}
	if err := w.stargate.Register(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *world) stop() error {
	var errs []error
	if w.stargate != nil {
		errs = append(errs, w.stargate.Stop())
	}
	if w.cp != nil {
		errs = append(errs, w.cp.Stop())
	}
	if w.tempDir {
		errs = append(errs, os.RemoveAll(w.dir))
	}
	return errors.Join(errs...)
}

type bench struct {
	o     Options
	rep   *Report
	world *world
	sides []*Side
	meter cpuMeter
	// bodies are the create bodies per side.
	bodies map[string][][]byte
	// patches are the status patches, the same for every side.
	patches [][]byte
}

// clientConfig leaves client-side throttling out of the measurement.
func clientConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1e6, 1e6
	cfg.Timeout = 5 * time.Minute
	cfg.UserAgent = "stargate-bench"
	return cfg
}

func (b *bench) setup(ctx context.Context) error {
	cp, sg := b.world.cp, b.world.stargate
	kube := clientConfig(cp.Config)
	// The same admin client certificate, straight to stargate-apiserver:
	// it authenticates it through the client CA of
	// extension-apiserver-authentication.
	direct := clientConfig(&rest.Config{
		Host: sg.URL(),
		TLSClientConfig: rest.TLSClientConfig{
			CAData: sg.CA.CertPEM, CertData: cp.Config.CertData, KeyData: cp.Config.KeyData,
		},
	})
	b.sides = []*Side{
		{Name: SideAggregated, Via: "kube-apiserver, proxied to stargate-apiserver", Group: "stargate.io", Namespace: "bench", WarmNamespace: "bench-warmup", cfg: kube},
		{Name: SideCRD, Via: "kube-apiserver's apiextensions server", Group: CRDGroup, Namespace: "bench", WarmNamespace: "bench-warmup", cfg: kube},
	}
	if b.o.Direct {
		b.sides = append(b.sides, &Side{Name: SideDirect, Via: "stargate-apiserver, no proxy hop", Group: "stargate.io", Namespace: "bench-direct", WarmNamespace: "bench-direct-warmup", cfg: direct})
	}
	b.rep.Sides = b.sides

	for _, s := range b.sides {
		for _, ns := range []string{s.Namespace, s.WarmNamespace} {
			_, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create namespace %s: %w", ns, err)
			}
		}
	}
	dyn, err := dynamic.NewForConfig(kube)
	if err != nil {
		return err
	}
	b.o.Logf("installing CRD servers.%s", CRDGroup)
	if err := installCRD(ctx, dyn); err != nil {
		return err
	}
	for _, s := range b.sides {
		if err := waitListable(ctx, s); err != nil {
			return err
		}
		for _, mt := range b.o.ContentTypes {
			if err := s.probe(ctx, mt); err != nil {
				return err
			}
		}
		if !s.Offered[MediaType("json")] {
			return fmt.Errorf("%s does not answer in JSON: %s", s.Name, s.Probe[MediaType("json")])
		}
	}

	if b.meter.pids, err = findProcesses(); err != nil {
		return err
	}

	now := metav1.NewTime(time.Now().Truncate(time.Second))
	b.bodies = map[string][][]byte{}
	for _, s := range b.sides {
		wt := s.writeType(b.o.ContentTypes)
		bodies := make([][]byte, b.o.N)
		for i := range bodies {
			if bodies[i], err = encodeBody(newServer(s.Group, i), wt); err != nil {
				return err
			}
		}
		b.bodies[s.Name] = bodies
	}
	b.patches = make([][]byte, b.o.N)
	for i := range b.patches {
		if b.patches[i], err = statusPatch(i, now); err != nil {
			return err
		}
	}
	return b.warmUp(ctx)
}

// waitListable waits until the side answers a list, as a fresh CRD may
// take a moment after Established to be served.
func waitListable(ctx context.Context, s *Side) error {
	c, err := s.client(MediaType("json"))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	ok := 0
	for ok < 3 {
		if err := c.Get().AbsPath(s.collection(s.WarmNamespace)).Do(ctx).Error(); err != nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: list servers: %w", s.Name, err)
			}
			ok = 0
		} else {
			ok++
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// warmUp runs every kind of request on every side in the warm-up
// namespaces, so connections, caches and code paths are warm.
func (b *bench) warmUp(ctx context.Context) error {
	n := min(200, b.o.N)
	b.o.Logf("warming up with %d servers per side", n)
	for _, s := range b.sides {
		items := seq(0, n)
		if _, _, err := b.runOps(ctx, s, PhaseCreate, s.writeType(b.o.ContentTypes), s.WarmNamespace, items); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if b.o.Status {
			if _, _, err := b.runOps(ctx, s, PhaseStatus, MediaType("json"), s.WarmNamespace, items); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
		for _, mt := range b.o.ContentTypes {
			if !s.Offered[mt] {
				continue
			}
			if _, _, err := b.runOps(ctx, s, PhaseGet, mt, s.WarmNamespace, items); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
			for range 3 {
				if _, err := b.list(ctx, s, mt, s.WarmNamespace); err != nil {
					return fmt.Errorf("warm-up: %w", err)
				}
			}
		}
	}
	return nil
}

func (b *bench) measure(ctx context.Context) error {
	o := b.o
	all := seq(0, o.N)
	rounds := chunks(all, o.Rounds)
	phases := []string{PhaseCreate}
	if o.Status {
		phases = append(phases, PhaseStatus)
	}
	for _, phase := range phases {
		b.o.Logf("%s: %d servers per side in %d rounds, %d in flight", phase, o.N, len(rounds), o.Concurrency)
		res := b.results(phase, func(s *Side) string {
			if phase == PhaseCreate {
				return s.writeType(o.ContentTypes)
			}
			return MediaType("json") // patches are JSON whatever the server offers
		}, b.sides)
		for r, items := range rounds {
			for _, s := range rotate(b.sides, r) {
				if err := b.timed(ctx, res[s.Name], func() (int64, []time.Duration, error) {
					return b.runOps(ctx, s, phase, res[s.Name].MediaType, s.Namespace, items)
				}); err != nil {
					return err
				}
			}
		}
	}
	if err := b.verify(ctx); err != nil {
		return err
	}

	for _, mt := range o.ContentTypes {
		sides := b.offering(mt)
		if len(sides) == 0 {
			continue
		}
		b.o.Logf("get (%s): %d passes over %d servers per side", shortName(mt), o.GetPasses, o.N)
		res := b.results(PhaseGet, func(*Side) string { return mt }, sides)
		for p := range o.GetPasses {
			for r, items := range rounds {
				for _, s := range rotate(sides, p*len(rounds)+r) {
					if err := b.timed(ctx, res[s.Name], func() (int64, []time.Duration, error) {
						return b.runOps(ctx, s, PhaseGet, mt, s.Namespace, items)
					}); err != nil {
						return err
					}
				}
			}
		}
	}

	for _, mt := range o.ContentTypes {
		sides := b.offering(mt)
		if len(sides) == 0 {
			continue
		}
		b.o.Logf("list (%s): %d full lists of %d servers per side", shortName(mt), o.Lists, o.N)
		res := b.results(PhaseList, func(*Side) string { return mt }, sides)
		for i := range o.Lists {
			for _, s := range rotate(sides, i) {
				var body []byte
				if err := b.timed(ctx, res[s.Name], func() (int64, []time.Duration, error) {
					start := time.Now()
					var err error
					body, err = b.list(ctx, s, mt, s.Namespace)
					return int64(len(body)), []time.Duration{time.Since(start)}, err
				}); err != nil {
					return err
				}
				// Counted outside the timing: decoding is the client's business.
				items, err := countItems(body, mt)
				if err != nil {
					return fmt.Errorf("%s: list: %w", s.Name, err)
				}
				if items >= 0 && items != o.N {
					return fmt.Errorf("%s: list returned %d servers, want %d", s.Name, items, o.N)
				}
				res[s.Name].Items = items
			}
		}
	}
	return nil
}

// offering are the sides that answer in mt.
func (b *bench) offering(mt string) []*Side {
	var out []*Side
	for _, s := range b.sides {
		if s.Offered[mt] {
			out = append(out, s)
		}
	}
	return out
}

func (b *bench) results(phase string, mediaType func(*Side) string, sides []*Side) map[string]*Result {
	m := map[string]*Result{}
	for _, s := range sides {
		r := &Result{Phase: phase, Side: s.Name, MediaType: mediaType(s)}
		b.rep.Results = append(b.rep.Results, r)
		m[s.Name] = r
	}
	return m
}

// timed runs one side's share of a round and adds its wall and CPU time.
func (b *bench) timed(ctx context.Context, r *Result, run func() (int64, []time.Duration, error)) error {
	before := b.meter.snapshot()
	bytes, lat, err := run()
	after := b.meter.snapshot()
	if err != nil {
		return fmt.Errorf("%s %s (%s): %w", r.Side, r.Phase, shortName(r.MediaType), err)
	}
	r.Wall += after.at.Sub(before.at)
	r.CPU.add(before, after)
	r.Ops += len(lat)
	r.Bytes += bytes
	r.latencies = append(r.latencies, lat...)
	slices.Sort(r.latencies)
	return nil
}

// runOps does one kind of request for every item, Concurrency at a time,
// and returns the response bytes and each request's latency.
func (b *bench) runOps(ctx context.Context, s *Side, phase, mediaType, ns string, items []int) (int64, []time.Duration, error) {
	c, err := s.client(mediaType)
	if err != nil {
		return 0, nil, err
	}
	op := func(ctx context.Context, i int) ([]byte, error) {
		switch phase {
		case PhaseCreate:
			return c.Post().AbsPath(s.collection(ns)).SetHeader("Content-Type", mediaType).
				Body(b.bodies[s.Name][i]).Do(ctx).Raw()
		case PhaseStatus:
			return c.Patch(types.MergePatchType).AbsPath(s.collection(ns), serverName(i), "status").
				Body(b.patches[i]).Do(ctx).Raw()
		case PhaseGet:
			return c.Get().AbsPath(s.collection(ns), serverName(i)).Do(ctx).Raw()
		}
		return nil, fmt.Errorf("unknown phase %q", phase)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lat := make([]time.Duration, len(items))
	var total int64
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range b.o.Concurrency {
		wg.Go(func() {
			var n int64
			for k := range work {
				start := time.Now()
				body, err := op(ctx, items[k])
				lat[k] = time.Since(start)
				if err != nil {
					cancel(fmt.Errorf("%s %s/%s: %w", phase, ns, serverName(items[k]), err))
					continue
				}
				n += int64(len(body))
			}
			mu.Lock()
			total += n
			mu.Unlock()
		})
	}
feed:
	for k := range items {
		select {
		case work <- k:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, nil, err
	}
	return total, lat, nil
}

// list reads all Servers of ns in one request: no limit, so no chunking
// on either side.
func (b *bench) list(ctx context.Context, s *Side, mediaType, ns string) ([]byte, error) {
	c, err := s.client(mediaType)
	if err != nil {
		return nil, err
	}
	body, err := c.Get().AbsPath(s.collection(ns)).Do(ctx).Raw()
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", ns, err)
	}
	return body, nil
}

// countItems counts the items of a JSON list; -1 for other media types.
func countItems(body []byte, mediaType string) (int, error) {
	if mediaType != MediaType("json") {
		return -1, nil
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return 0, err
	}
	return len(list.Items), nil
}

// verify checks on every side that a Server reads back as written.
func (b *bench) verify(ctx context.Context) error {
	for _, s := range b.sides {
		c, err := s.client(MediaType("json"))
		if err != nil {
			return err
		}
		raw, err := c.Get().AbsPath(s.collection(s.Namespace), serverName(b.o.N-1)).DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%s: read back: %w", s.Name, err)
		}
		var got struct {
			APIVersion string `json:"apiVersion"`
			Metadata   struct {
				ManagedFields []json.RawMessage `json:"managedFields"`
			} `json:"metadata"`
			Spec struct {
				HostKey string `json:"hostKey"`
			} `json:"spec"`
			Status struct {
				Phase  string            `json:"phase"`
				Routes []json.RawMessage `json:"routes"`
			} `json:"status"`
		}
		if err := json.Unmarshal(raw, &got); err != nil {
			return fmt.Errorf("%s: read back: %w", s.Name, err)
		}
		s.ManagedFields = len(got.Metadata.ManagedFields)
		s.ObjectBytes = len(raw)
		want := newServer(s.Group, b.o.N-1)
		switch {
		case got.APIVersion != want.APIVersion || got.Spec.HostKey != want.Spec.HostKey:
			return fmt.Errorf("%s: read back %s with apiVersion %q and host key %q, want %q and %q",
				s.Name, want.Name, got.APIVersion, got.Spec.HostKey, want.APIVersion, want.Spec.HostKey)
		case b.o.Status && (got.Status.Phase != "Ready" || len(got.Status.Routes) != 4):
			return fmt.Errorf("%s: read back %s with phase %q and %d route layers, want Ready and 4", s.Name, want.Name, got.Status.Phase, len(got.Status.Routes))
		}
	}
	return nil
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// chunks splits items into n parts of (almost) equal size.
func chunks(items []int, n int) [][]int {
	out := make([][]int, 0, n)
	for k := range n {
		out = append(out, items[k*len(items)/n:(k+1)*len(items)/n])
	}
	return out
}

// rotate returns sides starting at the k-th, so each side leads in turn.
func rotate(sides []*Side, k int) []*Side {
	k %= len(sides)
	return append(slices.Clone(sides[k:]), sides[:k]...)
}
