package admission

import (
	"fmt"
	"sort"

	"github.com/edgeorch/edgeorch/manifests"
)

// applyLimitRanges fills container defaults from the namespace's
// LimitRanges (type Container: default -> limits, defaultRequest ->
// requests, a set limit doubling as a missing request) and then checks min,
// max and maxLimitRequestRatio, as Kubernetes' LimitRanger does. It
// returns the reason a pod is refused, or "".
func applyLimitRanges(pod *manifests.Pod, ranges []*manifests.LimitRange) string {
	for _, lr := range ranges {
		for _, it := range lr.Spec.Limits {
			if it.Type != manifests.LimitTypeContainer {
				continue
			}
			for _, cs := range [][]manifests.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
				for i := range cs {
					defaultContainer(&cs[i], it)
				}
			}
		}
	}
	for _, lr := range ranges {
		for _, it := range lr.Spec.Limits {
			switch it.Type {
			case manifests.LimitTypeContainer:
				for _, cs := range [][]manifests.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
					for i := range cs {
						r := cs[i].Resources
						if why := checkBounds(it, "Container", r.Requests, r.Limits); why != "" {
							return why
						}
					}
				}
			case manifests.LimitTypePod:
				req, lim := podTotals(pod)
				if why := checkBounds(it, "Pod", req, lim); why != "" {
					return why
				}
			}
		}
	}
	return ""
}

func defaultContainer(c *manifests.Container, it manifests.LimitRangeItem) {
	r := &c.Resources
	for _, name := range sorted(it.Default) {
		if _, ok := r.Limits[name]; !ok {
			if r.Limits == nil {
				r.Limits = manifests.ResourceList{}
			}
			r.Limits[name] = it.Default[name]
		}
	}
	for _, name := range sorted(it.DefaultRequest) {
		if _, ok := r.Requests[name]; !ok {
			if r.Requests == nil {
				r.Requests = manifests.ResourceList{}
			}
			r.Requests[name] = it.DefaultRequest[name]
		}
	}
	// As in Kubernetes, a limit without a request sets the request.
	for _, name := range sorted(r.Limits) {
		if _, ok := r.Requests[name]; !ok {
			if r.Requests == nil {
				r.Requests = manifests.ResourceList{}
			}
			r.Requests[name] = r.Limits[name]
		}
	}
}

// checkBounds returns Kubernetes' LimitRanger message for the first bound
// broken by requests/limits of a Container or Pod.
func checkBounds(it manifests.LimitRangeItem, what string, req, lim manifests.ResourceList) string {
	for _, name := range sorted(it.Min) {
		mn := it.Min[name]
		r, okR := req[name]
		l, okL := lim[name]
		switch {
		case !okR:
			return fmt.Sprintf("minimum %s usage per %s is %s.  No request is specified", name, what, mn)
		case r.Cmp(mn) < 0:
			return fmt.Sprintf("minimum %s usage per %s is %s, but request is %s", name, what, mn, r)
		case okL && l.Cmp(mn) < 0:
			return fmt.Sprintf("minimum %s usage per %s is %s, but limit is %s", name, what, mn, l)
		}
	}
	for _, name := range sorted(it.Max) {
		mx := it.Max[name]
		r, okR := req[name]
		l, okL := lim[name]
		switch {
		case !okL:
			return fmt.Sprintf("maximum %s usage per %s is %s.  No limit is specified", name, what, mx)
		case l.Cmp(mx) > 0:
			return fmt.Sprintf("maximum %s usage per %s is %s, but limit is %s", name, what, mx, l)
		case okR && r.Cmp(mx) > 0:
			return fmt.Sprintf("maximum %s usage per %s is %s, but request is %s", name, what, mx, r)
		}
	}
	for _, name := range sorted(it.MaxLimitRequestRatio) {
		ratio := it.MaxLimitRequestRatio[name]
		r, okR := req[name]
		l, okL := lim[name]
		if !okL {
			return fmt.Sprintf("%s max limit to request ratio per %s is %s, but no limit is specified", name, what, ratio)
		}
		if !okR || r.Sign() == 0 {
			return fmt.Sprintf("%s max limit to request ratio per %s is %s, but no request is specified or request is 0", name, what, ratio)
		}
		// l/r > ratio  <=>  l*1000 > ratio*r*1000 in milli-units.
		lm, rm, qm := l.MilliValue(), r.MilliValue(), ratio.MilliValue()
		if lm*1000 > qm*rm {
			return fmt.Sprintf("%s max limit to request ratio per %s is %s, but provided ratio is %.6f", name, what, ratio, float64(lm)/float64(rm))
		}
	}
	return ""
}

// podTotals sums container requests and limits, taking the larger of that
// sum and any one init container, as Kubernetes does.
func podTotals(pod *manifests.Pod) (req, lim manifests.ResourceList) {
	sum := func(pick func(manifests.ResourceRequirements) manifests.ResourceList) manifests.ResourceList {
		milli := map[string]int64{}
		for _, c := range pod.Spec.Containers {
			for n, q := range pick(c.Resources) {
				milli[n] += q.MilliValue()
			}
		}
		for _, c := range pod.Spec.InitContainers {
			for n, q := range pick(c.Resources) {
				milli[n] = max(milli[n], q.MilliValue())
			}
		}
		out := manifests.ResourceList{}
		for n, v := range milli {
			out[n] = formatQuantity(n, v)
		}
		return out
	}
	return sum(func(r manifests.ResourceRequirements) manifests.ResourceList { return r.Requests }),
		sum(func(r manifests.ResourceRequirements) manifests.ResourceList { return r.Limits })
}

func sorted[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// formatQuantity writes milli (thousandths of a unit) of resource name the
// way Kubernetes prints it: cpu in cores or m, memory in Ki/Mi/Gi when
// exact, counts as integers.
func formatQuantity(name string, milli int64) manifests.Quantity {
	if milli%1000 != 0 {
		return manifests.Quantity(fmt.Sprintf("%dm", milli))
	}
	v := milli / 1000
	if isMemory(name) && v != 0 {
		for _, s := range []struct {
			suffix string
			size   int64
		}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
			if v%s.size == 0 {
				return manifests.Quantity(fmt.Sprintf("%d%s", v/s.size, s.suffix))
			}
		}
	}
	return manifests.Quantity(fmt.Sprintf("%d", v))
}

func isMemory(name string) bool {
	return name == "memory" || name == "requests.memory" || name == "limits.memory" || name == "ephemeral-storage"
}
