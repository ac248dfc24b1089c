// Package ipam is the reconciler that gives every Server a pod CIDR out of
// the pool (see pkg/ipam), records it in Server status and holds it with a
// finalizer until the Server and its routes are gone.
package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/cilium"
	"github.com/stargate-k8s/stargate/pkg/controller/datacenter"
	"github.com/stargate-k8s/stargate/pkg/ipam"
)

// Controller allocates pod CIDRs.
type Controller struct {
	Pool      string
	Size      int
	BlockSize int
	Reserved  []string
	// WaitForRoutes keeps the CIDR until the routes controller released
	// the Server (its finalizer is gone). On when routes are reconciled.
	WaitForRoutes bool

	cfg      ipam.Config
	client   client.Client
	reader   client.Reader
	recorder record.EventRecorder

	// recent remembers what this process handed out but the cache may not
	// show yet, so two Servers reconciled back to back never get the same
	// CIDR. Entries go when the cache catches up or the Server is gone.
	mu     sync.Mutex
	recent map[types.NamespacedName]netip.Prefix
}

// New returns the controller with the defaults of its flags.
func New() *Controller {
	return &Controller{Pool: "10.244.0.0/16", Size: 24, WaitForRoutes: true}
}

// Name implements manager.Controller.
func (c *Controller) Name() string { return "ipam" }

// AddFlags implements manager.Controller.
func (c *Controller) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Pool, "pod-cidr-pool", c.Pool, "Pool the Servers' pod CIDRs are allocated from.")
	fs.IntVar(&c.Size, "pod-cidr-size", c.Size, "Prefix length of one Server's pod CIDR.")
	fs.IntVar(&c.BlockSize, "datacenter-block-size", c.BlockSize, "When non-zero, each datacenter (namespace) gets blocks of this prefix length (e.g. 20) and its Servers' CIDRs come from them, so the cloud needs one route per block. 0 turns blocks off.")
	fs.StringSliceVar(&c.Reserved, "reserved-cidrs", c.Reserved, "CIDRs never handed out nor accepted as pins (comma-separated).")
}

// Config parses the flags.
func (c *Controller) Config() (ipam.Config, error) {
	pool, err := netip.ParsePrefix(c.Pool)
	if err != nil {
		return ipam.Config{}, fmt.Errorf("-pod-cidr-pool: %w", err)
	}
	reserved, err := ipam.ParsePrefixes(c.Reserved)
	if err != nil {
		return ipam.Config{}, fmt.Errorf("-reserved-cidrs: %w", err)
	}
	cfg := ipam.Config{Pool: pool, Size: c.Size, BlockSize: c.BlockSize, Reserved: reserved}
	return cfg, cfg.Validate()
}

// SetupWithManager implements manager.Controller.
func (c *Controller) SetupWithManager(_ context.Context, mgr ctrl.Manager) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	c.cfg = cfg
	c.client = mgr.GetClient()
	c.reader = mgr.GetAPIReader()
	c.recorder = mgr.GetEventRecorderFor("stargate-ipam") //nolint:staticcheck // the events/v1 recorder is not wired in the manager yet
	c.recent = map[types.NamespacedName]netip.Prefix{}
	return ctrl.NewControllerManagedBy(mgr).
		Named("ipam").
		For(&v1alpha1.Server{}).
		// A Node taking a CIDR can make a pending pin or allocation possible
		// or impossible; re-check Servers still waiting.
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(c.pendingServers)).
		// A Datacenter declared (or corrected) lets its Servers have one.
		Watches(&v1alpha1.Datacenter{}, handler.EnqueueRequestsFromMapFunc(datacenter.ServersOf(c.client, func(s *v1alpha1.Server) bool { return s.Status.PodCIDR == "" }))).
		// One at a time: each allocation must see the one before it.
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(c)
}

func (c *Controller) pendingServers(ctx context.Context, _ client.Object) []ctrl.Request {
	var l v1alpha1.ServerList
	if err := c.client.List(ctx, &l); err != nil {
		return nil
	}
	var out []ctrl.Request
	for _, s := range l.Items {
		if s.Status.PodCIDR == "" {
			out = append(out, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
	}
	return out
}

// Reconcile allocates, confirms or releases one Server's pod CIDR.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var s v1alpha1.Server
	if err := c.client.Get(ctx, req.NamespacedName, &s); err != nil {
		if apierrors.IsNotFound(err) {
			c.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !s.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, c.release(ctx, &s)
	}
	// Only Servers of a declared datacenter, inside its network, get a
	// CIDR; their InDatacenter condition says why not. One that holds one
	// already (its Datacenter went or changed) keeps it until it is
	// deleted: its routes go, its CIDR is released with it.
	if _, cond, err := datacenter.Resolve(ctx, c.client, &s); err != nil {
		return ctrl.Result{}, err
	} else if cond.Status != metav1.ConditionTrue {
		log.V(1).Info("not allocating a pod CIDR: the Server is not in its datacenter", "server", req.String(), "reason", cond.Reason)
		return ctrl.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(&s, stargate.FinalizerPodCIDR) || (c.WaitForRoutes && !controllerutil.ContainsFinalizer(&s, stargate.FinalizerRoutes)) {
		controllerutil.AddFinalizer(&s, stargate.FinalizerPodCIDR)
		if c.WaitForRoutes {
			// Added here for the routes reconciler too: one write instead
			// of two per Server.
			controllerutil.AddFinalizer(&s, stargate.FinalizerRoutes)
		}
		if err := c.client.Update(ctx, &s); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer to Server %s: %w", req, err)
		}
	}
	if s.Status.PodCIDR != "" {
		c.forget(req.NamespacedName)
		if s.Spec.PodCIDR != "" && s.Spec.PodCIDR != s.Status.PodCIDR {
			return ctrl.Result{}, c.setCondition(ctx, &s, "", metav1.ConditionFalse, "PinMismatch",
				fmt.Sprintf("spec.podCIDR %s differs from the allocated %s; the allocation stands while the Server exists — delete and recreate the Server to move it", s.Spec.PodCIDR, s.Status.PodCIDR))
		}
		return ctrl.Result{}, c.setCondition(ctx, &s, s.Status.PodCIDR, metav1.ConditionTrue, "Allocated", fmt.Sprintf("pod CIDR %s is held by this Server", s.Status.PodCIDR))
	}

	taken, err := c.taken(ctx, &s)
	if err != nil {
		return ctrl.Result{}, err
	}
	owner := req.String()
	var p netip.Prefix
	if s.Spec.PodCIDR != "" {
		pin, err := netip.ParsePrefix(s.Spec.PodCIDR)
		if err == nil {
			err = c.cfg.CheckPin(pin, owner, taken)
		}
		if err != nil {
			c.recorder.Eventf(&s, corev1.EventTypeWarning, "PinRejected", "%v", err)
			// Not an error for the queue: a Node or Server going away
			// requeues this one through the watches.
			return ctrl.Result{}, c.setCondition(ctx, &s, "", metav1.ConditionFalse, "PinRejected", err.Error())
		}
		p = pin
	} else {
		p, err = c.cfg.Allocate(owner, s.Namespace, taken)
		if err != nil {
			c.recorder.Eventf(&s, corev1.EventTypeWarning, "PoolExhausted", "%v", err)
			return ctrl.Result{}, c.setCondition(ctx, &s, "", metav1.ConditionFalse, "PoolExhausted", err.Error()+"; widen -pod-cidr-pool or free CIDRs")
		}
	}
	if err := c.setCondition(ctx, &s, p.String(), metav1.ConditionTrue, "Allocated", fmt.Sprintf("pod CIDR %s is held by this Server", p)); err != nil {
		return ctrl.Result{}, err
	}
	c.mu.Lock()
	c.recent[req.NamespacedName] = p
	c.mu.Unlock()
	allocations.Inc()
	log.Info("allocated pod CIDR", "server", owner, "podCIDR", p.String(), "pinned", s.Spec.PodCIDR != "")
	c.recorder.Eventf(&s, corev1.EventTypeNormal, "PodCIDRAllocated", "pod CIDR %s allocated", p)
	return ctrl.Result{}, nil
}

// release drops the finalizer once nothing routes to the CIDR any more.
func (c *Controller) release(ctx context.Context, s *v1alpha1.Server) error {
	if !controllerutil.ContainsFinalizer(s, stargate.FinalizerPodCIDR) {
		return nil
	}
	if c.WaitForRoutes && controllerutil.ContainsFinalizer(s, stargate.FinalizerRoutes) {
		return nil // the routes controller's update will bring us back
	}
	controllerutil.RemoveFinalizer(s, stargate.FinalizerPodCIDR)
	if err := c.client.Update(ctx, s); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("release pod CIDR of Server %s/%s: %w", s.Namespace, s.Name, err)
	}
	c.forget(types.NamespacedName{Namespace: s.Namespace, Name: s.Name})
	if s.Status.PodCIDR != "" {
		releases.Inc()
	}
	return nil
}

func (c *Controller) forget(k types.NamespacedName) {
	c.mu.Lock()
	delete(c.recent, k)
	c.mu.Unlock()
}

// taken is every CIDR in use: Servers' allocations and pins, Nodes' and
// CiliumNodes' pod CIDRs. The Node and CiliumNode named after s itself are
// s's own.
func (c *Controller) taken(ctx context.Context, s *v1alpha1.Server) (ipam.Taken, error) {
	var t ipam.Taken
	add := func(cidr, owner, dc string) {
		if p, err := netip.ParsePrefix(cidr); err == nil {
			t = append(t, ipam.Holder{Prefix: p.Masked(), Owner: owner, Datacenter: dc})
		}
	}
	var servers v1alpha1.ServerList
	if err := c.client.List(ctx, &servers); err != nil {
		return nil, fmt.Errorf("list Servers: %w", err)
	}
	seen := map[types.NamespacedName]bool{}
	nodeOwner := map[string]string{}
	for _, o := range servers.Items {
		k := types.NamespacedName{Namespace: o.Namespace, Name: o.Name}
		seen[k] = true
		nodeOwner[nodeName(&o)] = k.String()
		add(o.Status.PodCIDR, k.String(), o.Namespace)
		if o.Status.PodCIDR == "" && o.Spec.PodCIDR != "" && k != (types.NamespacedName{Namespace: s.Namespace, Name: s.Name}) &&
			(s.Spec.PodCIDR == "" || olderThan(&o, s)) {
			// A pin is claimed before its Server is reconciled: no
			// allocation takes it, and of two clashing pins the older
			// Server's wins (rather than each refusing the other).
			add(o.Spec.PodCIDR, k.String(), o.Namespace)
		}
	}
	c.mu.Lock()
	for k, p := range c.recent {
		t = append(t, ipam.Holder{Prefix: p, Owner: k.String(), Datacenter: k.Namespace})
	}
	c.mu.Unlock()
	ownerOf := func(kind, name string) string {
		if o, ok := nodeOwner[name]; ok {
			return o
		}
		return kind + "/" + name
	}
	var nodes corev1.NodeList
	if err := c.client.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("list Nodes: %w", err)
	}
	for _, n := range nodes.Items {
		add(n.Spec.PodCIDR, ownerOf("node", n.Name), "")
		for _, p := range n.Spec.PodCIDRs {
			add(p, ownerOf("node", n.Name), "")
		}
	}
	cns, err := cilium.List(ctx, c.reader)
	if err != nil && !errors.Is(err, cilium.ErrCRDMissing) {
		return nil, err
	}
	for name, cn := range cns {
		for _, p := range cilium.PodCIDRsOf(cn) {
			add(p, ownerOf("ciliumnode", name), "")
		}
	}
	return t, nil
}

func nodeName(s *v1alpha1.Server) string {
	if s.Status.NodeName != "" {
		return s.Status.NodeName
	}
	return s.Spec.Hostname
}

// setCondition writes status.podCIDR (when cidr is not empty) and the
// PodCIDRAllocated condition, skipping the write when nothing changes.
func (c *Controller) setCondition(ctx context.Context, s *v1alpha1.Server, cidr string, status metav1.ConditionStatus, reason, msg string) error {
	next := s.DeepCopy()
	if cidr != "" {
		next.Status.PodCIDR = cidr
	}
	meta.SetStatusCondition(&next.Status.Conditions, metav1.Condition{
		Type: stargate.ConditionPodCIDRAllocated, Status: status, Reason: reason, Message: msg, ObservedGeneration: s.Generation,
	})
	if next.Status.PodCIDR == s.Status.PodCIDR && conditionEqual(s.Status.Conditions, next.Status.Conditions, stargate.ConditionPodCIDRAllocated) {
		return nil
	}
	if err := c.client.Status().Update(ctx, next); err != nil {
		return fmt.Errorf("update status of Server %s/%s: %w", s.Namespace, s.Name, err)
	}
	*s = *next
	return nil
}

func conditionEqual(a, b []metav1.Condition, t string) bool {
	ca, cb := meta.FindStatusCondition(a, t), meta.FindStatusCondition(b, t)
	if ca == nil || cb == nil {
		return ca == cb
	}
	return ca.Status == cb.Status && ca.Reason == cb.Reason && ca.Message == cb.Message && ca.ObservedGeneration == cb.ObservedGeneration
}

// olderThan orders Servers by creation, then namespace/name.
func olderThan(a, b *v1alpha1.Server) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// Validate implements manager.Validator: the pool and prefix size parse
// and fit.
func (c *Controller) Validate() error {
	_, err := c.Config()
	return err
}
