package hpa

import (
	"math"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// Stabilisation and scaling policies: Kubernetes'
// normalizeDesiredReplicasWithBehaviors, with the controller's clock.

// recommendation is one unstabilised desired replica count.
type recommendation struct {
	replicas int32
	at       time.Time
}

// scaleEvent is one rescale: how many replicas were added (or removed).
type scaleEvent struct {
	change int32
	at     time.Time
}

// history is what the controller remembers of one HPA between syncs.
type history struct {
	recommendations []recommendation
	scaleUps        []scaleEvent
	scaleDowns      []scaleEvent
}

// normArgs are the inputs of a normalisation.
type normArgs struct {
	up, down   *manifests.HPAScalingRules
	min, max   int32
	current    int32
	desired    int32
	now        time.Time
	upWindow   time.Duration
	downWindow time.Duration
	condition  func(typ, status, reason, format string, args ...any)
}

func windowOf(r *manifests.HPAScalingRules, def int32) time.Duration {
	w := def
	if r != nil && r.StabilizationWindowSeconds != nil {
		w = *r.StabilizationWindowSeconds
	}
	return time.Duration(w) * time.Second
}

// normalize stabilises desired over the windows, then bounds it by the
// scaling policies and by min and max, setting the AbleToScale and
// ScalingLimited conditions as Kubernetes does.
func (h *history) normalize(a normArgs) int32 {
	stabilized, reason, msg := h.stabilize(a)
	if stabilized != a.desired {
		a.condition(manifests.HPAAbleToScale, manifests.ConditionTrue, reason, "%s", msg)
	} else {
		a.condition(manifests.HPAAbleToScale, manifests.ConditionTrue, "ReadyForNewScale", "recommended size matches current size")
	}
	a.desired = stabilized
	out, reason, msg := h.limitRate(a)
	if out == stabilized {
		a.condition(manifests.HPAScalingLimited, manifests.ConditionFalse, reason, "%s", msg)
	} else {
		a.condition(manifests.HPAScalingLimited, manifests.ConditionTrue, reason, "%s", msg)
	}
	return out
}

// stabilize returns current brought within [lowest recommendation of the
// up window, highest of the down window] (both including desired), and
// records desired.
func (h *history) stabilize(a normArgs) (int32, string, string) {
	upCutoff, downCutoff := a.now.Add(-a.upWindow), a.now.Add(-a.downWindow)
	up, down := a.desired, a.desired
	old := -1
	for i, r := range h.recommendations {
		if r.at.After(upCutoff) {
			up = min(up, r.replicas)
		}
		if r.at.After(downCutoff) {
			down = max(down, r.replicas)
		}
		if r.at.Before(upCutoff) && r.at.Before(downCutoff) {
			old = i
		}
	}
	rec := a.current
	rec = max(rec, up)
	rec = min(rec, down)
	if old >= 0 {
		h.recommendations[old] = recommendation{a.desired, a.now}
	} else {
		h.recommendations = append(h.recommendations, recommendation{a.desired, a.now})
	}
	if a.desired >= a.current {
		return rec, "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"
	}
	return rec, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"
}

// limitRate bounds desired by the scaling policies and by min and max.
func (h *history) limitRate(a normArgs) (int32, string, string) {
	switch {
	case a.desired > a.current:
		limit := scaleUpLimit(a.current, h.scaleUps, h.scaleDowns, a.up, a.now)
		limit = max(limit, a.current) // no further scale-up until older events expire
		allowed, reason, msg := a.max, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
		if allowed > limit {
			allowed, reason, msg = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
		}
		if a.desired > allowed {
			return allowed, reason, msg
		}
	case a.desired < a.current:
		limit := scaleDownLimit(a.current, h.scaleUps, h.scaleDowns, a.down, a.now)
		limit = min(limit, a.current)
		allowed, reason, msg := a.min, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
		if allowed < limit {
			allowed, reason, msg = limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
		}
		if a.desired < allowed {
			return allowed, reason, msg
		}
	}
	return a.desired, "DesiredWithinRange", "the desired count is within the acceptable range"
}

// changeInPeriod sums the changes of events newer than now - period.
func changeInPeriod(periodSeconds int32, events []scaleEvent, now time.Time) int32 {
	cutoff := now.Add(-time.Duration(periodSeconds) * time.Second)
	var n int32
	for _, e := range events {
		if e.at.After(cutoff) {
			n += e.change
		}
	}
	return n
}

// scaleUpLimit is the most replicas the policies allow now: each policy
// allows its value (pods, or percent of the replicas at the start of its
// period) more than there were at the start of its period; selectPolicy
// Max takes the most permissive, Min the least, Disabled allows nothing.
func scaleUpLimit(current int32, ups, downs []scaleEvent, r *manifests.HPAScalingRules, now time.Time) int32 {
	if r == nil {
		r = manifests.DefaultHPAScaleUpRules()
	}
	return scaleLimit(current, ups, downs, r, now, true)
}

// scaleDownLimit is the fewest replicas the policies allow now.
func scaleDownLimit(current int32, ups, downs []scaleEvent, r *manifests.HPAScalingRules, now time.Time) int32 {
	if r == nil {
		r = manifests.DefaultHPAScaleDownRules()
	}
	return scaleLimit(current, ups, downs, r, now, false)
}

// scaleLimit is scaleUpLimit (up) or scaleDownLimit: selectPolicy Max
// takes the largest change (the most replicas up, the fewest down).
func scaleLimit(current int32, ups, downs []scaleEvent, r *manifests.HPAScalingRules, now time.Time, up bool) int32 {
	sel := manifests.MaxChangePolicySelect
	if r.SelectPolicy != nil {
		sel = *r.SelectPolicy
	}
	if sel == manifests.DisabledPolicySelect {
		return current
	}
	result := int32(math.MinInt32)
	pick := func(a, b int32) int32 { return max(a, b) }
	if (sel == manifests.MinChangePolicySelect) == up {
		result = math.MaxInt32
		pick = func(a, b int32) int32 { return min(a, b) }
	}
	for _, p := range r.Policies {
		start := current - changeInPeriod(p.PeriodSeconds, ups, now) + changeInPeriod(p.PeriodSeconds, downs, now)
		var proposed int32
		switch {
		case p.Type == manifests.PodsScalingPolicy && up:
			proposed = start + p.Value
		case p.Type == manifests.PodsScalingPolicy:
			proposed = start - p.Value
		case p.Type == manifests.PercentScalingPolicy && up:
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		case p.Type == manifests.PercentScalingPolicy:
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		}
		result = pick(result, proposed)
	}
	return result
}

// longestPeriod is the longest policy period of r.
func longestPeriod(r *manifests.HPAScalingRules) time.Duration {
	var p int32
	if r != nil {
		for _, pol := range r.Policies {
			p = max(p, pol.PeriodSeconds)
		}
	}
	return time.Duration(p) * time.Second
}

// recordScale remembers a rescale from prev to cur, dropping the events
// older than the longest policy period of that direction.
func (h *history) recordScale(b *manifests.HorizontalPodAutoscalerBehavior, prev, cur int32, now time.Time) {
	var up, down *manifests.HPAScalingRules
	if b != nil {
		up, down = b.ScaleUp, b.ScaleDown
	}
	keep := func(events []scaleEvent, period time.Duration) []scaleEvent {
		out := events[:0]
		for _, e := range events {
			if e.at.After(now.Add(-period)) {
				out = append(out, e)
			}
		}
		return out
	}
	switch {
	case cur > prev:
		h.scaleUps = append(keep(h.scaleUps, longestPeriod(up)), scaleEvent{cur - prev, now})
	case cur < prev:
		h.scaleDowns = append(keep(h.scaleDowns, longestPeriod(down)), scaleEvent{prev - cur, now})
	}
}
