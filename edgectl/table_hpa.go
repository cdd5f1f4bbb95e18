package edgectl

import (
	"fmt"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// hpaHeaders are the columns of a HorizontalPodAutoscaler, as kubectl
// prints them.
func hpaHeaders() []string {
	return []string{"NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"}
}

// hpaRow summarises an HPA: its target, each metric as current/target
// ("cpu: 90%/50%", "memory: 150Mi/100Mi"; <unknown> before a reading),
// its bounds and the current replicas.
func hpaRow(h *manifests.HorizontalPodAutoscaler, name, created string) []string {
	minPods := "<unset>"
	if h.Spec.MinReplicas != nil {
		minPods = fmt.Sprint(*h.Spec.MinReplicas)
	}
	ref := h.Spec.ScaleTargetRef.Kind + "/" + h.Spec.ScaleTargetRef.Name
	return []string{name, ref, hpaTargets(h), minPods, fmt.Sprint(h.Spec.MaxReplicas), fmt.Sprint(h.Status.CurrentReplicas), created}
}

// hpaTargets is kubectl's TARGETS column: the first two metrics, then
// "+ N more...".
func hpaTargets(h *manifests.HorizontalPodAutoscaler) string {
	if len(h.Spec.Metrics) == 0 {
		return "<none>"
	}
	var parts []string
	for i, m := range h.Spec.Metrics {
		if i == 2 {
			parts[1] += fmt.Sprintf(" + %d more...", len(h.Spec.Metrics)-2)
			break
		}
		if m.Type != manifests.ResourceMetricSourceType || m.Resource == nil {
			parts = append(parts, "<unknown>/<unknown>")
			continue
		}
		var cur *manifests.MetricValueStatus
		for _, s := range h.Status.CurrentMetrics {
			if s.Resource != nil && s.Resource.Name == m.Resource.Name {
				cur = &s.Resource.Current
				break
			}
		}
		current, target := "<unknown>", "<unknown>"
		t := m.Resource.Target
		switch {
		case t.AverageUtilization != nil:
			target = fmt.Sprintf("%d%%", *t.AverageUtilization)
			if cur != nil && cur.AverageUtilization != nil {
				current = fmt.Sprintf("%d%%", *cur.AverageUtilization)
			}
		case t.AverageValue != nil:
			target = string(*t.AverageValue)
			if cur != nil && cur.AverageValue != nil {
				current = string(*cur.AverageValue)
			}
		}
		parts = append(parts, m.Resource.Name+": "+current+"/"+target)
	}
	return strings.Join(parts, ", ")
}
