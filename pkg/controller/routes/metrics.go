package routes

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	routeWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stargate_route_writes_total", Help: "Writes made to a route layer (Azure table PUTs, Tailscale route POSTs, CiliumNode and Node writes).",
	}, []string{"layer"})
	routeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stargate_route_errors_total", Help: "Failed syncs of a route layer.",
	}, []string{"layer"})
	driftRepaired = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stargate_route_drift_repaired_total", Help: "Passes that rewrote a layer although Stargate's wanted state had not changed: drift repaired.",
	}, []string{"layer"})
	passDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "stargate_route_pass_duration_seconds", Help: "Wall time of one route reconcile pass over all Servers.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
	})
)

func init() { metrics.Registry.MustRegister(routeWrites, routeErrors, driftRepaired, passDuration) }
