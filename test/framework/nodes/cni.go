package nodes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// renderPodNetworks follows the nodes' Node.spec.podCIDR, whoever sets it,
// until ctx ends: when a node gains a pod CIDR (or it changes), it writes
// that node's CNI configuration (containerd picks it up, the node becomes
// Ready) and routes the CIDR via the node's IP, from the host and from
// every other node. The first error is kept for WaitReady to report.
func (c *Cluster) renderPodNetworks(ctx context.Context) {
	defer close(c.cniDone)
	for {
		if err := c.renderOnce(ctx); err != nil && ctx.Err() == nil {
			c.mu.Lock()
			if c.cniErr == nil {
				c.cniErr = err
			}
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (c *Cluster) cniError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cniErr
}

func (c *Cluster) renderOnce(ctx context.Context) error {
	changed := false
	all := c.nodes()
	for _, n := range all {
		node, err := c.cp.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil || node.Spec.PodCIDR == "" || node.Spec.PodCIDR == n.podCIDR {
			continue
		}
		conf, err := cniConfig(n.Name, node.Spec.PodCIDR, n.paths.cniDataDir, n.bridge)
		if err != nil {
			return err
		}
		// Write and rename, so containerd never reads half a file.
		path := filepath.Join(n.paths.cniConfDir, "10-"+cniNetwork(n.Name)+".conflist")
		if err := os.WriteFile(path+".tmp", conf, 0o644); err != nil {
			return err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return err
		}
		c.logf("node %s has pod CIDR %s", n.Name, node.Spec.PodCIDR)
		if n.podCIDR != "" {
			// The routes to the CIDR it had go; errors only mean one was
			// never made.
			_ = ipCmds([]string{"route", "delete", n.podCIDR, "via", n.IP, "dev", BridgeName})
			for _, other := range all {
				if other != n {
					_ = ipCmds([]string{"-n", other.NetNS, "route", "delete", n.podCIDR, "via", n.IP, "dev", "eth0"})
				}
			}
		}
		n.podCIDR = node.Spec.PodCIDR
		changed = true
	}
	if !changed {
		return nil
	}
	// Every route again: replace is idempotent, and a node that got its
	// CIDR now also needs the routes to the others'.
	for _, n := range all {
		if n.podCIDR == "" {
			continue
		}
		if err := ipCmds([]string{"route", "replace", n.podCIDR, "via", n.IP, "dev", BridgeName}); err != nil {
			return fmt.Errorf("host route to node %s's pods: %w", n.Name, err)
		}
		for _, other := range all {
			if other == n {
				continue
			}
			if err := ipCmds([]string{"-n", other.NetNS, "route", "replace", n.podCIDR, "via", n.IP, "dev", "eth0"}); err != nil {
				return fmt.Errorf("route from node %s to node %s's pods: %w", other.Name, n.Name, err)
			}
		}
	}
	return nil
}
