package hpa

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// The replica computation of Kubernetes' replica calculator
// (pkg/controller/podautoscaler/replica_calculator.go), on the usage the
// agents report. Figures are in thousandths of a unit (millicores, and
// thousandths of a byte for memory), as Kubernetes computes them.

// podMetric is the usage of one pod: the sum over its containers.
type podMetric struct {
	value     int64 // milli-units
	timestamp time.Time
	window    time.Duration
}

// podMetrics maps a pod's name to its usage.
type podMetrics map[string]podMetric

// calcParams are the settings of one computation.
type calcParams struct {
	now                     time.Time
	tolerance               float64
	cpuInitializationPeriod time.Duration
	initialReadinessDelay   time.Duration
}

// withinTolerance reports whether ratio is too close to 1 to act on.
func (p calcParams) withinTolerance(ratio float64) bool {
	return math.Abs(1.0-ratio) <= p.tolerance
}

// errNoMetrics: no pod of the target has a figure for the resource.
var errNoMetrics = errors.New("no metrics returned from resource metrics API")

// resourceUsage returns the usage of resource for each pod that has a
// figure for it in the report of the node the pod is bound to (with the
// pod's UID: docs/top.md). A pod one of whose running containers has no
// figure for the resource (wasm has no CPU figure) has none, as with
// metrics-server.
func resourceUsage(pods []*manifests.Pod, reports map[string]*client.UsageReport, resource string) (podMetrics, error) {
	out := podMetrics{}
	for _, pod := range pods {
		r := reports[pod.Spec.NodeName]
		if r == nil {
			continue
		}
		m, ok := r.Pod(pod.Namespace, pod.Name, pod.UID)
		if !ok || len(m.Containers) == 0 {
			continue
		}
		var sum int64
		missing := false
		for _, c := range m.Containers {
			q, ok := c.Usage[resource]
			if !ok {
				missing = true
				break
			}
			sum += q.MilliValue()
		}
		if missing {
			continue
		}
		window, _ := time.ParseDuration(m.Window)
		out[pod.Name] = podMetric{value: sum, timestamp: m.Timestamp, window: window}
	}
	if len(out) == 0 {
		return nil, errNoMetrics
	}
	return out, nil
}

// podSet is a set of pod names.
type podSet map[string]bool

// groupPods sorts pods as Kubernetes does: ignored (being deleted or
// failed), unready (pending; for CPU, not yet ready or too recently
// started for its figure to be trusted), missing (no figure) and the
// count of the ready ones with a figure.
func groupPods(pods []*manifests.Pod, metrics podMetrics, resource string, p calcParams) (readyCount int, unready, missing, ignored podSet) {
	unready, missing, ignored = podSet{}, podSet{}, podSet{}
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || pod.Status.Phase == manifests.PodFailed {
			ignored[pod.Name] = true
			continue
		}
		if pod.Status.Phase == manifests.PodPending || pod.Status.Phase == "" {
			unready[pod.Name] = true
			continue
		}
		metric, found := metrics[pod.Name]
		if !found {
			missing[pod.Name] = true
			continue
		}
		if resource == client.ResourceCPU {
			cond := manifests.GetPodReadyCondition(pod)
			var notReady bool
			switch {
			case cond == nil || pod.Status.StartTime == nil:
				notReady = true
			case pod.Status.StartTime.Add(p.cpuInitializationPeriod).After(p.now):
				// Still starting: ignore the figure if the pod is not
				// ready, or if it covers time before the pod became ready.
				notReady = cond.Status == manifests.ConditionFalse || metric.timestamp.Before(cond.LastTransitionTime.Add(metric.window))
			default:
				// Ignore it if the pod is unready and was never ready.
				notReady = cond.Status == manifests.ConditionFalse && pod.Status.StartTime.Add(p.initialReadinessDelay).After(cond.LastTransitionTime)
			}
			if notReady {
				unready[pod.Name] = true
				continue
			}
		}
		readyCount++
	}
	return readyCount, unready, missing, ignored
}

func removeMetrics(metrics podMetrics, pods podSet) {
	for name := range pods {
		delete(metrics, name)
	}
}

// podRequests returns each pod's request of resource (milli-units), the
// sum over its containers; an error names the first container without one.
func podRequests(pods []*manifests.Pod, resource string) (map[string]int64, error) {
	out := make(map[string]int64, len(pods))
	for _, pod := range pods {
		var sum int64
		for _, c := range pod.Spec.Containers {
			q, ok := c.Resources.Requests[resource]
			if !ok {
				return nil, fmt.Errorf("missing request for %s in container %s of Pod %s", resource, c.Name, pod.Name)
			}
			sum += q.MilliValue()
		}
		out[pod.Name] = sum
	}
	return out, nil
}

// utilizationRatio is Kubernetes' GetResourceUtilizationRatio: the usage
// of the pods with a request as a percentage of their requests, over the
// target percentage.
func utilizationRatio(metrics podMetrics, requests map[string]int64, target int32) (ratio float64, utilization int32, rawAverage int64, err error) {
	var total, reqTotal int64
	n := 0
	for name, m := range metrics {
		req, ok := requests[name]
		if !ok {
			continue
		}
		total += m.value
		reqTotal += req
		n++
	}
	if reqTotal == 0 {
		return 0, 0, 0, errors.New("no metrics returned matched known pods")
	}
	utilization = int32(total * 100 / reqTotal)
	return float64(utilization) / float64(target), utilization, total / int64(n), nil
}

// latestTimestamp is the newest timestamp of metrics.
func latestTimestamp(metrics podMetrics) time.Time {
	var t time.Time
	for _, m := range metrics {
		if m.timestamp.After(t) {
			t = m.timestamp
		}
	}
	return t
}

// resourceReplicas is Kubernetes' GetResourceReplicas: the replicas that
// bring the average utilization of the pods' requests to target percent.
// Pods without a figure count as using 100 % (or the target, if higher)
// on a scale-down and 0 % on a scale-up, unready pods 0 % on a scale-up,
// and a change is not made when it is within the tolerance or when
// counting the pods without figures would reverse its direction.
func resourceReplicas(current int32, target int32, resource string, pods []*manifests.Pod, metrics podMetrics, p calcParams) (replicas int32, utilization int32, rawAverage int64, err error) {
	if len(pods) == 0 {
		return 0, 0, 0, errors.New("no pods returned by selector while calculating replica count")
	}
	readyCount, unready, missing, ignored := groupPods(pods, metrics, resource, p)
	removeMetrics(metrics, ignored)
	removeMetrics(metrics, unready)
	if len(metrics) == 0 {
		return 0, 0, 0, errors.New("did not receive metrics for targeted pods (pods might be unready)")
	}
	requests, err := podRequests(pods, resource)
	if err != nil {
		return 0, 0, 0, err
	}
	ratio, utilization, rawAverage, err := utilizationRatio(metrics, requests, target)
	if err != nil {
		return 0, 0, 0, err
	}
	scaleUpWithUnready := len(unready) > 0 && ratio > 1.0
	if !scaleUpWithUnready && len(missing) == 0 {
		if p.withinTolerance(ratio) {
			return current, utilization, rawAverage, nil
		}
		return int32(math.Ceil(ratio * float64(readyCount))), utilization, rawAverage, nil
	}
	if len(missing) > 0 {
		if ratio < 1.0 {
			fallback := int64(max(100, target))
			for name := range missing {
				metrics[name] = podMetric{value: requests[name] * fallback / 100}
			}
		} else if ratio > 1.0 {
			for name := range missing {
				metrics[name] = podMetric{}
			}
		}
	}
	if scaleUpWithUnready {
		for name := range unready {
			metrics[name] = podMetric{}
		}
	}
	newRatio, _, _, err := utilizationRatio(metrics, requests, target)
	if err != nil {
		return 0, utilization, rawAverage, err
	}
	if p.withinTolerance(newRatio) || (ratio < 1.0 && newRatio > 1.0) || (ratio > 1.0 && newRatio < 1.0) {
		return current, utilization, rawAverage, nil
	}
	n := int32(math.Ceil(newRatio * float64(len(metrics))))
	if (newRatio < 1.0 && n > current) || (newRatio > 1.0 && n < current) {
		return current, utilization, rawAverage, nil
	}
	return n, utilization, rawAverage, nil
}

// averageValueReplicas is Kubernetes' GetRawResourceReplicas: the
// replicas that bring the average usage per pod to target (milli-units),
// with the same handling of pods without figures and unready pods.
func averageValueReplicas(current int32, target int64, resource string, pods []*manifests.Pod, metrics podMetrics, p calcParams) (replicas int32, average int64, err error) {
	if len(pods) == 0 {
		return 0, 0, errors.New("no pods returned by selector while calculating replica count")
	}
	readyCount, unready, missing, ignored := groupPods(pods, metrics, resource, p)
	removeMetrics(metrics, ignored)
	removeMetrics(metrics, unready)
	if len(metrics) == 0 {
		return 0, 0, errors.New("did not receive metrics for targeted pods (pods might be unready)")
	}
	usageRatio := func() (float64, int64) {
		var total int64
		for _, m := range metrics {
			total += m.value
		}
		avg := total / int64(len(metrics))
		return float64(avg) / float64(target), avg
	}
	ratio, average := usageRatio()
	scaleUpWithUnready := len(unready) > 0 && ratio > 1.0
	if !scaleUpWithUnready && len(missing) == 0 {
		if p.withinTolerance(ratio) {
			return current, average, nil
		}
		return int32(math.Ceil(ratio * float64(readyCount))), average, nil
	}
	if len(missing) > 0 {
		if ratio < 1.0 {
			for name := range missing {
				metrics[name] = podMetric{value: target}
			}
		} else {
			for name := range missing {
				metrics[name] = podMetric{}
			}
		}
	}
	if scaleUpWithUnready {
		for name := range unready {
			metrics[name] = podMetric{}
		}
	}
	newRatio, _ := usageRatio()
	if p.withinTolerance(newRatio) || (ratio < 1.0 && newRatio > 1.0) || (ratio > 1.0 && newRatio < 1.0) {
		return current, average, nil
	}
	n := int32(math.Ceil(newRatio * float64(len(metrics))))
	if (newRatio < 1.0 && n > current) || (newRatio > 1.0 && n < current) {
		return current, average, nil
	}
	return n, average, nil
}

// quantity formats a figure in milli-units as a quantity: CPU as "250m"
// or "2", memory in whole bytes with the largest binary suffix that is
// exact ("150Mi", "1536Ki").
func quantity(resource string, v int64) manifests.Quantity {
	if v%1000 != 0 {
		return manifests.Quantity(fmt.Sprintf("%dm", v))
	}
	n := v / 1000
	if resource == client.ResourceMemory && n != 0 {
		for _, u := range []struct {
			suffix string
			size   int64
		}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
			if n%u.size == 0 {
				return manifests.Quantity(fmt.Sprintf("%d%s", n/u.size, u.suffix))
			}
		}
	}
	return manifests.Quantity(fmt.Sprint(n))
}
