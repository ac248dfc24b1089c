package datacenternetwork

import (
	"fmt"
	"net/netip"

	"github.com/spf13/pflag"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
)

// Defaults of the cluster's networks: AKS's pod CIDR, Service range and
// VNet.
const (
	DefaultPodCIDRPool  = "10.244.0.0/16"
	DefaultServiceCIDR  = "10.0.0.0/16"
	DefaultCloudNetwork = "10.224.0.0/12"
)

// Options are the cluster's networks the plugin keeps datacenters out of.
type Options struct {
	PodCIDRPool   string
	ServiceCIDR   string
	CloudNetworks []string
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{PodCIDRPool: DefaultPodCIDRPool, ServiceCIDR: DefaultServiceCIDR, CloudNetworks: []string{DefaultCloudNetwork}}
}

// AddFlags adds the flags of the cluster's networks to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	const match = " Must match stargate-controller's flag of the same name."
	fs.StringVar(&o.PodCIDRPool, "pod-cidr-pool", o.PodCIDRPool,
		"The pool Stargate allocates the Servers' pod CIDRs from. The DatacenterNetwork admission plugin rejects a Datacenter whose workerSubnet overlaps it, "+
			"a podCIDRBlock outside it and a Server whose pinned spec.podCIDR is outside it."+match)
	fs.StringVar(&o.ServiceCIDR, "service-cluster-ip-range", o.ServiceCIDR,
		"The cluster's Service range (kube-apiserver's flag of the same name). The DatacenterNetwork admission plugin rejects a Datacenter whose workerSubnet, "+
			"podCIDRBlock or router overlaps it."+match)
	fs.StringSliceVar(&o.CloudNetworks, "cloud-network-cidr", o.CloudNetworks,
		"The cloud's own networks, e.g. the AKS VNet (repeatable or comma-separated). The DatacenterNetwork admission plugin rejects a Datacenter whose "+
			"workerSubnet, podCIDRBlock or router overlaps one. Must list the networks stargate-controller routes to the cloud.")
}

// Validate checks the flags.
func (o *Options) Validate() []error {
	if _, err := o.Networks(); err != nil {
		return []error{err}
	}
	return nil
}

// Networks parses the flags.
func (o *Options) Networks() (validation.ClusterNetworks, error) {
	var n validation.ClusterNetworks
	var err error
	if n.PodCIDRPool, err = parsePrefix("--pod-cidr-pool", o.PodCIDRPool); err != nil {
		return n, err
	}
	if n.ServiceCIDR, err = parsePrefix("--service-cluster-ip-range", o.ServiceCIDR); err != nil {
		return n, err
	}
	for _, c := range o.CloudNetworks {
		p, err := parsePrefix("--cloud-network-cidr", c)
		if err != nil {
			return n, err
		}
		n.Cloud = append(n.Cloud, p)
	}
	return n, nil
}

func parsePrefix(flag, v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s %q: not a CIDR: %w", flag, v, err)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%s %q: a default route would reject every datacenter", flag, v)
	}
	return p.Masked(), nil
}
