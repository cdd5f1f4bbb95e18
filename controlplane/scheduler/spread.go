package scheduler

import (
	"math"

	"github.com/edgeorch/edgeorch/manifests"
)

// Topology spread reasons, as the Kubernetes scheduler words them.
const (
	ReasonTopologySpread             = "node(s) didn't match pod topology spread constraints"
	ReasonTopologySpreadMissingLabel = "node(s) didn't match pod topology spread constraints (missing required label)"
)

// Labels of the default spreading (Kubernetes' system default constraints:
// by hostname, and by zone when nodes carry the zone label).
const (
	LabelHostname = "kubernetes.io/hostname"
	LabelZone     = "topology.kubernetes.io/zone"
)

// constraint is one topology spread constraint with the number of
// matching pods in each of its domains.
type constraint struct {
	key     string
	maxSkew int
	sel     manifests.Selector
	self    int            // 1 when the pod itself matches the selector
	counts  map[string]int // domain (label value) -> matching pods
	minDom  int            // minDomains (1 when unset)
	weight  float64        // soft constraints: log(domains+2), as Kubernetes
	hard    bool
}

// minMatch is the smallest count over the domains (0 when there are
// fewer domains than minDomains).
func (c *constraint) minMatch() int {
	if len(c.counts) < c.minDom {
		return 0
	}
	first := true
	m := 0
	for _, n := range c.counts {
		if first || n < m {
			m, first = n, false
		}
	}
	return m
}

// spreadState holds the pod's constraints, counted over the nodes its
// node selector and required affinity allow (Kubernetes'
// nodeAffinityPolicy Honor, nodeTaintsPolicy Ignore).
type spreadState struct {
	hard, soft []*constraint
	hardMin    []int
}

func newSpreadState(pod *manifests.Pod, infos []*nodeInfo) *spreadState {
	if len(pod.Spec.TopologySpreadConstraints) == 0 {
		return nil
	}
	s := &spreadState{}
	var all []*constraint
	for _, tc := range pod.Spec.TopologySpreadConstraints {
		sel, err := manifests.LabelSelectorAsSelector(tc.LabelSelector)
		if err != nil || tc.LabelSelector == nil {
			sel = matchNothing()
		}
		c := &constraint{key: tc.TopologyKey, maxSkew: int(tc.MaxSkew), sel: sel, counts: map[string]int{}, minDom: 1, hard: tc.WhenUnsatisfiable != manifests.ScheduleAnyway}
		if tc.MinDomains != nil && *tc.MinDomains > 0 {
			c.minDom = int(*tc.MinDomains)
		}
		if tc.LabelSelector != nil && sel.Matches(pod.Labels) {
			c.self = 1
		}
		if c.hard {
			s.hard = append(s.hard, c)
		} else {
			s.soft = append(s.soft, c)
		}
		all = append(all, c)
	}
	for _, ni := range infos {
		n := ni.node
		if !matchesNodeSelector(pod, n.Labels) {
			continue
		}
		for _, c := range all {
			dom, ok := n.Labels[c.key]
			if !ok {
				continue
			}
			cnt := c.counts[dom]
			for _, p := range ni.counted().pods {
				if countable(pod, p) && c.sel.Matches(p.Labels) {
					cnt++
				}
			}
			c.counts[dom] = cnt
		}
	}
	for _, c := range s.hard {
		s.hardMin = append(s.hardMin, c.minMatch())
	}
	for _, c := range s.soft {
		c.weight = math.Log(float64(len(c.counts) + 2))
	}
	return s
}

// countable reports whether p counts for pod's spreading: same namespace,
// not ended, not being deleted, not pod itself.
func countable(pod, p *manifests.Pod) bool {
	if p.Namespace != pod.Namespace || (p.Name == pod.Name) || p.DeletionTimestamp != nil {
		return false
	}
	return p.Status.Phase != manifests.PodSucceeded && p.Status.Phase != manifests.PodFailed
}

func matchNothing() manifests.Selector {
	s, _ := manifests.LabelSelectorAsSelector(nil)
	return s
}

// filter returns why node breaks a DoNotSchedule constraint, or "".
func (s *spreadState) filter(node *manifests.Node) string {
	if s == nil {
		return ""
	}
	for i, c := range s.hard {
		dom, ok := node.Labels[c.key]
		if !ok {
			return ReasonTopologySpreadMissingLabel
		}
		if c.counts[dom]+c.self-s.hardMin[i] > c.maxSkew {
			return ReasonTopologySpread
		}
	}
	return ""
}

// rawScore is the weighted count of matching pods in node's domains over
// the ScheduleAnyway constraints (lower is better); ok is false when node
// lacks one of their labels.
func (s *spreadState) rawScore(node *manifests.Node) (score float64, ok bool) {
	for _, c := range s.soft {
		dom, has := node.Labels[c.key]
		if !has {
			return 0, false
		}
		score += float64(c.counts[dom]+c.self) * c.weight
	}
	return score, true
}

// hasSoft reports whether the pod has ScheduleAnyway constraints to score.
func (s *spreadState) hasSoft() bool { return s != nil && len(s.soft) > 0 }

// explicit reports whether the pod has constraints of its own, which
// replace the default spreading.
func (s *spreadState) explicit() bool { return s != nil }
