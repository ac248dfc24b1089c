package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/vishvananda/netns"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// Options are the flags of stargate-nodeagent.
type Options struct {
	Kubeconfig     string
	NodeName       string
	RemoteCIDRs    []string
	NextHopGateway string
	NextHopDevice  string
	RouteTable     string
	PodCIDRDevice  string
	ProbeTarget    string
	ProbeTimeout   time.Duration
	Interval       time.Duration
	Heartbeat      time.Duration
	ListenAddress  string
	NetNS          string
	// GatewayFromDatacenter reads the expected gateway from the Server's
	// Datacenter (spec.agentGateway).
	GatewayFromDatacenter bool
}

// NewOptions returns the defaults: the AKS pod and service CIDRs of the
// design, checked in the main table, with Cilium's host device.
func NewOptions() *Options {
	return &Options{
		NodeName:      os.Getenv("NODE_NAME"),
		RemoteCIDRs:   []string{"10.244.0.0/16", "10.0.0.0/16"},
		RouteTable:    "main",
		PodCIDRDevice: "cilium_host",
		ProbeTimeout:  3 * time.Second,
		Interval:      30 * time.Second,
		Heartbeat:     5 * time.Minute,
		ListenAddress: ":9475",

		GatewayFromDatacenter: true,
	}
}

// AddFlags adds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig file; empty means the in-cluster config (the Pod's bound ServiceAccount token).")
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "Name of the node the agent runs on (default from $NODE_NAME). Its Server is the one whose status.nodeName names it.")
	fs.StringSliceVar(&o.RemoteCIDRs, "remote-cidrs", o.RemoteCIDRs, "CIDRs across the tunnel that must be routed through the expected next hop: the AKS pod and service CIDRs.")
	fs.BoolVar(&o.GatewayFromDatacenter, "gateway-from-datacenter", o.GatewayFromDatacenter,
		"Expect the remote CIDRs to leave through the agentGateway of the Datacenter that declares this node's Server's namespace (read with list and watch on datacenters, selected by spec.namespace). "+
			"One DaemonSet then serves every datacenter; --next-hop-gateway is the fallback while no Datacenter says.")
	fs.StringVar(&o.NextHopGateway, "next-hop-gateway", o.NextHopGateway,
		"Gateway the remote CIDRs must leave through: the DC router's address in the worker subnet. With --gateway-from-datacenter (the default) only a fallback, used while no Datacenter declares the Server's namespace; with --gateway-from-datacenter=false the only source.")
	fs.StringVar(&o.NextHopDevice, "next-hop-device", o.NextHopDevice, "Device the remote CIDRs must leave through, e.g. tailscale0 when the worker runs Tailscale itself (then also --route-table=52).")
	fs.StringVar(&o.RouteTable, "route-table", o.RouteTable, `Routing table holding the remote routes: "main" or a number (Tailscale uses 52).`)
	fs.StringVar(&o.PodCIDRDevice, "pod-cidr-device", o.PodCIDRDevice, "Device the worker's own pod CIDR must be routed to, in the main table.")
	fs.StringVar(&o.ProbeTarget, "probe-target", o.ProbeTarget, "Optional host:port across the tunnel (the AKS router or the API server) that must answer a TCP connect.")
	fs.DurationVar(&o.ProbeTimeout, "probe-timeout", o.ProbeTimeout, "Timeout of the --probe-target connect.")
	fs.DurationVar(&o.Interval, "interval", o.Interval, "Time between check passes; kernel route and link changes trigger a pass at once besides.")
	fs.DurationVar(&o.Heartbeat, "heartbeat", o.Heartbeat, "Longest time an unchanged report goes unwritten; the Server is written only when the report changes or this passes.")
	fs.StringVar(&o.ListenAddress, "listen-address", o.ListenAddress, "Address serving /metrics, /healthz and /readyz; empty turns it off.")
	fs.StringVar(&o.NetNS, "netns", o.NetNS, "Check the routes of this network namespace (a name under /run/netns or a path) instead of the agent's own; for tests and debugging.")
}

// Config turns the options into an agent config. The caller closes
// cfg.NetNS when it is open.
func (o *Options) Config() (Config, error) {
	var errs []error
	cfg := Config{
		NodeName:     o.NodeName,
		ProbeTarget:  o.ProbeTarget,
		ProbeTimeout: o.ProbeTimeout,
		Interval:     o.Interval,
		Heartbeat:    o.Heartbeat,
		NetNS:        netns.None(),

		GatewayFromDatacenter: o.GatewayFromDatacenter,
		Want: RouteWant{
			NextHopDevice: o.NextHopDevice,
			PodCIDRDevice: o.PodCIDRDevice,
		},
	}
	for _, s := range o.RemoteCIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			errs = append(errs, fmt.Errorf("--remote-cidrs: %w", err))
			continue
		}
		cfg.Want.Remote = append(cfg.Want.Remote, p.Masked())
	}
	if o.NextHopGateway != "" {
		a, err := netip.ParseAddr(o.NextHopGateway)
		if err != nil {
			errs = append(errs, fmt.Errorf("--next-hop-gateway: %w", err))
		}
		cfg.Want.NextHopGateway = a.Unmap()
	}
	var err error
	if cfg.Want.RemoteTable, err = ParseTable(o.RouteTable); err != nil {
		errs = append(errs, fmt.Errorf("--route-table: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if o.NetNS != "" {
		path := o.NetNS
		if !strings.Contains(path, "/") {
			path = "/run/netns/" + path
		}
		if cfg.NetNS, err = netns.GetFromPath(path); err != nil {
			return cfg, fmt.Errorf("--netns: %w", err)
		}
	}
	return cfg, nil
}

// Run runs stargate-nodeagent with o until ctx ends.
func Run(ctx context.Context, o *Options) error {
	cfg, err := o.Config()
	if err != nil {
		return err
	}
	defer cfg.NetNS.Close()
	var config *rest.Config
	if o.Kubeconfig != "" {
		config, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	} else {
		config, err = rest.InClusterConfig()
	}
	if err != nil {
		return fmt.Errorf("client config: %w", err)
	}
	// A thousand agents: few requests each, and never a burst.
	config.QPS, config.Burst = 2, 5
	agent, err := New(cfg, config)
	if err != nil {
		return err
	}
	klog.InfoS("Starting stargate-nodeagent", "node", cfg.NodeName, "remote", o.RemoteCIDRs, "gatewayFromDatacenter", o.GatewayFromDatacenter, "gateway", o.NextHopGateway,
		"device", o.NextHopDevice, "table", o.RouteTable, "podCIDRDevice", o.PodCIDRDevice, "interval", o.Interval, "heartbeat", o.Heartbeat)
	return agent.Run(ctx, o.ListenAddress)
}
