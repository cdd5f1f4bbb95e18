package dashboard

import (
	"net/http"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/metrics"
)

// podPhases and nodeStates are always written, at zero when empty, so
// that a query sees a series drop to 0 rather than vanish.
var (
	podPhases  = []string{manifests.PodPending, manifests.PodRunning, manifests.PodSucceeded, manifests.PodFailed, manifests.PodUnknown}
	nodeStates = []string{NodeReady, NodeNotReady, NodeUnreachable}
)

// newRegistry returns the fleet figures, computed from the caches at
// every scrape (docs/metrics.md).
func (s *Server) newRegistry() *metrics.Registry {
	r := metrics.NewRegistry()
	r.MustRegister(
		metrics.NewGaugeFuncVec("edge_nodes", "Nodes by lifecycle state (Ready, NotReady, Unreachable), as the node controller records them.",
			[]string{"state"}, func(emit func(float64, ...string)) {
				for _, st := range nodeStates {
					emit(0, st)
				}
				for _, o := range s.inf["nodes"].List(manifests.Selector{}) {
					if n, ok := o.(*manifests.Node); ok {
						st, _ := nodeState(n)
						emit(1, st)
					}
				}
			}),
		metrics.NewGaugeFuncVec("edge_pods", "Pods by phase (status.phase; Pending until an agent reports).",
			[]string{"phase"}, func(emit func(float64, ...string)) {
				for _, ph := range podPhases {
					emit(0, ph)
				}
				for _, o := range s.inf["pods"].List(manifests.Selector{}) {
					if p, ok := o.(*manifests.Pod); ok {
						ph := p.Status.Phase
						if ph == "" {
							ph = manifests.PodPending
						}
						emit(1, ph)
					}
				}
			}),
		metrics.NewGaugeFuncVec("edge_workloads", "Workload objects by kind (Deployment, DaemonSet, ReplicaSet, Job).",
			[]string{"kind"}, func(emit func(float64, ...string)) {
				for _, res := range []string{"deployments", "daemonsets", "replicasets", "jobs"} {
					for _, o := range s.inf[res].List(manifests.Selector{}) {
						if wr, ok := workloadRow(o); ok {
							emit(1, wr.Kind)
						}
					}
				}
			}),
		metrics.NewGaugeFunc("edge_dashboard_cache_synced", "1 once the caches behind edge_nodes and edge_pods hold the whole store, else 0.",
			func() float64 {
				if s.synced() {
					return 1
				}
				return 0
			}),
	)
	return r
}

// handleMetrics serves /metrics: the fleet figures and the process-wide
// ones (controllers, API, Go runtime) in the Prometheus text format. It
// sits behind the dashboard's token like the rest.
func (s *Server) handleMetrics() http.Handler {
	return metrics.Handler(s.newRegistry(), metrics.Default)
}
