package scheduler

import (
	"sync"

	"github.com/edgeorch/edgeorch/manifests"
)

// resources is an amount of cpu (millicores), memory (bytes) and pods.
type resources struct {
	milliCPU, memory, pods int64
}

// Resource reasons, as the Kubernetes scheduler words them.
const (
	ReasonInsufficientCPU    = "Insufficient cpu"
	ReasonInsufficientMemory = "Insufficient memory"
)

// podRequests sums what pod's containers request (a container's limit
// stands for its request when it has none), or what its largest init
// container requests when that is more, like Kubernetes.
func podRequests(pod *manifests.Pod) resources {
	var sum resources
	for _, c := range pod.Spec.Containers {
		cr := containerRequests(c)
		sum.milliCPU += cr.milliCPU
		sum.memory += cr.memory
	}
	for _, c := range pod.Spec.InitContainers {
		cr := containerRequests(c)
		sum.milliCPU = max(sum.milliCPU, cr.milliCPU)
		sum.memory = max(sum.memory, cr.memory)
	}
	sum.pods = 1
	return sum
}

func containerRequests(c manifests.Container) resources {
	get := func(name string, milli bool) int64 {
		q, ok := c.Resources.Requests[name]
		if !ok {
			q, ok = c.Resources.Limits[name]
		}
		if !ok {
			return 0
		}
		return quantity(q, milli)
	}
	return resources{milliCPU: get("cpu", true), memory: get("memory", false)}
}

// parsed memoises quantities: a cluster uses few distinct ones, and
// parsing dominated the cost of a decision.
var parsed struct {
	sync.Mutex
	m map[quantityKey]int64
}

type quantityKey struct {
	q     manifests.Quantity
	milli bool
}

const maxParsed = 4096

// quantity reads q as millis or as units; an unparsable quantity (the API
// rejects those) counts as zero.
func quantity(q manifests.Quantity, milli bool) int64 {
	k := quantityKey{q, milli}
	parsed.Lock()
	v, ok := parsed.m[k]
	parsed.Unlock()
	if ok {
		return v
	}
	if p, err := manifests.ParseQuantity(string(q)); err == nil {
		if milli {
			v = p.MilliValue()
		} else {
			v = p.Value()
		}
	}
	parsed.Lock()
	if parsed.m == nil || len(parsed.m) >= maxParsed {
		parsed.m = map[quantityKey]int64{}
	}
	parsed.m[k] = v
	parsed.Unlock()
	return v
}

// allocatable returns what node offers; a resource it does not report is
// unbounded (-1).
func allocatable(node *manifests.Node) resources {
	list := node.Status.Allocatable
	if len(list) == 0 {
		list = node.Status.Capacity
	}
	get := func(name string, milli bool) int64 {
		q, ok := list[name]
		if !ok {
			return -1
		}
		return quantity(q, milli)
	}
	return resources{milliCPU: get("cpu", true), memory: get("memory", false), pods: get("pods", false)}
}

// fitResources returns the resources a node offering alloc, of which used
// is taken, lacks for req.
func fitResources(req, alloc, used resources) []string {
	var reasons []string
	if alloc.pods >= 0 && used.pods+1 > alloc.pods {
		reasons = append(reasons, ReasonTooManyPods)
	}
	if alloc.milliCPU >= 0 && req.milliCPU > 0 && used.milliCPU+req.milliCPU > alloc.milliCPU {
		reasons = append(reasons, ReasonInsufficientCPU)
	}
	if alloc.memory >= 0 && req.memory > 0 && used.memory+req.memory > alloc.memory {
		reasons = append(reasons, ReasonInsufficientMemory)
	}
	return reasons
}

// leastRequested scores 0..100 how much cpu and memory stays free on a
// node once pod runs there (resources the node does not report count as free).
func leastRequested(req, alloc, used resources) float64 {
	free := func(total, used int64) float64 {
		if total < 0 {
			return 100
		}
		if total == 0 || used >= total {
			return 0
		}
		return float64(total-used) * 100 / float64(total)
	}
	return (free(alloc.milliCPU, used.milliCPU+req.milliCPU) + free(alloc.memory, used.memory+req.memory)) / 2
}
