package agent

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Sync kinds, the "kind" label of the sync metrics.
const (
	syncConflist = "conflist"
	syncRoutes   = "routes"
)

// Metrics are the agent's Prometheus metrics.
type Metrics struct {
	syncs          *prometheus.CounterVec
	syncErrors     *prometheus.CounterVec
	conflistWrites prometheus.Counter
	routeChanges   *prometheus.CounterVec
	routesManaged  prometheus.Gauge
	routeConflicts prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cni_bridge_agent", Name: "syncs_total",
			Help: "Syncs run, by kind (conflist: this node's CNI config; routes: routes to other nodes).",
		}, []string{"kind"}),
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cni_bridge_agent", Name: "sync_errors_total",
			Help: "Syncs that failed (and were retried), by kind.",
		}, []string{"kind"}),
		conflistWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cni_bridge_agent", Name: "conflist_writes_total",
			Help: "Times the CNI config file was (re)written; an unchanged config is not rewritten.",
		}),
		routeChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cni_bridge_agent", Name: "route_changes_total",
			Help: "Route changes attempted, by operation (add, replace, delete).",
		}, []string{"op"}),
		routesManaged: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "cni_bridge_agent", Name: "routes_managed",
			Help: "Routes to other nodes' pod subnets the agent keeps installed.",
		}),
		routeConflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "cni_bridge_agent", Name: "route_conflicts",
			Help: "Pod subnets not routed because a route the agent did not make leads there.",
		}),
	}
	for _, c := range []prometheus.Collector{m.syncs, m.syncErrors, m.conflistWrites, m.routeChanges, m.routesManaged, m.routeConflicts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return m, nil
}

// observeSync counts a sync of kind and its failure.
func (m *Metrics) observeSync(kind string, err error) {
	m.syncs.WithLabelValues(kind).Inc()
	if err != nil {
		m.syncErrors.WithLabelValues(kind).Inc()
	}
}

// observeRoutes records the outcome of a route reconcile.
func (m *Metrics) observeRoutes(res ReconcileResult) {
	m.routeChanges.WithLabelValues("add").Add(float64(len(res.Plan.Add)))
	m.routeChanges.WithLabelValues("replace").Add(float64(len(res.Plan.Replace)))
	m.routeChanges.WithLabelValues("delete").Add(float64(len(res.Plan.Delete)))
	m.routesManaged.Set(float64(res.Managed))
	m.routeConflicts.Set(float64(len(res.Plan.Conflicts)))
}
