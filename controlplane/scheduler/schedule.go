// Package scheduler places pods on nodes: a pure placement function
// (Schedule: filter, then score) and a controller that binds unscheduled
// pods with a compare-and-swap of spec.nodeName.
package scheduler

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// Reasons a node is filtered out, worded as the Kubernetes scheduler words them.
const (
	ReasonNotReady          = "node(s) were not ready"
	ReasonNodeUnschedulable = "node(s) were unschedulable"
	ReasonAffinity          = "node(s) didn't match Pod's node affinity/selector"
	ReasonTooManyPods       = "Too many pods"
)

// TaintUnschedulable is the taint kube-style tolerations use to ignore
// spec.unschedulable.
const TaintUnschedulable = "node.kubernetes.io/unschedulable"

// FitError says why no node fits a pod: for each reason, on how many nodes.
type FitError struct {
	NumNodes int
	Reasons  map[string]int
}

// Error renders the Kubernetes scheduler's message, e.g.
// "0/5 nodes are available: 3 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector."
// Reasons are ordered by count (highest first), then alphabetically.
func (e *FitError) Error() string {
	type rc struct {
		reason string
		n      int
	}
	var rs []rc
	for r, n := range e.Reasons {
		rs = append(rs, rc{r, n})
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].n != rs[j].n {
			return rs[i].n > rs[j].n
		}
		return rs[i].reason < rs[j].reason
	})
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%d %s", r.n, r.reason)
	}
	msg := fmt.Sprintf("0/%d nodes are available", e.NumNodes)
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, ", ")
	}
	return msg + "."
}

// Schedule picks the node for pod among nodes. podsOnNodes lists the pods
// already bound to each node (by node name); pods that have ended
// (Succeeded, Failed) and pod itself are ignored. It returns the chosen
// node's name, or a FitError when no node passes the filters. Schedule
// does not modify its arguments and is deterministic: equal scores are
// broken by node name. Like the Kubernetes scheduler, among more than 100
// nodes it stops filtering once it has found enough feasible nodes
// (numFeasibleNodesToFind) and scores those.
func Schedule(pod *manifests.Pod, nodes []*manifests.Node, podsOnNodes map[string][]*manifests.Pod) (string, *FitError) {
	infos := make([]*nodeInfo, len(nodes))
	for i, n := range nodes {
		// The pods are counted only if a decision reads them (the node
		// passed the cheaper filters, or spreading counts its domain).
		ni := &nodeInfo{uncounted: podsOnNodes[n.Name], self: pod}
		ni.setNode(n)
		infos[i] = ni
	}
	name, fe, _ := schedule(pod, infos, 0)
	return name, fe
}

// Feasible nodes to find before scoring, as the Kubernetes scheduler's
// adaptive percentageOfNodesToScore: every node up to 100, then a share
// falling from 50% to 5% of them, never fewer than 100.
const (
	minFeasibleNodesToFind           = 100
	minFeasibleNodesPercentageToFind = 5
)

func numFeasibleNodesToFind(n int) int {
	if n < minFeasibleNodesToFind {
		return n
	}
	pct := max(50-n/125, minFeasibleNodesPercentageToFind)
	return max(n*pct/100, minFeasibleNodesToFind)
}

// schedule is Schedule over prepared nodes, filtering from infos[start]
// on (wrapping around). It also returns where the next decision should
// start, so that successive decisions look at every node in turn.
func schedule(pod *manifests.Pod, infos []*nodeInfo, start int) (string, *FitError, int) {
	n := len(infos)
	if n == 0 {
		return "", &FitError{Reasons: map[string]int{}}, 0
	}
	start %= n
	req := podRequests(pod)
	spread := newSpreadState(pod, infos)
	want := numFeasibleNodesToFind(n)
	selKey := selectorKey(pod)
	var fe *FitError
	feasible := make([]candidate, 0, min(want, 128))
	examined := 0
	for ; examined < n && len(feasible) < want; examined++ {
		ni := infos[(start+examined)%n]
		if reasons := filter(pod, req, ni, spread, selKey); len(reasons) > 0 {
			if fe == nil {
				fe = &FitError{NumNodes: n, Reasons: map[string]int{}}
			}
			for _, r := range reasons {
				fe.Reasons[r]++
			}
			continue
		}
		feasible = append(feasible, candidate{info: ni})
	}
	if len(feasible) == 0 {
		return "", fe, start
	}
	return pickBest(pod, req, feasible, spread), nil, (start + examined) % n
}

// nodeInfo is a node with the active pods bound to it, what they request
// and how many each controller owns: what a decision reads of a node,
// kept up to date by the controller rather than recomputed per pod.
type nodeInfo struct {
	node  *manifests.Node // nil: pods are bound to a node not (or no longer) cached
	ready bool            // IsNodeReady(node), read by every decision
	// handlers are the node's runtime handler names (node.Status is far
	// from the node's other fields a decision reads).
	handlers []string
	alloc    resources
	pods     []*manifests.Pod
	used     resources
	owners   map[string]int // pods per controller UID
	// groups counts the pods by namespace and label set: the default
	// spreading of a pod without a controller reads one entry per
	// distinct set (a few) rather than every pod of the node.
	groups map[string]*labelGroup
	// Memos of the last answers, for the run of like pods a burst brings
	// (a ReplicaSet's, a batch of bare pods): how many pods carry the
	// label set simKey names (cleared when a pod comes or goes), and
	// whether the node selector selKey names matches (cleared when the
	// node changes).
	simKey   string
	simCount int
	selKey   string
	selOK    bool
	// uncounted are pods given to Schedule, not yet in pods (see counted);
	// self is the pod being placed, which they may include.
	uncounted []*manifests.Pod
	self      *manifests.Pod
}

// counted returns ni once the pods given to Schedule are in pods, used
// and owners (ended ones and the pod being placed left out).
func (ni *nodeInfo) counted() *nodeInfo {
	if ni.uncounted != nil {
		ps := ni.uncounted
		ni.uncounted = nil
		for _, p := range activePods(ni.self, ps) {
			ni.add(p)
		}
	}
	return ni
}

func (ni *nodeInfo) setNode(n *manifests.Node) {
	ni.node = n
	ni.selKey = ""
	ni.ready = n != nil && IsNodeReady(n)
	ni.handlers = ni.handlers[:0]
	if n != nil {
		for _, h := range n.Status.RuntimeHandlers {
			ni.handlers = append(ni.handlers, h.Name)
		}
	}
	if n != nil {
		ni.alloc = allocatable(n)
	}
}

func (ni *nodeInfo) add(p *manifests.Pod) {
	ni.pods = append(ni.pods, p)
	ni.simKey = ""
	r := podRequests(p)
	ni.used.milliCPU += r.milliCPU
	ni.used.memory += r.memory
	ni.used.pods += r.pods
	if uid := controllerUID(p); uid != "" {
		if ni.owners == nil {
			ni.owners = map[string]int{}
		}
		ni.owners[uid]++
	}
	if len(p.Labels) > 0 {
		key := groupKey(p)
		g := ni.groups[key]
		if g == nil {
			if ni.groups == nil {
				ni.groups = map[string]*labelGroup{}
			}
			g = &labelGroup{namespace: p.Namespace, labels: p.Labels}
			ni.groups[key] = g
		}
		g.n++
	}
}

// labelGroup is the number of a node's pods in one namespace that carry
// exactly one set of labels.
type labelGroup struct {
	namespace string
	labels    map[string]string // one of the pods' (never changed: cached objects are read-only)
	n         int
}

// groupKey names p's namespace and label set: the same for pods whose
// namespaces and labels are equal.
func groupKey(p *manifests.Pod) string { return mapKey(p.Namespace, p.Labels) }

// mapKey names prefix and the keys and values of m: equal for equal maps.
func mapKey(prefix string, m map[string]string) string {
	keys := make([]string, 0, len(m))
	size := len(prefix) + 1
	for k, v := range m {
		keys = append(keys, k)
		size += len(k) + len(v) + 2
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(size)
	b.WriteString(prefix)
	b.WriteByte(0)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	return b.String()
}

// selectorKey names pod's node selector for the nodes' memo (selKey);
// "" when there is nothing to memoise: no selector, or required node
// affinity, which is matched afresh.
func selectorKey(pod *manifests.Pod) string {
	if len(pod.Spec.NodeSelector) == 0 {
		return ""
	}
	if aff := pod.Spec.Affinity; aff != nil && aff.NodeAffinity != nil && aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		return ""
	}
	return mapKey("", pod.Spec.NodeSelector)
}

// matchesSelector is matchesNodeSelector(pod, ni.node.Labels), memoised
// under key (selectorKey(pod)).
func (ni *nodeInfo) matchesSelector(pod *manifests.Pod, key string) bool {
	if key == "" {
		return matchesNodeSelector(pod, ni.node.Labels)
	}
	if ni.selKey != key {
		ni.selKey, ni.selOK = key, matchesNodeSelector(pod, ni.node.Labels)
	}
	return ni.selOK
}

// remove drops the pod namespace/name and reports whether it was there.
func (ni *nodeInfo) remove(namespace, name string) bool {
	for i, p := range ni.pods {
		if p.Namespace != namespace || p.Name != name {
			continue
		}
		last := len(ni.pods) - 1
		ni.pods[i] = ni.pods[last]
		ni.pods[last] = nil
		ni.pods = ni.pods[:last]
		ni.simKey = ""
		r := podRequests(p)
		ni.used.milliCPU -= r.milliCPU
		ni.used.memory -= r.memory
		ni.used.pods -= r.pods
		if uid := controllerUID(p); uid != "" {
			if ni.owners[uid]--; ni.owners[uid] <= 0 {
				delete(ni.owners, uid)
			}
		}
		if len(p.Labels) > 0 {
			key := groupKey(p)
			if g := ni.groups[key]; g != nil {
				if g.n--; g.n <= 0 {
					delete(ni.groups, key)
				}
			}
		}
		return true
	}
	return false
}

type candidate struct {
	info *nodeInfo
	// scores
	least, affinity, spread, taints float64
}

func activePods(pod *manifests.Pod, pods []*manifests.Pod) []*manifests.Pod {
	var out []*manifests.Pod
	for _, p := range pods {
		if p.Status.Phase == manifests.PodSucceeded || p.Status.Phase == manifests.PodFailed {
			continue
		}
		if p.Namespace == pod.Namespace && p.Name == pod.Name {
			continue
		}
		out = append(out, p)
	}
	return out
}

// filter returns why node cannot run pod; nil when it can. Like the
// Kubernetes scheduler it runs the checks in its plugins' order
// (NodeUnschedulable, TaintToleration, NodeAffinity, NodeResourcesFit,
// PodTopologySpread) and stops at the first failing one (the resource
// check may report several resources at once). What the node offers and
// what its pods use are read from ni.
func filter(pod *manifests.Pod, req resources, ni *nodeInfo, spread *spreadState, selKey string) (reasons []string) {
	node := ni.node
	if node.Spec.Unschedulable && !tolerates(pod.Spec.Tolerations, manifests.Taint{Key: TaintUnschedulable, Effect: "NoSchedule"}) {
		return []string{ReasonNodeUnschedulable}
	}
	if t, ok := untoleratedTaint(pod, node); ok {
		return []string{fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value)}
	}
	// The node lifecycle controller taints a node that is not ready; a
	// node whose Ready condition is not True without the taint (yet) is
	// skipped all the same.
	if !ni.ready {
		return []string{ReasonNotReady}
	}
	if h := RuntimeHandler(pod); !slices.Contains(ni.handlers, h) {
		return []string{fmt.Sprintf("node(s) didn't have runtime handler %s", h)}
	}
	if !ni.matchesSelector(pod, selKey) {
		return []string{ReasonAffinity}
	}
	if r := fitResources(req, ni.alloc, ni.counted().used); len(r) > 0 {
		return r
	}
	if r := spread.filter(node); r != "" {
		return []string{r}
	}
	return nil
}

// untoleratedTaint returns the first NoSchedule or NoExecute taint of
// node that pod does not tolerate.
func untoleratedTaint(pod *manifests.Pod, node *manifests.Node) (manifests.Taint, bool) {
	for _, t := range node.Spec.Taints {
		if t.Effect != TaintEffectNoSchedule && t.Effect != TaintEffectNoExecute {
			continue
		}
		if !tolerates(pod.Spec.Tolerations, t) {
			return t, true
		}
	}
	return manifests.Taint{}, false
}

// Taint effects.
const (
	TaintEffectNoSchedule       = "NoSchedule"
	TaintEffectPreferNoSchedule = "PreferNoSchedule"
	TaintEffectNoExecute        = "NoExecute"
)

// Tolerates reports whether one of tols tolerates taint (operator Exists
// with an empty key tolerates everything; an empty effect every effect).
func Tolerates(tols []manifests.Toleration, taint manifests.Taint) bool {
	return tolerates(tols, taint)
}

// FindToleration returns the toleration of tols that tolerates taint,
// preferring one without tolerationSeconds (tolerates forever), else the
// longest.
func FindToleration(tols []manifests.Toleration, taint manifests.Taint) (manifests.Toleration, bool) {
	var best manifests.Toleration
	found := false
	for _, t := range tols {
		if !tolerates([]manifests.Toleration{t}, taint) {
			continue
		}
		if t.TolerationSeconds == nil {
			return t, true
		}
		if !found || *t.TolerationSeconds > *best.TolerationSeconds {
			best, found = t, true
		}
	}
	return best, found
}

// IsNodeReady reports whether node's Ready condition is True.
func IsNodeReady(node *manifests.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == manifests.NodeReady {
			return c.Status == manifests.ConditionTrue
		}
	}
	return false
}

// RuntimeHandler is the node runtime handler pod needs: its
// runtimeClassName, or "oci" when it has none.
func RuntimeHandler(pod *manifests.Pod) string {
	if rc := pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
		return *rc
	}
	return manifests.RuntimeOCI
}

func matchesNodeSelector(pod *manifests.Pod, labels map[string]string) bool {
	for k, v := range pod.Spec.NodeSelector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	aff := pod.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	// Terms are ORed; no term means no node matches.
	for _, term := range aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if term.Matches(labels) {
			return true
		}
	}
	return false
}

// tolerates reports whether one of tols tolerates taint.
func tolerates(tols []manifests.Toleration, taint manifests.Taint) bool {
	for _, t := range tols {
		if t.Effect != "" && t.Effect != taint.Effect {
			continue
		}
		switch t.Operator {
		case "Exists":
			if t.Key == "" || t.Key == taint.Key {
				return true
			}
		case "", "Equal":
			if t.Key == taint.Key && t.Value == taint.Value {
				return true
			}
		}
	}
	return false
}

// Score weights, as the Kubernetes scheduler's default plugin weights.
const (
	weightLeast    = 1
	weightAffinity = 2
	weightSpread   = 2
	weightTaints   = 3
)

// pickBest scores the feasible nodes and returns the best one's name.
// Scores, each 0..100, weighted as Kubernetes weighs its plugins: least
// requested (cpu and memory), preferred node affinity (normalised to the
// best node), untolerated PreferNoSchedule taints (fewest best), and
// spread: the pod's ScheduleAnyway topology spread constraints, or without
// constraints of its own the default spreading (fewest pods of the same
// owner, or with the same labels when the pod has no controller, per node
// and, weighing twice as much, per zone).
func pickBest(pod *manifests.Pod, req resources, cs []candidate, spread *spreadState) string {
	var maxAff, maxSame, maxTaints float64
	same := make([]float64, len(cs))
	similar := newSimilarPods(pod)
	zoneSame := map[string]float64{}
	zoned := false
	for i := range cs {
		c := &cs[i]
		node := c.info.node
		c.least = leastRequested(req, c.info.alloc, c.info.used)
		c.affinity = preferredAffinity(pod, node.Labels)
		maxAff = max(maxAff, c.affinity)
		c.taints = float64(countPreferNoSchedule(pod, node))
		maxTaints = max(maxTaints, c.taints)
		if !spread.explicit() {
			same[i] = float64(similar.count(c.info))
			maxSame = max(maxSame, same[i])
			if z, ok := node.Labels[LabelZone]; ok {
				zoned = true
				zoneSame[z] += same[i]
			}
		}
	}
	var maxZone float64
	for _, n := range zoneSame {
		maxZone = max(maxZone, n)
	}
	var softRaw []float64
	var softOK []bool
	var softMin, softMax float64
	if spread.hasSoft() {
		softRaw, softOK = make([]float64, len(cs)), make([]bool, len(cs))
		first := true
		for i := range cs {
			softRaw[i], softOK[i] = spread.rawScore(cs[i].info.node)
			if !softOK[i] {
				continue
			}
			if first || softRaw[i] < softMin {
				softMin = softRaw[i]
			}
			if first || softRaw[i] > softMax {
				softMax = softRaw[i]
			}
			first = false
		}
	}
	best := -1
	var bestScore float64
	for i := range cs {
		c := &cs[i]
		if maxAff > 0 {
			c.affinity = c.affinity * 100 / maxAff
		}
		if maxTaints > 0 {
			c.taints = (maxTaints - c.taints) * 100 / maxTaints
		} else {
			c.taints = 100
		}
		c.spread = 100
		switch {
		case spread.hasSoft():
			switch {
			case !softOK[i]:
				c.spread = 0
			case softMax > softMin:
				c.spread = (softMax - softRaw[i]) * 100 / (softMax - softMin)
			}
		case spread.explicit():
		default:
			if maxSame > 0 {
				c.spread = (maxSame - same[i]) * 100 / maxSame
			}
			if zoned {
				zs := 0.0 // a node without the zone label is in no zone
				if z, ok := c.info.node.Labels[LabelZone]; ok {
					zs = 100
					if maxZone > 0 {
						zs = (maxZone - zoneSame[z]) * 100 / maxZone
					}
				}
				c.spread = (c.spread + 2*zs) / 3
			}
		}
		score := weightLeast*c.least + weightAffinity*c.affinity + weightSpread*c.spread + weightTaints*c.taints
		if best < 0 || score > bestScore || (score == bestScore && c.info.node.Name < cs[best].info.node.Name) {
			best, bestScore = i, score
		}
	}
	return cs[best].info.node.Name
}

// countPreferNoSchedule counts node's PreferNoSchedule taints pod does not
// tolerate.
func countPreferNoSchedule(pod *manifests.Pod, node *manifests.Node) int {
	n := 0
	for _, t := range node.Spec.Taints {
		if t.Effect == TaintEffectPreferNoSchedule && !tolerates(pod.Spec.Tolerations, t) {
			n++
		}
	}
	return n
}

func preferredAffinity(pod *manifests.Pod, labels map[string]string) float64 {
	aff := pod.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil {
		return 0
	}
	var sum float64
	for _, p := range aff.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		if p.Preference.Matches(labels) {
			sum += float64(p.Weight)
		}
	}
	return sum
}

// countSimilar counts the pods of pod's controller (or, without one, the
// pods carrying all of pod's labels) among the pods of ni.
func countSimilar(pod *manifests.Pod, ni *nodeInfo) int {
	return newSimilarPods(pod).count(ni)
}

// similarPods says which pods are like a pod being placed: those of its
// controller or, without one, those of its namespace carrying all its
// labels. Made once per decision, it counts them on each candidate node.
type similarPods struct {
	owner, namespace string
	labels           map[string]string
	key              string // groupKey of the pod without a controller, for the nodes' memo
}

func newSimilarPods(pod *manifests.Pod) similarPods {
	s := similarPods{owner: controllerUID(pod), namespace: pod.Namespace, labels: pod.Labels}
	if s.owner == "" && len(s.labels) > 0 {
		s.key = groupKey(pod)
	}
	return s
}

func (s similarPods) count(ni *nodeInfo) int {
	if s.owner != "" {
		return ni.owners[s.owner] // UIDs are unique across namespaces
	}
	if len(s.labels) == 0 {
		return 0
	}
	if ni.simKey == s.key {
		return ni.simCount
	}
	n := 0
	for _, g := range ni.groups {
		if g.namespace == s.namespace && hasLabels(g.labels, s.labels) {
			n += g.n
		}
	}
	ni.simKey, ni.simCount = s.key, n
	return n
}

// hasLabels reports whether labels holds every key and value of want.
func hasLabels(labels, want map[string]string) bool {
	if len(labels) < len(want) {
		return false
	}
	for k, v := range want {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func controllerUID(pod *manifests.Pod) string {
	for _, o := range pod.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return o.UID
		}
	}
	return ""
}

// MatchesNodeSelector reports whether node satisfies pod's nodeSelector
// and required node affinity (what a DaemonSet checks before it places a
// pod itself).
func MatchesNodeSelector(pod *manifests.Pod, node *manifests.Node) bool {
	return matchesNodeSelector(pod, node.Labels)
}
