// Package nodeagent is stargate-nodeagent, the DaemonSet that runs on every
// datacenter worker Stargate provisions. It reads the worker's kernel
// routing table with netlink, checks the routes the worker needs (to the AKS
// pod and service CIDRs through the DC router or the tailnet, and to its own
// pod CIDR through Cilium's host device), compares the pod CIDR its
// CiliumNode holds with the one its Server was given, and reports both as
// conditions and as the node route layer on its own Server's status.
//
// The gateway the cluster's CIDRs must leave through is the agentGateway
// of the Datacenter that declares the Server's namespace, read with a
// field selector (spec.namespace); --next-hop-gateway is the fallback while
// no Datacenter says, or the only source with --gateway-from-datacenter=false.
//
// It checks at start, every interval and at once on any kernel route or
// link change, and writes only when what it reports changed or a heartbeat
// is due, so a thousand agents stay cheap for the API.
package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
)

// Config is what an agent checks and how often it reports.
type Config struct {
	// NodeName is the node the agent runs on. Its Server is the one whose
	// status.nodeName names it, and its CiliumNode has this name.
	NodeName string
	// Want are the routes to check; Want.PodCIDR is taken from the Server.
	Want RouteWant
	// ProbeTarget, when set, is a host:port across the tunnel that must
	// answer a TCP connect within ProbeTimeout.
	ProbeTarget  string
	ProbeTimeout time.Duration
	// Interval between check passes besides those kernel changes trigger.
	Interval time.Duration
	// Heartbeat is how long an unchanged report may go unwritten.
	Heartbeat time.Duration
	// Debounce gathers a burst of kernel changes into one pass.
	Debounce time.Duration
	// NetNS is the network namespace whose routes are checked; not open
	// means the agent's own (the host's, with hostNetwork).
	NetNS netns.NsHandle
	// GatewayFromDatacenter makes the agent expect the agentGateway of its
	// Server's Datacenter; Want.NextHopGateway is then the fallback while
	// no Datacenter declares the Server's namespace.
	GatewayFromDatacenter bool
}

// Validate checks the config.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("the node name is empty (set --node-name or NODE_NAME)"))
	}
	if len(c.Want.Remote) == 0 {
		errs = append(errs, errors.New("no remote CIDRs to check (--remote-cidrs)"))
	}
	// The report lists a route per remote CIDR plus the pod CIDR's; the API
	// refuses a node layer with more than MaxRoutesPerLayer.
	if n := len(c.Want.Remote); n > validation.MaxRoutesPerLayer-1 {
		errs = append(errs, fmt.Errorf("--remote-cidrs names %d CIDRs; at most %d fit in the Server's node layer", n, validation.MaxRoutesPerLayer-1))
	}
	if !c.Want.NextHopGateway.IsValid() && c.Want.NextHopDevice == "" && !c.GatewayFromDatacenter {
		errs = append(errs, errors.New("name the expected next hop: --gateway-from-datacenter, --next-hop-gateway (the DC router) and/or --next-hop-device (e.g. tailscale0)"))
	}
	if c.Want.PodCIDRDevice == "" {
		errs = append(errs, errors.New("--pod-cidr-device is empty"))
	}
	if c.Interval <= 0 || c.Heartbeat <= 0 {
		errs = append(errs, errors.New("--interval and --heartbeat must be positive"))
	}
	if c.ProbeTarget != "" && c.ProbeTimeout <= 0 {
		errs = append(errs, errors.New("--probe-timeout must be positive"))
	}
	return errors.Join(errs...)
}

// Checker runs one check pass: routing table, probe, CiliumNode.
type Checker struct {
	cfg   *Config
	table *RouteTable
	probe *Probe
	want  RouteWant
	// gateway, when valid, replaces cfg.Want.NextHopGateway; gatewayFrom
	// says where it comes from ("" for the flag).
	gateway     netip.Addr
	gatewayFrom string
}

// UseGateway makes the checks expect gw (from says where it was declared,
// e.g. "Datacenter dc-east"); an invalid gw goes back to the configured one.
func (c *Checker) UseGateway(gw netip.Addr, from string) {
	c.gateway, c.gatewayFrom = gw, from
	if !gw.IsValid() {
		c.gatewayFrom = ""
	}
}

// NewChecker opens the routing table of cfg.NetNS.
func NewChecker(cfg *Config) (*Checker, error) {
	t, err := OpenRouteTable(cfg.NetNS)
	if err != nil {
		return nil, err
	}
	c := &Checker{cfg: cfg, table: t, want: cfg.Want}
	if cfg.ProbeTarget != "" {
		c.probe = &Probe{Target: cfg.ProbeTarget, Timeout: cfg.ProbeTimeout, NS: cfg.NetNS}
	}
	return c, nil
}

// Close releases the netlink handle.
func (c *Checker) Close() { c.table.Close() }

// Check looks at everything once and returns what to report on srv.
func (c *Checker) Check(ctx context.Context, srv *v1alpha1.Server, cilium CiliumView) *NodeStatus {
	podCIDR := srv.Status.PodCIDR
	c.want.PodCIDR = netip.Prefix{}
	if p, err := netip.ParsePrefix(podCIDR); err == nil {
		c.want.PodCIDR = p.Masked()
	}
	c.want.NextHopGateway = c.cfg.Want.NextHopGateway
	if c.gateway.IsValid() {
		c.want.NextHopGateway = c.gateway
	}
	st := &NodeStatus{}
	if !c.want.NextHopGateway.IsValid() && c.want.NextHopDevice == "" {
		st.Routes = condition{metav1.ConditionFalse, stargate.ReasonNoGateway, fmt.Sprintf(
			"no Datacenter declares namespace %s with an agentGateway, and no --next-hop-gateway is set: the routes to the cluster cannot be checked", srv.Namespace)}
	} else {
		rep, err := c.table.Check(&c.want)
		var probeErr error
		if c.probe != nil {
			probeErr = c.probe.Check(ctx)
		}
		st.Routes = routesCondition(rep, err, podCIDR, c.cfg.ProbeTarget, probeErr)
		if rep != nil {
			st.Desired, st.Observed = rep.Desired, rep.Observed
		}
		if c.want.NextHopGateway.IsValid() {
			from := "--next-hop-gateway"
			if c.gatewayFrom != "" {
				from = c.gatewayFrom
			}
			st.Routes.Message += fmt.Sprintf(" (gateway %s from %s)", c.want.NextHopGateway, from)
		}
	}
	server := srv.Namespace + "/" + srv.Name
	status, reason, msg := ciliumCondition(c.cfg.NodeName, server, podCIDR, cilium)
	st.Cilium = condition{status, reason, msg}
	st.Routes.Message, st.Cilium.Message = truncate(st.Routes.Message), truncate(st.Cilium.Message)
	return st
}

// Agent is a running stargate-nodeagent.
type Agent struct {
	cfg     Config
	client  rest.Interface
	servers cache.SharedIndexInformer
	cilium  cache.SharedIndexInformer
	// dc watches the Datacenter of the Server's namespace, dcNS; it is
	// (re)started by the pass that first sees the Server there.
	dc      cache.SharedIndexInformer
	dcNS    string
	dcStop  chan struct{}
	start   func(stop <-chan struct{})
	checker *Checker
	metrics *Metrics
	health  health
	kick    chan string
	now     func() time.Time

	// What the agent last applied, and when: the informer may lag behind
	// the write for a moment, and must not cause a second one.
	applied    *NodeStatus
	appliedAt  time.Time
	appliedUID types.UID
}

// writeGrace is how long the agent trusts its own last write over an
// informer that has not seen it yet.
const writeGrace = 10 * time.Second

// New builds an agent talking to the API through config.
func New(cfg Config, config *rest.Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	config = rest.CopyConfig(config)
	if config.UserAgent == "" {
		config.UserAgent = "stargate-nodeagent/" + cfg.NodeName
	}
	// A plain REST client and the dynamic client, rather than the generated
	// clientset and informer factories: those pull in every k8s.io/api
	// group, which would double the agent's resident memory.
	client, err := serversClient(config)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	checker, err := NewChecker(&cfg)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:     cfg,
		client:  client,
		checker: checker,
		metrics: NewMetrics(),
		kick:    make(chan string, 1),
		now:     time.Now,
	}
	a.health.staleAfter = max(3*cfg.Interval, time.Minute)

	// Only the agent's own Server and CiliumNode are watched: field
	// selectors keep every agent's share of the API to one object each.
	byNode := fields.OneTermEqualSelector("status.nodeName", cfg.NodeName).String()
	a.servers = cache.NewSharedIndexInformer(
		cache.NewFilteredListWatchFromClient(client, "servers", metav1.NamespaceAll,
			func(o *metav1.ListOptions) { o.FieldSelector = byNode }),
		&v1alpha1.Server{}, 0, cache.Indexers{})
	_ = a.servers.SetTransform(func(obj any) (any, error) {
		if s, ok := obj.(*v1alpha1.Server); ok {
			s.ManagedFields = nil
		}
		return obj, nil
	})
	byName := fields.OneTermEqualSelector("metadata.name", cfg.NodeName).String()
	ciliumNodes := dyn.Resource(CiliumNodes)
	a.cilium = cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return ciliumNodes.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			return ciliumNodes.Watch(ctx, o)
		},
	}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	_ = a.cilium.SetTransform(slimCiliumNode)
	a.start = func(stop <-chan struct{}) { go a.servers.Run(stop); go a.cilium.Run(stop) }

	onChange := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.trigger(TriggerAPI) },
		UpdateFunc: func(any, any) { a.trigger(TriggerAPI) },
		DeleteFunc: func(any) { a.trigger(TriggerAPI) },
	}
	if _, err := a.servers.AddEventHandler(onChange); err != nil {
		return nil, err
	}
	if _, err := a.cilium.AddEventHandler(onChange); err != nil {
		return nil, err
	}
	return a, nil
}

// Metrics are the agent's metrics.
func (a *Agent) Metrics() *Metrics { return a.metrics }

func (a *Agent) trigger(why string) {
	select {
	case a.kick <- why:
	default: // a pass is already due
	}
}

// Run checks and reports until ctx ends. It serves Handler on listen
// when listen is not empty.
func (a *Agent) Run(ctx context.Context, listen string) error {
	defer a.checker.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// fatal says why the agent stopped on its own; a cancelled ctx is a
	// clean stop.
	fatal := make(chan error, 1)
	stopped := func() error {
		select {
		case err := <-fatal:
			return err
		default:
			return nil
		}
	}
	if listen != "" {
		srv := &http.Server{Addr: listen, Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
		errc := make(chan error, 1)
		go func() { errc <- srv.ListenAndServe() }()
		defer srv.Close()
		select {
		case err := <-errc:
			return fmt.Errorf("serve metrics and health on %s: %w", listen, err)
		case <-time.After(100 * time.Millisecond):
		}
		go func() {
			if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
				fatal <- fmt.Errorf("metrics and health server on %s stopped: %w", listen, err)
				cancel()
			}
		}()
	}

	a.start(ctx.Done())
	defer a.stopDatacenterWatch()
	go a.watchKernel(ctx)
	klog.InfoS("Waiting for the Server of this node", "node", a.cfg.NodeName)
	if !cache.WaitForCacheSync(ctx.Done(), a.servers.HasSynced) {
		return stopped()
	}
	a.health.synced.Store(true)

	ticker := time.NewTicker(a.cfg.Interval)
	defer ticker.Stop()
	a.pass(ctx, TriggerStart)
	var debounce <-chan time.Time
	pending := ""
	for {
		select {
		case <-ctx.Done():
			return stopped()
		case <-ticker.C:
			a.pass(ctx, TriggerInterval)
		case why := <-a.kick:
			if debounce == nil {
				debounce, pending = time.After(a.cfg.Debounce), why
			}
		case <-debounce:
			debounce = nil
			a.pass(ctx, pending)
		}
	}
}

// watchKernel subscribes to route and link changes in the checked
// namespace, and subscribes again when the kernel drops the subscription
// (e.g. its buffer overflowed).
func (a *Agent) watchKernel(ctx context.Context) {
	ns := a.cfg.NetNS
	for ctx.Err() == nil {
		routes := make(chan netlink.RouteUpdate, 256)
		links := make(chan netlink.LinkUpdate, 64)
		done := make(chan struct{})
		onErr := func(err error) { klog.ErrorS(err, "Netlink subscription") }
		err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: &ns, ErrorCallback: onErr})
		if err == nil {
			err = netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: &ns, ErrorCallback: onErr})
		}
		if err != nil {
			close(done)
			klog.ErrorS(err, "Cannot subscribe to kernel route changes; retrying")
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		a.health.subscribed.Store(true)
		// Anything may have changed while unsubscribed.
		a.trigger(TriggerNetlink)
	events:
		for {
			select {
			case <-ctx.Done():
				close(done)
				return
			case _, ok := <-routes:
				if !ok {
					break events
				}
			case _, ok := <-links:
				if !ok {
					break events
				}
			}
			a.metrics.netlinkEvents.Inc()
			a.trigger(TriggerNetlink)
		}
		close(done)
		a.health.subscribed.Store(false)
		klog.InfoS("Kernel closed the route subscription; subscribing again")
	}
}

// ownServer is the Server whose status.nodeName is this node.
func (a *Agent) ownServer() *v1alpha1.Server {
	objs := a.servers.GetStore().List()
	if len(objs) == 0 {
		return nil
	}
	servers := make([]*v1alpha1.Server, 0, len(objs))
	for _, o := range objs {
		servers = append(servers, o.(*v1alpha1.Server))
	}
	if len(servers) > 1 {
		slices.SortFunc(servers, func(x, y *v1alpha1.Server) int { return x.CreationTimestamp.Compare(y.CreationTimestamp.Time) })
		klog.ErrorS(nil, "Several Servers name this node in status.nodeName; reporting on the oldest", "node", a.cfg.NodeName, "server", klog.KObj(servers[0]))
	}
	return servers[0]
}

func (a *Agent) ciliumView() CiliumView {
	if !a.cilium.HasSynced() {
		return CiliumView{}
	}
	obj, ok, err := a.cilium.GetStore().GetByKey(a.cfg.NodeName)
	if err != nil || !ok {
		return CiliumView{Synced: true}
	}
	return CiliumView{Synced: true, Found: true, PodCIDRs: ciliumPodCIDRs(obj.(*unstructured.Unstructured))}
}

// pass runs one check and writes the result when it must.
func (a *Agent) pass(ctx context.Context, trigger string) {
	start := a.now()
	a.metrics.checks.WithLabelValues(trigger).Inc()
	srv := a.ownServer()
	if srv == nil {
		a.health.lastCheck.Store(start.UnixNano())
		klog.V(2).InfoS("No Server names this node in status.nodeName yet", "node", a.cfg.NodeName)
		return
	}
	if a.cfg.GatewayFromDatacenter {
		gw, from := a.datacenterGateway(srv.Namespace)
		a.checker.UseGateway(gw, from)
	}
	st := a.checker.Check(ctx, srv, a.ciliumView())
	now := a.now()
	a.metrics.checkDuration.Observe(now.Sub(start).Seconds())
	a.metrics.lastCheckStamp.Set(float64(now.Unix()))
	a.metrics.routesHealthy.Set(conditionValue(string(st.Routes.Status)))
	a.metrics.ciliumMatches.Set(conditionValue(string(st.Cilium.Status)))
	a.health.lastCheck.Store(now.UnixNano())

	why := a.writeNeeded(srv, st, now)
	if why == "" {
		return
	}
	body, err := statusApply(srv, st, now)
	if err != nil {
		klog.ErrorS(err, "Cannot encode the status apply", "server", klog.KObj(srv))
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	force := true
	err = a.client.Patch(types.ApplyPatchType).Namespace(srv.Namespace).Resource("servers").Name(srv.Name).SubResource("status").
		VersionedParams(&metav1.PatchOptions{FieldManager: FieldManager, Force: &force}, metav1.ParameterCodec).
		Body(body).Do(wctx).Error()
	if err != nil {
		a.metrics.writes.WithLabelValues(why, "error").Inc()
		klog.ErrorS(err, "Cannot write the Server status; retrying at the next pass", "server", klog.KObj(srv))
		return
	}
	a.metrics.writes.WithLabelValues(why, "ok").Inc()
	a.applied, a.appliedAt, a.appliedUID = st, now, srv.UID
	klog.V(1).InfoS("Reported node status", "server", klog.KObj(srv), "why", why, "trigger", trigger,
		"nodeRoutesHealthy", st.Routes.Status, "reason", st.Routes.Reason, "ciliumPodCIDRMatches", st.Cilium.Status)
}

// writeNeeded says why st must be written ("changed" or "heartbeat"), or
// "" when the Server already says it and the heartbeat is not due.
func (a *Agent) writeNeeded(srv *v1alpha1.Server, st *NodeStatus, now time.Time) string {
	due := func(t time.Time) bool { return now.Sub(t) >= a.cfg.Heartbeat }
	if obs, checked, ok := observedNodeStatus(srv); ok && obs.Equal(st) {
		if due(checked) && due(a.appliedAt) {
			return "heartbeat"
		}
		return ""
	}
	// The informer may not have seen the last write yet.
	if a.applied != nil && a.appliedUID == srv.UID && a.applied.Equal(st) && now.Sub(a.appliedAt) < writeGrace {
		return ""
	}
	return "changed"
}

// datacenterGateway is the agentGateway of the Datacenter declaring
// namespace ns and where it comes from, or an invalid address while the
// watch has not synced or no Datacenter declares ns. The first call for ns
// starts the watch; its events trigger a pass.
func (a *Agent) datacenterGateway(ns string) (netip.Addr, string) {
	if a.dc == nil || a.dcNS != ns {
		a.stopDatacenterWatch()
		sel := fields.OneTermEqualSelector("spec.namespace", ns).String()
		a.dc = cache.NewSharedIndexInformer(
			cache.NewFilteredListWatchFromClient(a.client, "datacenters", metav1.NamespaceAll,
				func(o *metav1.ListOptions) { o.FieldSelector = sel }),
			&v1alpha1.Datacenter{}, 0, cache.Indexers{})
		_ = a.dc.SetTransform(func(obj any) (any, error) {
			if d, ok := obj.(*v1alpha1.Datacenter); ok {
				d.ManagedFields = nil
			}
			return obj, nil
		})
		_, _ = a.dc.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { a.trigger(TriggerAPI) },
			UpdateFunc: func(any, any) { a.trigger(TriggerAPI) },
			DeleteFunc: func(any) { a.trigger(TriggerAPI) },
		})
		a.dcNS, a.dcStop = ns, make(chan struct{})
		go a.dc.Run(a.dcStop)
		klog.InfoS("Watching the Datacenter of the Server's namespace for the expected gateway", "namespace", ns)
	}
	if !a.dc.HasSynced() {
		return netip.Addr{}, ""
	}
	var dcs []*v1alpha1.Datacenter
	for _, o := range a.dc.GetStore().List() {
		if d, ok := o.(*v1alpha1.Datacenter); ok && d.Spec.Namespace == ns && d.DeletionTimestamp == nil {
			dcs = append(dcs, d)
		}
	}
	if len(dcs) == 0 {
		return netip.Addr{}, ""
	}
	// Admission allows one per namespace; should two exist, the oldest
	// counts, as for stargate-controller.
	slices.SortFunc(dcs, func(x, y *v1alpha1.Datacenter) int {
		if c := x.CreationTimestamp.Compare(y.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(x.Name, y.Name)
	})
	gw, err := netip.ParseAddr(dcs[0].Spec.AgentGateway)
	if err != nil {
		klog.ErrorS(err, "The Datacenter's agentGateway is not an address; using --next-hop-gateway", "datacenter", dcs[0].Name)
		return netip.Addr{}, ""
	}
	return gw.Unmap(), "Datacenter " + dcs[0].Name
}

func (a *Agent) stopDatacenterWatch() {
	if a.dcStop != nil {
		close(a.dcStop)
		a.dc, a.dcNS, a.dcStop = nil, "", nil
	}
}

// serversClient is a REST client of stargate.io/v1alpha1 speaking JSON.
func serversClient(config *rest.Config) (*rest.RESTClient, error) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	metav1.AddToGroupVersion(scheme, v1alpha1.SchemeGroupVersion)
	config = rest.CopyConfig(config)
	config.GroupVersion = &v1alpha1.SchemeGroupVersion
	config.APIPath = "/apis"
	config.ContentType = runtime.ContentTypeJSON
	config.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	return rest.RESTClientFor(config)
}
