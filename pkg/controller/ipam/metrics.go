package ipam

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	allocations = prometheus.NewCounter(prometheus.CounterOpts{Name: "stargate_ipam_allocations_total", Help: "Pod CIDRs allocated to Servers."})
	releases    = prometheus.NewCounter(prometheus.CounterOpts{Name: "stargate_ipam_releases_total", Help: "Pod CIDRs released by deleted Servers."})
)

func init() { metrics.Registry.MustRegister(allocations, releases) }
