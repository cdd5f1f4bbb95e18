package hpa

import (
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

var calcNow = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// calcPod is a running, ready pod started 10 minutes ago, requesting
// 100m CPU and 100Mi memory (or nothing, when req is false).
func calcPod(name string, req bool) *manifests.Pod {
	p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"}}
	c := manifests.Container{Name: "web"}
	if req {
		c.Resources.Requests = manifests.ResourceList{"cpu": "100m", "memory": "100Mi"}
	}
	p.Spec.Containers = []manifests.Container{c}
	start := calcNow.Add(-10 * time.Minute)
	p.Status.Phase = manifests.PodRunning
	p.Status.StartTime = &start
	p.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodReady, Status: manifests.ConditionTrue, LastTransitionTime: start.Add(5 * time.Second)}}
	return p
}

func unready(p *manifests.Pod, recently bool) *manifests.Pod {
	p.Status.Conditions[0].Status = manifests.ConditionFalse
	if recently {
		start := calcNow.Add(-time.Minute)
		p.Status.StartTime = &start
	}
	return p
}

func withPhase(p *manifests.Pod, phase string) *manifests.Pod {
	p.Status.Phase = phase
	return p
}

// usage maps pod names to their usage in milli-units.
func usage(pairs ...any) podMetrics {
	m := podMetrics{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i].(string)] = podMetric{value: int64(pairs[i+1].(int)), timestamp: calcNow, window: 15 * time.Second}
	}
	return m
}

const mi = 1024 * 1024 * 1000 // one MiB in milli-bytes

func TestResourceReplicas(t *testing.T) {
	p := calcParams{now: calcNow, tolerance: DefaultTolerance, cpuInitializationPeriod: DefaultCPUInitializationPeriod, initialReadinessDelay: DefaultInitialReadinessDelay}
	three := func() []*manifests.Pod {
		return []*manifests.Pod{calcPod("a", true), calcPod("b", true), calcPod("c", true)}
	}
	for _, tc := range []struct {
		name     string
		current  int32
		target   int32
		resource string
		pods     []*manifests.Pod
		metrics  podMetrics
		want     int32
		wantUtil int32
		wantErr  string
	}{
		{name: "scale up", current: 3, target: 50, pods: three(), metrics: usage("a", 90, "b", 90, "c", 90), want: 6, wantUtil: 90},
		{name: "scale down", current: 3, target: 50, pods: three(), metrics: usage("a", 10, "b", 10, "c", 10), want: 1, wantUtil: 10},
		{name: "within tolerance above", current: 3, target: 50, pods: three(), metrics: usage("a", 54, "b", 54, "c", 54), want: 3, wantUtil: 54},
		{name: "within tolerance below", current: 3, target: 50, pods: three(), metrics: usage("a", 46, "b", 46, "c", 46), want: 3, wantUtil: 46},
		{name: "just outside tolerance", current: 3, target: 50, pods: three(), metrics: usage("a", 56, "b", 56, "c", 56), want: 4, wantUtil: 56},
		{name: "uneven usage averages", current: 3, target: 50, pods: three(), metrics: usage("a", 150, "b", 0, "c", 0), want: 3, wantUtil: 50},
		// A pod without a figure counts as 0 % on a scale-up...
		{name: "missing on scale up", current: 3, target: 50, pods: three(), metrics: usage("a", 100, "b", 100), want: 4, wantUtil: 100},
		// ...and as 100 % on a scale-down, which here cancels it.
		{name: "missing on scale down", current: 3, target: 50, pods: three(), metrics: usage("a", 10, "b", 10), want: 3, wantUtil: 10},
		{name: "missing would reverse", current: 3, target: 50, pods: three(), metrics: usage("a", 60), want: 3, wantUtil: 60},
		// An unready pod (recently started, not ready) counts as 0 % on a scale-up.
		{name: "unready on scale up", current: 3, target: 50, pods: []*manifests.Pod{calcPod("a", true), calcPod("b", true), unready(calcPod("c", true), true)}, metrics: usage("a", 100, "b", 100, "c", 100), want: 4, wantUtil: 100},
		// ...and is left out of a scale-down.
		{name: "unready on scale down", current: 3, target: 50, pods: []*manifests.Pod{calcPod("a", true), calcPod("b", true), unready(calcPod("c", true), true)}, metrics: usage("a", 10, "b", 10, "c", 500), want: 1, wantUtil: 10},
		{name: "pending on scale up", current: 3, target: 50, pods: []*manifests.Pod{calcPod("a", true), calcPod("b", true), withPhase(calcPod("c", true), manifests.PodPending)}, metrics: usage("a", 100, "b", 100), want: 4, wantUtil: 100},
		{name: "failed pod ignored", current: 3, target: 50, pods: []*manifests.Pod{calcPod("a", true), calcPod("b", true), withPhase(calcPod("c", true), manifests.PodFailed)}, metrics: usage("a", 100, "b", 100, "c", 0), want: 4, wantUtil: 100},
		// Memory is not subject to the CPU readiness rules.
		{name: "memory unready counts", current: 2, target: 50, resource: "memory", pods: []*manifests.Pod{calcPod("a", true), unready(calcPod("b", true), true)}, metrics: usage("a", 100*mi, "b", 100*mi), want: 4, wantUtil: 100},
		{name: "no request", current: 3, target: 50, pods: []*manifests.Pod{calcPod("a", true), calcPod("b", false)}, metrics: usage("a", 10, "b", 10), wantErr: "missing request for cpu in container web of Pod b"},
		{name: "all unready", current: 1, target: 50, pods: []*manifests.Pod{unready(calcPod("a", true), true)}, metrics: usage("a", 10), wantErr: "did not receive metrics for targeted pods"},
		{name: "no pods", current: 1, target: 50, metrics: usage("a", 10), wantErr: "no pods returned by selector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.resource
			if res == "" {
				res = "cpu"
			}
			got, util, _, err := resourceReplicas(tc.current, tc.target, res, tc.pods, tc.metrics, p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || util != tc.wantUtil {
				t.Fatalf("got %d replicas at %d%% (%v), want %d at %d%%", got, util, err, tc.want, tc.wantUtil)
			}
		})
	}
}

func TestAverageValueReplicas(t *testing.T) {
	p := calcParams{now: calcNow, tolerance: DefaultTolerance, cpuInitializationPeriod: DefaultCPUInitializationPeriod, initialReadinessDelay: DefaultInitialReadinessDelay}
	two := func() []*manifests.Pod { return []*manifests.Pod{calcPod("a", false), calcPod("b", false)} }
	for _, tc := range []struct {
		name    string
		current int32
		pods    []*manifests.Pod
		metrics podMetrics
		want    int32
		wantAvg int64
	}{
		{"up", 2, two(), usage("a", 150*mi, "b", 150*mi), 3, 150 * mi},
		{"down", 2, two(), usage("a", 20*mi, "b", 20*mi), 1, 20 * mi},
		{"tolerance", 2, two(), usage("a", 105*mi, "b", 105*mi), 2, 105 * mi},
		{"missing on scale down counts as target", 2, two(), usage("a", 20*mi), 2, 20 * mi},
		{"missing on scale up counts as 0", 2, two(), usage("a", 400*mi), 4, 400 * mi},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, avg, err := averageValueReplicas(tc.current, 100*mi, "memory", tc.pods, tc.metrics, p)
			if err != nil || got != tc.want || avg != tc.wantAvg {
				t.Fatalf("got %d replicas at %d (%v), want %d at %d", got, avg, err, tc.want, tc.wantAvg)
			}
		})
	}
}

func rules(sel string, window int32, pols ...manifests.HPAScalingPolicy) *manifests.HPAScalingRules {
	return &manifests.HPAScalingRules{StabilizationWindowSeconds: &window, SelectPolicy: &sel, Policies: pols}
}

func TestScaleLimits(t *testing.T) {
	pods := func(v, period int32) manifests.HPAScalingPolicy {
		return manifests.HPAScalingPolicy{Type: manifests.PodsScalingPolicy, Value: v, PeriodSeconds: period}
	}
	pct := func(v, period int32) manifests.HPAScalingPolicy {
		return manifests.HPAScalingPolicy{Type: manifests.PercentScalingPolicy, Value: v, PeriodSeconds: period}
	}
	recent := []scaleEvent{{change: 2, at: calcNow.Add(-30 * time.Second)}}
	old := []scaleEvent{{change: 2, at: calcNow.Add(-2 * time.Minute)}}
	for _, tc := range []struct {
		name       string
		up         bool
		current    int32
		r          *manifests.HPAScalingRules
		ups, downs []scaleEvent
		want       int32
	}{
		{name: "default up small", up: true, current: 2, r: manifests.DefaultHPAScaleUpRules(), want: 6},
		{name: "default up large", up: true, current: 10, r: manifests.DefaultHPAScaleUpRules(), want: 20},
		{name: "min of policies", up: true, current: 10, r: rules("Min", 0, pods(4, 15), pct(100, 15)), want: 14},
		{name: "disabled up", up: true, current: 10, r: rules("Disabled", 0, pods(4, 15)), want: 10},
		{name: "up counts recent scale-ups", up: true, current: 4, r: rules("Max", 0, pods(2, 60)), ups: recent, want: 4},
		{name: "up forgets old scale-ups", up: true, current: 4, r: rules("Max", 0, pods(2, 60)), ups: old, want: 6},
		{name: "percent up rounds up", up: true, current: 3, r: rules("Max", 0, pct(10, 60)), want: 4},
		{name: "default down", current: 10, r: manifests.DefaultHPAScaleDownRules(), want: 0},
		{name: "pods down", current: 10, r: rules("Max", 0, pods(1, 60)), want: 9},
		{name: "pods down after recent", current: 8, r: rules("Max", 0, pods(1, 60)), downs: recent, want: 9},
		{name: "percent down rounds down", current: 5, r: rules("Max", 0, pct(50, 60)), want: 2},
		{name: "min change down", current: 10, r: rules("Min", 0, pods(1, 60), pct(50, 60)), want: 9},
		{name: "max change down", current: 10, r: rules("Max", 0, pods(1, 60), pct(50, 60)), want: 5},
		{name: "disabled down", current: 10, r: rules("Disabled", 0, pods(1, 60)), want: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got int32
			if tc.up {
				got = scaleUpLimit(tc.current, tc.ups, tc.downs, tc.r, calcNow)
			} else {
				got = scaleDownLimit(tc.current, tc.ups, tc.downs, tc.r, calcNow)
			}
			if got != tc.want {
				t.Fatalf("limit %d, want %d", got, tc.want)
			}
		})
	}
}

func TestStabilization(t *testing.T) {
	var h history
	conds := map[string]string{}
	cond := func(typ, status, reason, format string, args ...any) { conds[typ] = status + "/" + reason }
	norm := func(at time.Duration, current, desired int32) int32 {
		return h.normalize(normArgs{
			up: manifests.DefaultHPAScaleUpRules(), down: manifests.DefaultHPAScaleDownRules(),
			min: 1, max: 10, current: current, desired: desired, now: calcNow.Add(at),
			upWindow: 0, downWindow: 300 * time.Second, condition: cond,
		})
	}
	h.recommendations = []recommendation{{5, calcNow}}
	if got := norm(0, 5, 2); got != 5 || conds["AbleToScale"] != "True/ScaleDownStabilized" {
		t.Fatalf("at once: %d, %v", got, conds)
	}
	if got := norm(200*time.Second, 5, 3); got != 5 {
		t.Fatalf("within the window: %d", got)
	}
	// The highest recommendation of the last 5 minutes is now 3 (at 200s).
	if got := norm(301*time.Second, 5, 2); got != 3 {
		t.Fatalf("after the first recommendations left the window: %d", got)
	}
	// A scale-up is not delayed (window 0) but is bounded by max.
	if got := norm(310*time.Second, 8, 40); got != 10 || conds["ScalingLimited"] != "True/TooManyReplicas" {
		t.Fatalf("scale up: %d, %v", got, conds)
	}
	// Below min.
	if got := norm(2*time.Hour, 3, 0); got != 1 || conds["ScalingLimited"] != "True/TooFewReplicas" {
		t.Fatalf("scale down below min: %d, %v", got, conds)
	}
}
