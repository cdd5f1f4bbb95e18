package manifests

import "fmt"

// LimitRange (v1) sets per-namespace defaults and bounds for the compute
// resources of pods and containers; it is applied when a pod is created.
type LimitRange struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       LimitRangeSpec `json:"spec"`
}

// LimitRangeSpec lists the limits.
type LimitRangeSpec struct {
	Limits []LimitRangeItem `json:"limits"`
}

// Limit types supported (Kubernetes' PersistentVolumeClaim is not).
const (
	LimitTypeContainer = "Container"
	LimitTypePod       = "Pod"
)

// LimitRangeItem is one limit of a LimitRange.
type LimitRangeItem struct {
	Type                 string       `json:"type"`
	Max                  ResourceList `json:"max,omitempty"`
	Min                  ResourceList `json:"min,omitempty"`
	Default              ResourceList `json:"default,omitempty"`
	DefaultRequest       ResourceList `json:"defaultRequest,omitempty"`
	MaxLimitRequestRatio ResourceList `json:"maxLimitRequestRatio,omitempty"`
}

func validateLimitRange(l *errList, lr *LimitRange) {
	if len(lr.Spec.Limits) == 0 {
		l.required("spec.limits")
	}
	for i, it := range lr.Spec.Limits {
		p := fmt.Sprintf("spec.limits[%d]", i)
		if !oneOf(it.Type, LimitTypeContainer, LimitTypePod) {
			l.unsupported(p+".type", it.Type, LimitTypeContainer, LimitTypePod)
			continue
		}
		lists := []struct {
			name string
			rl   ResourceList
		}{{"max", it.Max}, {"min", it.Min}, {"default", it.Default}, {"defaultRequest", it.DefaultRequest}, {"maxLimitRequestRatio", it.MaxLimitRequestRatio}}
		for _, f := range lists {
			for _, name := range sortedKeys(f.rl) {
				validateResourceName(l, p+"."+f.name, name)
				validateQuantity(l, p+"."+f.name+"["+name+"]", f.rl[name])
			}
		}
		if it.Type == LimitTypePod {
			if len(it.Default) > 0 {
				l.add(p+".default", "not supported when limit type is Pod")
			}
			if len(it.DefaultRequest) > 0 {
				l.add(p+".defaultRequest", "not supported when limit type is Pod")
			}
		}
		for _, name := range sortedKeys(it.Min) {
			if mx, ok := it.Max[name]; ok && it.Min[name].Cmp(mx) > 0 {
				l.invalid(p+".min["+name+"]", string(it.Min[name]), fmt.Sprintf("min value %s is greater than max value %s", it.Min[name], mx))
			}
		}
		for _, name := range sortedKeys(it.Default) {
			if mx, ok := it.Max[name]; ok && it.Default[name].Cmp(mx) > 0 {
				l.invalid(p+".default["+name+"]", string(it.Default[name]), fmt.Sprintf("default value %s is greater than max value %s", it.Default[name], mx))
			}
			if mn, ok := it.Min[name]; ok && it.Default[name].Cmp(mn) < 0 {
				l.invalid(p+".default["+name+"]", string(it.Default[name]), fmt.Sprintf("min value %s is greater than default value %s", mn, it.Default[name]))
			}
		}
		for _, name := range sortedKeys(it.DefaultRequest) {
			if d, ok := it.Default[name]; ok && it.DefaultRequest[name].Cmp(d) > 0 {
				l.invalid(p+".defaultRequest["+name+"]", string(it.DefaultRequest[name]), fmt.Sprintf("default request value %s is greater than default limit value %s", it.DefaultRequest[name], d))
			}
		}
		for _, name := range sortedKeys(it.MaxLimitRequestRatio) {
			if it.MaxLimitRequestRatio[name].Cmp("1") < 0 {
				l.invalid(p+".maxLimitRequestRatio["+name+"]", string(it.MaxLimitRequestRatio[name]), "ratio must be greater than or equal to 1")
			}
		}
	}
}
