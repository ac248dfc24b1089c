package twin

import (
	"context"
	"errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stargate-k8s/stargate/pkg/cilium"
)

// Segment is nodes on one subnet behind one gateway namespace: a
// datacenter's workers behind its router, or the AKS nodes in the VNet.
type Segment struct {
	// Gateway is the namespace that routes into the segment (the DC
	// router's, or the VNet's).
	Gateway string
	Nodes   []*Node
}

// NodeRoutes renders what Cilium would program from the API: on every
// node, a route to each other node of its segment's pod CIDR via that
// node; on the segment's gateway, a route to every node's pod CIDR. A
// node's pod CIDR is its CiliumNode's spec.ipam.podCIDRs[0], or, without
// a CiliumNode, its Node's spec.podCIDR. So a wrong or missing CiliumNode
// CIDR breaks the traffic it would break with Cilium's native routing.
// It polls the API every Interval.
type NodeRoutes struct {
	Client   client.Client
	Segments []Segment
	Interval time.Duration

	mu      sync.Mutex
	lastErr error
	cidrs   map[string]string
	stop    chan struct{}
	done    chan struct{}
}

// Start renders until Stop.
func (r *NodeRoutes) Start() {
	if r.Interval <= 0 {
		r.Interval = 100 * time.Millisecond
	}
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.done)
		for {
			err := r.renderOnce(context.Background())
			r.mu.Lock()
			r.lastErr = err
			r.mu.Unlock()
			select {
			case <-r.stop:
				return
			case <-time.After(r.Interval):
			}
		}
	}()
}

// Stop ends the rendering.
func (r *NodeRoutes) Stop() {
	if r.stop != nil {
		close(r.stop)
		<-r.done
		r.stop = nil
	}
}

// CIDRs is the pod CIDR per node last rendered.
func (r *NodeRoutes) CIDRs() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for k, v := range r.cidrs {
		out[k] = v
	}
	return out
}

// LastErr is the last render's error.
func (r *NodeRoutes) LastErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

func (r *NodeRoutes) renderOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return err
	}
	cns, err := cilium.List(ctx, r.Client)
	if err != nil && !errors.Is(err, cilium.ErrCRDMissing) {
		return err
	}
	cidr := map[string]string{}
	for _, n := range nodes.Items {
		if n.Spec.PodCIDR != "" {
			cidr[n.Name] = n.Spec.PodCIDR
		}
	}
	for name, cn := range cns {
		if p := cilium.PodCIDRsOf(cn); len(p) > 0 {
			cidr[name] = p[0]
		} else {
			delete(cidr, name)
		}
	}
	var errs []error
	for _, seg := range r.Segments {
		gw := map[string]string{}
		for _, n := range seg.Nodes {
			if c, ok := cidr[n.Name]; ok {
				gw[c] = n.IP.String()
			}
		}
		errs = append(errs, syncRoutes(seg.Gateway, ciliumProto, gw))
		for _, n := range seg.Nodes {
			want := map[string]string{}
			for _, o := range seg.Nodes {
				if c, ok := cidr[o.Name]; ok && o != n && !n.PodCIDR.Contains(prefixAddr(c)) {
					want[c] = o.IP.String()
				}
			}
			errs = append(errs, syncRoutes(n.NetNS, ciliumProto, want))
		}
	}
	r.mu.Lock()
	r.cidrs = cidr
	r.mu.Unlock()
	return errors.Join(errs...)
}
