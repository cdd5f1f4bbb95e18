package edgectl

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestHPATable(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	q := func(s string) *manifests.Quantity { v := manifests.Quantity(s); return &v }
	res := func(name string, target manifests.MetricTarget) manifests.MetricSpec {
		return manifests.MetricSpec{Type: "Resource", Resource: &manifests.ResourceMetricSource{Name: name, Target: target}}
	}
	web := &manifests.HorizontalPodAutoscaler{ObjectMeta: meta("default", "web", 2*time.Hour)}
	web.Spec.ScaleTargetRef = manifests.CrossVersionObjectReference{Kind: "Deployment", Name: "web"}
	web.Spec.MinReplicas, web.Spec.MaxReplicas = i32(2), 10
	web.Spec.Metrics = []manifests.MetricSpec{
		res("cpu", manifests.MetricTarget{Type: "Utilization", AverageUtilization: i32(50)}),
		res("memory", manifests.MetricTarget{Type: "AverageValue", AverageValue: q("100Mi")}),
	}
	web.Status.CurrentReplicas = 4
	web.Status.CurrentMetrics = []manifests.MetricStatus{{Type: "Resource", Resource: &manifests.ResourceMetricStatus{Name: "cpu",
		Current: manifests.MetricValueStatus{AverageUtilization: i32(90), AverageValue: q("90m")}}}}
	fresh := &manifests.HorizontalPodAutoscaler{ObjectMeta: meta("default", "fresh", time.Minute)}
	fresh.Spec.ScaleTargetRef = manifests.CrossVersionObjectReference{Kind: "StatefulSet", Name: "db"}
	fresh.Spec.MaxReplicas = 3
	fresh.Spec.Metrics = []manifests.MetricSpec{
		res("cpu", manifests.MetricTarget{Type: "Utilization", AverageUtilization: i32(80)}),
		res("memory", manifests.MetricTarget{Type: "Utilization", AverageUtilization: i32(70)}),
		res("memory", manifests.MetricTarget{Type: "AverageValue", AverageValue: q("1Gi")}),
	}
	checkRows(t, tableText(t, "hpa", []manifests.Object{web, fresh}, tableOptions{Now: tableNow}),
		"NAME | REFERENCE | TARGETS | MINPODS | MAXPODS | REPLICAS | AGE",
		"web | Deployment/web | cpu: 90%/50%, memory: <unknown>/100Mi | 2 | 10 | 4 | 120m",
		"fresh | StatefulSet/db | cpu: <unknown>/80%, memory: <unknown>/70% + 1 more... | <unset> | 3 | 0 | 60s")
}
