package nodeagent

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the agent's Prometheus metrics, in a registry of their own.
type Metrics struct {
	Registry *prometheus.Registry

	checks         *prometheus.CounterVec
	checkDuration  prometheus.Histogram
	netlinkEvents  prometheus.Counter
	writes         *prometheus.CounterVec
	routesHealthy  prometheus.Gauge
	ciliumMatches  prometheus.Gauge
	lastCheckStamp prometheus.Gauge
}

// Triggers of a check pass, as the trigger label of checks_total.
const (
	TriggerStart    = "start"
	TriggerInterval = "interval"
	TriggerNetlink  = "netlink"
	TriggerAPI      = "api"
)

// NewMetrics registers the agent's metrics and the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stargate_nodeagent_checks_total",
			Help: "Check passes, by what triggered them: start, interval, netlink (a route or link change) or api (the Server or CiliumNode changed).",
		}, []string{"trigger"}),
		checkDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stargate_nodeagent_check_duration_seconds",
			Help:    "Time of one check pass: routing table, probe and comparison, without the status write.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		netlinkEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stargate_nodeagent_netlink_events_total",
			Help: "Route and link change notifications received from the kernel.",
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stargate_nodeagent_status_writes_total",
			Help: "Writes of the Server status, by why (changed or heartbeat) and result (ok or error).",
		}, []string{"why", "result"}),
		routesHealthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stargate_nodeagent_node_routes_healthy",
			Help: "1 when NodeRoutesHealthy is True, 0 when False, -1 when Unknown.",
		}),
		ciliumMatches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stargate_nodeagent_cilium_pod_cidr_matches",
			Help: "1 when CiliumPodCIDRMatches is True, 0 when False, -1 when Unknown.",
		}),
		lastCheckStamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stargate_nodeagent_last_check_timestamp_seconds",
			Help: "Unix time of the last check pass.",
		}),
	}
	m.Registry.MustRegister(m.checks, m.checkDuration, m.netlinkEvents, m.writes, m.routesHealthy, m.ciliumMatches,
		m.lastCheckStamp, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// health is what /healthz and /readyz answer from.
type health struct {
	lastCheck  atomic.Int64 // unix nanoseconds of the last pass; 0 before the first
	subscribed atomic.Bool  // the netlink subscriptions are up
	synced     atomic.Bool  // the Server informer has listed
	staleAfter time.Duration
}

// healthProblem says why the agent is not live, or "".
func (h *health) healthProblem(now time.Time) string {
	last := h.lastCheck.Load()
	if last == 0 {
		return ""
	}
	if age := now.Sub(time.Unix(0, last)); age > h.staleAfter {
		return fmt.Sprintf("last check pass was %s ago (more than %s)", age.Round(time.Second), h.staleAfter)
	}
	return ""
}

// readyProblem says why the agent is not ready, or "".
func (h *health) readyProblem() string {
	switch {
	case !h.synced.Load():
		return "the Server informer has not synced"
	case !h.subscribed.Load():
		return "not subscribed to kernel route changes"
	case h.lastCheck.Load() == 0:
		return "no check pass yet"
	}
	return ""
}

// Handler serves /metrics, /healthz and /readyz.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{}))
	answer := func(w http.ResponseWriter, problem string) {
		if problem != "" {
			http.Error(w, problem, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { answer(w, a.health.healthProblem(a.now())) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { answer(w, a.health.readyProblem()) })
	return mux
}

func conditionValue(s string) float64 {
	switch s {
	case "True":
		return 1
	case "False":
		return 0
	}
	return -1
}
