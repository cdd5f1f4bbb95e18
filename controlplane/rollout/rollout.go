// Package rollout is the fleet Rollout controller: it moves a DaemonSet or
// a Deployment to a new pod template wave by wave.
//
// DaemonSet targets: at the start it records the target's
// template and update strategy, sets the new template with strategy
// OnDelete, then deletes the old pods of the current wave's online nodes
// (the DaemonSet controller recreates them from the new template). A wave
// passes once its online nodes' new pods are Ready for the health gate's
// readySeconds; offline nodes are waited for offlinePolicy.waitSeconds,
// then skipped, and converge when they return (the target already holds
// the final template). Failed nodes past the failure policy's threshold
// pause the rollout or roll it back (old template restored, new pods
// deleted).
//
// Deployment targets (deployment.go): waves are replica steps. The
// Deployment gets the new template with a RollingUpdate strategy and the
// rollout.edge.io/partition annotation, which the Deployment controller
// honours (the new ReplicaSet never exceeds it, the old ones keep the
// rest); the controller raises it wave by wave behind the same gate.
//
// spec.paused pauses a rollout; clearing it resumes. A rollout paused by
// its failure policy resumes when the rollout.edge.io/resumed-at
// annotation changes, accepting the failures seen so far. Only one
// unfinished Rollout may target a workload: the API refuses a second one,
// and of two that slipped in at once the later one fails here.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/daemonset"
	"github.com/edgeorch/edgeorch/controlplane/scheduler"
	"github.com/edgeorch/edgeorch/manifests"
)

// Name is the controller's name, the source of its events.
const Name = "rollout-controller"

// Event reasons.
const (
	EventWaveStarted   = "WaveStarted"
	EventWaveCompleted = "WaveCompleted"
	EventCompleted     = "RolloutCompleted"
	EventPaused        = "RolloutPaused"
	EventRolledBack    = "RolloutRolledBack"
	EventFailed        = "RolloutFailed"
	EventResumed       = "RolloutResumed"
)

// resync is how often a rollout in progress is looked at again, for its
// time-based gates (readySeconds, waitSeconds, timeouts).
const resync = 500 * time.Millisecond

// Store is what the controller needs of the object store.
type Store interface {
	Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Delete(ctx context.Context, resource, namespace, name string, rev uint64) (manifests.Object, error)
}

// Lister is a read-only cache of one resource.
type Lister interface {
	Get(key string) (manifests.Object, bool)
	List(sel manifests.Selector) []manifests.Object
}

// Recorder records events.
type Recorder interface {
	Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error
}

// Controller reconciles Rollouts.
type Controller struct {
	st                           Store
	rollouts, dsets, pods, nodes Lister
	deploys, rsets               Lister
	rec                          Recorder
	queue                        *controller.Queue
	now                          func() time.Time

	mu sync.Mutex
	// readySince is when this controller first saw each ready pod (by
	// rollout key, then pod uid): pods report readiness to the second,
	// which alone would let a crashing pod pass a short health gate.
	readySince map[string]map[string]time.Time
}

// Listers are the caches the controller reads.
type Listers struct {
	Rollouts, DaemonSets, Deployments, ReplicaSets, Pods, Nodes Lister
}

// New returns a controller over the given caches. Register
// RolloutChanged, DSChanged, DeploymentChanged, PodChanged and
// NodeChanged as their handlers.
func New(st Store, l Listers, rec Recorder) *Controller {
	return &Controller{
		st: st, rollouts: l.Rollouts, dsets: l.DaemonSets, pods: l.Pods, nodes: l.Nodes,
		deploys: l.Deployments, rsets: l.ReplicaSets, rec: rec,
		queue:      controller.NewQueue(50*time.Millisecond, 30*time.Second),
		now:        time.Now,
		readySince: map[string]map[string]time.Time{},
	}
}

// Informer is an informer the controller can be wired to.
type Informer interface {
	Lister
	AddHandler(h controller.Handler)
	WaitForSync(ctx context.Context) error
}

// Wire builds the controller over infs (by resource: rollouts, daemonsets,
// deployments, replicasets, pods, nodes), registers its handlers and
// returns its run function.
func Wire[I Informer](st Store, infs map[string]I, rec Recorder) func(context.Context) error {
	ro, ds, pods, nodes := infs["rollouts"], infs["daemonsets"], infs["pods"], infs["nodes"]
	deploys, rsets := infs["deployments"], infs["replicasets"]
	c := New(st, Listers{Rollouts: ro, DaemonSets: ds, Deployments: deploys, ReplicaSets: rsets, Pods: pods, Nodes: nodes}, rec)
	ro.AddHandler(c.RolloutChanged)
	ds.AddHandler(c.DSChanged)
	deploys.AddHandler(c.DeploymentChanged)
	pods.AddHandler(c.PodChanged)
	nodes.AddHandler(c.NodeChanged)
	return func(ctx context.Context) error {
		for _, inf := range []I{ro, ds, deploys, rsets, pods, nodes} {
			if inf.WaitForSync(ctx) != nil {
				return nil // ctx done
			}
		}
		c.Run(ctx, 2)
		return nil
	}
}

// SetClock replaces the clock (tests).
func (c *Controller) SetClock(now func() time.Time) { c.now = now }

// Run syncs with workers workers until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) {
	controller.RunWorkers(ctx, c.queue, workers, c.Sync)
}

// RolloutChanged queues a changed Rollout.
func (c *Controller) RolloutChanged(old, cur manifests.Object) {
	if cur == nil {
		cur = old
	}
	c.queue.Add(controller.Key(cur))
}

// DSChanged queues the Rollouts targeting a changed DaemonSet.
func (c *Controller) DSChanged(old, cur manifests.Object) {
	if cur == nil {
		cur = old
	}
	m := cur.GetObjectMeta()
	c.queueTargeting("DaemonSet", m.Namespace, m.Name)
}

// DeploymentChanged queues the Rollouts targeting a changed Deployment.
func (c *Controller) DeploymentChanged(old, cur manifests.Object) {
	if cur == nil {
		cur = old
	}
	m := cur.GetObjectMeta()
	c.queueTargeting("Deployment", m.Namespace, m.Name)
}

// PodChanged queues the Rollouts targeting the DaemonSet or Deployment of
// a changed pod.
func (c *Controller) PodChanged(old, cur manifests.Object) {
	for _, o := range []manifests.Object{old, cur} {
		if o == nil {
			continue
		}
		ns := o.GetObjectMeta().Namespace
		ref := manifests.GetControllerOf(o)
		switch {
		case ref == nil:
		case ref.Kind == "DaemonSet":
			c.queueTargeting("DaemonSet", ns, ref.Name)
		case ref.Kind == "ReplicaSet" && c.rsets != nil:
			if rs, ok := c.rsets.Get(ns + "/" + ref.Name); ok {
				if dref := manifests.GetControllerOf(rs); dref != nil && dref.Kind == "Deployment" {
					c.queueTargeting("Deployment", ns, dref.Name)
				}
			}
		}
	}
}

// NodeChanged queues every Rollout when a node's readiness or labels change.
func (c *Controller) NodeChanged(old, cur manifests.Object) {
	if old != nil && cur != nil {
		on, nn := old.(*manifests.Node), cur.(*manifests.Node)
		if scheduler.IsNodeReady(on) == scheduler.IsNodeReady(nn) && manifests.EqualJSON(on.Labels, nn.Labels) {
			return
		}
	}
	for _, o := range c.rollouts.List(manifests.Selector{}) {
		c.queue.Add(controller.Key(o))
	}
}

func (c *Controller) queueTargeting(kind, ns, name string) {
	for _, o := range c.rollouts.List(manifests.Selector{}) {
		r := o.(*manifests.Rollout)
		if r.Namespace == ns && r.Spec.TargetRef.Kind == kind && r.Spec.TargetRef.Name == name {
			c.queue.Add(controller.Key(r))
		}
	}
}

// Sync reconciles one Rollout.
func (c *Controller) Sync(ctx context.Context, key string) error {
	o, ok := c.rollouts.Get(key)
	if !ok {
		c.mu.Lock()
		delete(c.readySince, key)
		c.mu.Unlock()
		return nil
	}
	ro := manifests.DeepCopy(o).(*manifests.Rollout)
	if ro.DeletionTimestamp != nil || ro.Status.Phase == manifests.RolloutFailed {
		return nil
	}
	if manifests.RolloutUnfinished(ro) {
		other, err := c.earlierRollout(ctx, ro)
		if err != nil {
			return err
		}
		if other != nil {
			return c.fail(ctx, ro, manifests.RolloutTargetTaken(ro, other))
		}
	}
	switch ro.Spec.TargetRef.Kind {
	case "DaemonSet":
		return c.syncDaemonSet(ctx, o.(*manifests.Rollout), ro)
	case "Deployment":
		return c.syncDeployment(ctx, o.(*manifests.Rollout), ro)
	}
	return c.fail(ctx, ro, fmt.Sprintf("target kind %q is not supported", ro.Spec.TargetRef.Kind))
}

// earlier orders rollouts by creation, then name.
func earlier(a, b *manifests.Rollout) bool {
	if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
		return a.CreationTimestamp.Before(b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// earlierRollout returns the unfinished Rollout of ro's target created
// before ro, if any (confirmed in the store: the cache may be behind).
func (c *Controller) earlierRollout(ctx context.Context, ro *manifests.Rollout) (*manifests.Rollout, error) {
	for _, o := range c.rollouts.List(manifests.Selector{}) {
		r := o.(*manifests.Rollout)
		if r.Namespace != ro.Namespace || r.UID == ro.UID || r.Spec.TargetRef != ro.Spec.TargetRef || !manifests.RolloutUnfinished(r) || !earlier(r, ro) {
			continue
		}
		cur, err := c.st.Get(ctx, "rollouts", r.Namespace, r.Name)
		if client.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get rollout %s: %w", r.Name, err)
		}
		if r = cur.(*manifests.Rollout); manifests.RolloutUnfinished(r) && earlier(r, ro) {
			return r, nil
		}
	}
	return nil, nil
}

// syncDaemonSet reconciles a Rollout of a DaemonSet.
func (c *Controller) syncDaemonSet(ctx context.Context, cached, ro *manifests.Rollout) error {
	key := controller.Key(ro)
	dso, ok := c.dsets.Get(ro.Namespace + "/" + ro.Spec.TargetRef.Name)
	if !ok {
		if ro.Status.Revision == "" {
			return c.fail(ctx, ro, fmt.Sprintf("daemonset %q not found", ro.Spec.TargetRef.Name))
		}
		return nil
	}
	ds := dso.(*manifests.DaemonSet)
	if ro.Status.Revision == "" {
		return c.start(ctx, ro, ds)
	}
	if h := daemonset.TemplateHash(&ro.Spec.Template); h != ro.Status.Revision && ro.Status.Phase == manifests.RolloutProgressing {
		// The API keeps spec.template immutable; never chase a changed one.
		return c.fail(ctx, ro, fmt.Sprintf("spec.template changed during the rollout (revision %s, now %s)", ro.Status.Revision, h))
	}
	dsHash := daemonset.TemplateHash(&ds.Spec.Template)
	pods := c.podsByNode(ds)
	switch ro.Status.Phase {
	case manifests.RolloutRolledBack:
		return c.rollBack(ctx, ro, ds, dsHash, pods)
	case manifests.RolloutCompleted:
		return c.finish(ctx, ro, ds, dsHash, pods)
	case manifests.RolloutPaused:
		if c.resume(ctx, ro, func() [][]nodeState { s, _ := c.observe(ro, pods, false, true); return s }) {
			return c.updateStatus(ctx, cached, ro)
		}
		c.observe(ro, pods, false, false)
		return c.updateStatus(ctx, cached, ro)
	}
	if c.pauseByUser(ctx, ro) {
		c.observe(ro, pods, false, false)
		return c.updateStatus(ctx, cached, ro)
	}
	// Progressing: the target holds the new template with OnDelete.
	if dsHash != ro.Status.Revision || ds.Spec.UpdateStrategy.Type != manifests.OnDeleteDaemonSetStrategyType {
		cp := manifests.DeepCopy(ds).(*manifests.DaemonSet)
		cp.Spec.Template = ro.Spec.Template // ro is a private copy
		cp.Spec.UpdateStrategy = manifests.DaemonSetUpdateStrategy{Type: manifests.OnDeleteDaemonSetStrategyType}
		return c.updateTarget(ctx, cp)
	}
	if err := c.progress(ctx, ro, pods); err != nil {
		return err
	}
	if err := c.updateStatus(ctx, cached, ro); err != nil {
		return err
	}
	if ro.Status.Phase == manifests.RolloutProgressing {
		c.queue.AddAfter(key, resync)
	} else {
		c.queue.Add(key) // restore the target
	}
	return nil
}

// start plans the waves and records the target's template and strategy.
// The target itself is changed by the next sync, once this is stored.
func (c *Controller) start(ctx context.Context, ro *manifests.Rollout, ds *manifests.DaemonSet) error {
	orig := manifests.DeepCopy(ro).(*manifests.Rollout)
	plan, err := c.plan(ro, ds)
	if err != nil {
		return c.fail(ctx, ro, err.Error())
	}
	prevT := ds.Spec.Template
	prevS := ds.Spec.UpdateStrategy
	now := c.now().UTC()
	ro.Status = manifests.RolloutStatus{
		Phase:            manifests.RolloutProgressing,
		Revision:         daemonset.TemplateHash(&ro.Spec.Template),
		PreviousTemplate: &prevT,
		PreviousStrategy: &prevS,
		Waves:            plan,
	}
	if daemonset.TemplateHash(&ds.Spec.Template) == ro.Status.Revision {
		// Already the target's template: nothing to roll out.
		ro.Status.Phase = manifests.RolloutCompleted
		ro.Status.CurrentWave = int32(len(plan))
		ro.Status.Message = "the target already runs this template"
		return c.updateStatus(ctx, orig, ro)
	}
	ro.Status.Waves[0].StartedAt = now
	c.event(ctx, ro, manifests.EventNormal, EventWaveStarted, "Wave 1/%d started on %d nodes", len(plan), plan[0].Total)
	return c.updateStatus(ctx, orig, ro)
}

// plan splits the nodes running the target's pods into the waves.
func (c *Controller) plan(ro *manifests.Rollout, ds *manifests.DaemonSet) ([]manifests.RolloutWaveStatus, error) {
	var remaining []string
	for node := range c.podsByNode(ds) {
		remaining = append(remaining, node)
	}
	sort.Strings(remaining)
	total := len(remaining)
	waves := ro.Spec.Waves
	if len(waves) == 0 {
		waves = []manifests.RolloutWave{{}}
	}
	out := make([]manifests.RolloutWaveStatus, len(waves))
	for i, w := range waves {
		var sel manifests.Selector
		if w.Selector != nil {
			s, err := manifests.LabelSelectorAsSelector(w.Selector)
			if err != nil {
				return nil, fmt.Errorf("waves[%d].selector: %w", i, err)
			}
			sel = s
		}
		var cand, rest []string
		for _, n := range remaining {
			no, ok := c.nodes.Get(n)
			var labels map[string]string
			if ok {
				labels = no.GetObjectMeta().Labels
			}
			if w.Selector == nil || (ok && sel.Matches(labels)) {
				cand = append(cand, n)
			} else {
				rest = append(rest, n)
			}
		}
		take := len(cand)
		if w.Count != nil {
			n, err := manifests.ScaledValueFromIntOrPercent(w.Count, total, true)
			if err != nil {
				return nil, fmt.Errorf("waves[%d].count: %w", i, err)
			}
			take = min(max(n, 0), len(cand))
		}
		out[i].NodeNames = cand[:take]
		remaining = append(rest, cand[take:]...)
		sort.Strings(remaining)
	}
	last := &out[len(out)-1]
	last.NodeNames = append(last.NodeNames, remaining...)
	for i := range out {
		out[i].Total = int32(len(out[i].NodeNames))
	}
	return out, nil
}

// podsByNode is the target's live pods by node.
func (c *Controller) podsByNode(ds *manifests.DaemonSet) map[string][]*manifests.Pod {
	sel, err := manifests.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil
	}
	out := map[string][]*manifests.Pod{}
	for _, o := range c.pods.List(sel) {
		p := o.(*manifests.Pod)
		ref := manifests.GetControllerOf(p)
		if p.Namespace != ds.Namespace || ref == nil || ref.Kind != "DaemonSet" || ref.UID != ds.UID || p.DeletionTimestamp != nil || p.Spec.NodeName == "" {
			continue
		}
		out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p)
	}
	return out
}

func (c *Controller) nodeReady(name string) bool {
	o, ok := c.nodes.Get(name)
	return ok && scheduler.IsNodeReady(o.(*manifests.Node))
}

// crashing reports whether a pod failed or restarted a container.
func crashing(p *manifests.Pod) bool {
	if p.Status.Phase == manifests.PodFailed {
		return true
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.RestartCount > 0 || (cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff") {
			return true
		}
	}
	return false
}

// nodeState is one planned node as observed now.
type nodeState struct {
	offline, updated, ready, failed bool
	// offlineWaited: offline for waitSeconds already (Deployment replicas).
	offlineWaited bool
	old           []*manifests.Pod // old-revision pods on an online node
}

func (c *Controller) nodeState(ro *manifests.Rollout, node string, pods []*manifests.Pod, started, now time.Time, seen, next map[string]time.Time) nodeState {
	var s nodeState
	s.offline = !c.nodeReady(node)
	var cur *manifests.Pod
	for _, p := range pods {
		if p.Labels[daemonset.RevisionHashLabel] == ro.Status.Revision {
			cur = p
		} else {
			s.old = append(s.old, p)
		}
	}
	if s.offline {
		s.old = nil // never touched while offline
	}
	if cur != nil && len(s.old) == 0 {
		s.updated = true
		s.failed = crashing(cur)
		// An offline node's pod status is its last report: readiness
		// seen from there passes no health gate (its clock restarts when
		// the node is back), as for a Deployment's replicas.
		if !s.failed && !s.offline && manifests.IsPodReady(cur) {
			since, ok := seen[cur.UID]
			if !ok {
				since = now
			}
			next[cur.UID] = since
			gate := time.Duration(ro.Spec.HealthGate.ReadySeconds) * time.Second
			s.ready = manifests.IsPodAvailable(cur, ro.Spec.HealthGate.ReadySeconds, now) && now.Sub(since) >= gate
		}
	}
	if !s.ready && !s.offline && !started.IsZero() && now.Sub(started) >= ro.Spec.HealthGate.WaveTimeout() {
		s.failed = true
	}
	return s
}

// observe recounts every wave; with act it also returns the old pods of
// the online nodes of the waves started so far, to delete. The wave in
// progress times out only with timeouts (not while paused).
func (c *Controller) observe(ro *manifests.Rollout, pods map[string][]*manifests.Pod, act, timeouts bool) (states [][]nodeState, del []*manifests.Pod) {
	now := c.now()
	key := controller.Key(ro)
	c.mu.Lock()
	seen := c.readySince[key]
	c.mu.Unlock()
	next := map[string]time.Time{}
	defer func() {
		c.mu.Lock()
		c.readySince[key] = next
		c.mu.Unlock()
	}()
	states = make([][]nodeState, len(ro.Status.Waves))
	for i := range ro.Status.Waves {
		w := &ro.Status.Waves[i]
		w.Updated, w.Ready, w.Failed, w.Offline = 0, 0, 0, 0
		started := w.StartedAt
		if !w.CompletedAt.IsZero() || !timeouts {
			started = time.Time{} // timeouts only apply to the wave in progress
		}
		for _, n := range w.NodeNames {
			s := c.nodeState(ro, n, pods[n], started, now, seen, next)
			states[i] = append(states[i], s)
			if s.updated {
				w.Updated++
			}
			if s.ready {
				w.Ready++
			}
			if s.failed {
				w.Failed++
			}
			if s.offline {
				w.Offline++
			}
			if act && !w.StartedAt.IsZero() {
				del = append(del, s.old...)
			}
		}
	}
	return states, del
}

// progress advances a Progressing rollout of a DaemonSet.
func (c *Controller) progress(ctx context.Context, ro *manifests.Rollout, pods map[string][]*manifests.Pod) error {
	states, del := c.observe(ro, pods, true, true)
	if err := c.deletePods(ctx, del); err != nil {
		return err
	}
	c.advance(ctx, ro, states, "nodes")
	return nil
}

// failures counts the failed nodes (replicas) and all of them.
func failures(ro *manifests.Rollout) (failed, total int) {
	for i := range ro.Status.Waves {
		total += int(ro.Status.Waves[i].Total)
		failed += int(ro.Status.Waves[i].Failed)
	}
	return failed, total
}

// advance applies the failure policy to the observed states, then moves
// to the next wave once the current one passed. unit names what a wave
// counts (nodes, replicas).
func (c *Controller) advance(ctx context.Context, ro *manifests.Rollout, states [][]nodeState, unit string) {
	now := c.now().UTC()
	failed, total := failures(ro)
	if max := ro.Spec.FailurePolicy.MaxFailed(total); failed-int(ro.Status.AcceptedFailures) > max {
		msg := fmt.Sprintf("%d %s failed the health gate (at most %d tolerated)", failed, unit, max)
		if a := ro.Status.AcceptedFailures; a > 0 {
			msg = fmt.Sprintf("%d %s failed the health gate (%d accepted on resume, at most %d more tolerated)", failed, unit, a, max)
		}
		if ro.Spec.FailurePolicy.Action == manifests.RolloutActionRollback {
			ro.Status.Phase, ro.Status.Message = manifests.RolloutRolledBack, msg+": rolling back"
			c.event(ctx, ro, manifests.EventWarning, EventRolledBack, "%s", ro.Status.Message)
		} else {
			ro.Status.Phase, ro.Status.Message = manifests.RolloutPaused, msg+": paused; edgectl rollout resume accepts them"
			ro.Status.PauseReason = manifests.RolloutPausedByFailures
			// Only a later resume request resumes it.
			ro.Status.ObservedResumedAt = ro.Annotations[manifests.RolloutResumedAtAnnotation]
			c.event(ctx, ro, manifests.EventWarning, EventPaused, "%s", ro.Status.Message)
		}
		return
	}
	for int(ro.Status.CurrentWave) < len(ro.Status.Waves) {
		i := int(ro.Status.CurrentWave)
		w := &ro.Status.Waves[i]
		wait := time.Duration(ro.Spec.OfflinePolicy.WaitSeconds) * time.Second
		for _, s := range states[i] {
			if s.ready || s.failed || (s.offline && (s.offlineWaited || now.Sub(w.StartedAt) >= wait)) {
				continue
			}
			return // the wave is still in progress
		}
		w.CompletedAt = now
		c.event(ctx, ro, manifests.EventNormal, EventWaveCompleted, "Wave %d/%d completed: %d ready, %d failed, %d offline", i+1, len(ro.Status.Waves), w.Ready, w.Failed, w.Offline)
		ro.Status.CurrentWave++
		if int(ro.Status.CurrentWave) == len(ro.Status.Waves) {
			ro.Status.Phase, ro.Status.Message = manifests.RolloutCompleted, ""
			c.event(ctx, ro, manifests.EventNormal, EventCompleted, "Rollout completed")
			return
		}
		next := &ro.Status.Waves[i+1]
		next.StartedAt = now
		c.event(ctx, ro, manifests.EventNormal, EventWaveStarted, "Wave %d/%d started on %d %s", i+2, len(ro.Status.Waves), next.Total, unit)
		// The next wave's old pods are deleted (the partition raised) at
		// the next sync, queued by the status update; its nodes have
		// nothing to pass yet.
		return
	}
}

// pauseByUser pauses a Progressing rollout whose spec.paused is set; it
// reports whether it did.
func (c *Controller) pauseByUser(ctx context.Context, ro *manifests.Rollout) bool {
	if !ro.Spec.Paused {
		return false
	}
	ro.Status.Phase, ro.Status.PauseReason = manifests.RolloutPaused, manifests.RolloutPausedByUser
	ro.Status.Message = "paused by user (spec.paused); edgectl rollout resume continues it"
	c.event(ctx, ro, manifests.EventNormal, EventPaused, "Rollout paused by user")
	return true
}

// resume resumes a Paused rollout when asked: spec.paused cleared after a
// user pause, or a new rollout.edge.io/resumed-at annotation (and
// spec.paused clear) after a pause by the failure policy, which accepts
// the failures counted by observe. The wave in progress restarts its
// clocks (timeout, offline wait). It reports whether it resumed.
func (c *Controller) resume(ctx context.Context, ro *manifests.Rollout, observe func() [][]nodeState) bool {
	if ro.Spec.Paused {
		return false
	}
	asked := ro.Annotations[manifests.RolloutResumedAtAnnotation]
	switch {
	case ro.Status.PauseReason == manifests.RolloutPausedByUser:
	case asked != "" && asked != ro.Status.ObservedResumedAt:
		observe()
		failed, _ := failures(ro)
		ro.Status.AcceptedFailures = int32(failed)
	default:
		return false
	}
	ro.Status.ObservedResumedAt = asked
	ro.Status.Phase, ro.Status.PauseReason, ro.Status.Message = manifests.RolloutProgressing, "", ""
	if i := int(ro.Status.CurrentWave); i < len(ro.Status.Waves) && !ro.Status.Waves[i].StartedAt.IsZero() {
		ro.Status.Waves[i].StartedAt = c.now().UTC()
	}
	msg := "Rollout resumed"
	if a := ro.Status.AcceptedFailures; a > 0 {
		msg = fmt.Sprintf("Rollout resumed, %d failures accepted", a)
	}
	c.event(ctx, ro, manifests.EventNormal, EventResumed, "%s", msg)
	return true
}

// finish restores the target's update strategy once a rollout completed
// and keeps replacing the old pods of nodes that come back online.
func (c *Controller) finish(ctx context.Context, ro *manifests.Rollout, ds *manifests.DaemonSet, dsHash string, pods map[string][]*manifests.Pod) error {
	orig := manifests.DeepCopy(ro).(*manifests.Rollout)
	if dsHash != ro.Status.Revision {
		return nil // the target moved on: no longer ours
	}
	if prev := ro.Status.PreviousStrategy; prev != nil && ds.Spec.UpdateStrategy.Type == manifests.OnDeleteDaemonSetStrategyType && prev.Type != manifests.OnDeleteDaemonSetStrategyType && prev.Type != "" {
		cp := manifests.DeepCopy(ds).(*manifests.DaemonSet)
		cp.Spec.UpdateStrategy = *prev
		return c.updateTarget(ctx, cp)
	}
	_, del := c.observe(ro, pods, true, false)
	if err := c.deletePods(ctx, del); err != nil {
		return err
	}
	for _, w := range ro.Status.Waves {
		if w.Ready+w.Offline+w.Failed < w.Total {
			// Returning nodes still pass their readySeconds.
			c.queue.AddAfter(controller.Key(ro), resync)
			break
		}
	}
	return c.updateStatus(ctx, orig, ro)
}

// rollBack restores the previous template and strategy and deletes the
// new pods, as long as the target still holds the rollout's template.
func (c *Controller) rollBack(ctx context.Context, ro *manifests.Rollout, ds *manifests.DaemonSet, dsHash string, pods map[string][]*manifests.Pod) error {
	orig := manifests.DeepCopy(ro).(*manifests.Rollout)
	if dsHash == ro.Status.Revision && ro.Status.PreviousTemplate != nil {
		cp := manifests.DeepCopy(ds).(*manifests.DaemonSet)
		cp.Spec.Template = *ro.Status.PreviousTemplate
		if ro.Status.PreviousStrategy != nil {
			cp.Spec.UpdateStrategy = *ro.Status.PreviousStrategy
		}
		return c.updateTarget(ctx, cp)
	}
	if ro.Status.PreviousTemplate != nil && dsHash == daemonset.TemplateHash(ro.Status.PreviousTemplate) {
		var del []*manifests.Pod
		for _, list := range pods {
			for _, p := range list {
				if p.Labels[daemonset.RevisionHashLabel] == ro.Status.Revision {
					del = append(del, p)
				}
			}
		}
		if err := c.deletePods(ctx, del); err != nil {
			return err
		}
	}
	c.observe(ro, pods, false, false)
	return c.updateStatus(ctx, orig, ro)
}

func (c *Controller) fail(ctx context.Context, ro *manifests.Rollout, msg string) error {
	orig := manifests.DeepCopy(ro).(*manifests.Rollout)
	ro.Status.Phase, ro.Status.Message = manifests.RolloutFailed, msg
	c.event(ctx, ro, manifests.EventWarning, EventFailed, "%s", msg)
	return c.updateStatus(ctx, orig, ro)
}

func (c *Controller) deletePods(ctx context.Context, pods []*manifests.Pod) error {
	var errs []error
	for _, p := range pods {
		rev, _ := strconv.ParseUint(p.ResourceVersion, 10, 64)
		if _, err := c.st.Delete(ctx, "pods", p.Namespace, p.Name, rev); err != nil && !client.IsNotFound(err) && !client.IsConflict(err) {
			errs = append(errs, fmt.Errorf("delete pod %s/%s: %w", p.Namespace, p.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) updateTarget(ctx context.Context, obj manifests.Object) error {
	what := obj.GetObjectMeta().Name
	if k, err := manifests.KindOf(obj); err == nil {
		what = k.Singular + " " + what
	}
	if _, err := c.st.Update(ctx, obj); err != nil {
		if client.IsConflict(err) {
			return fmt.Errorf("update %s: %w", what, controller.ErrRetry)
		}
		return fmt.Errorf("update %s: %w", what, err)
	}
	return nil
}

// updateStatus writes ro when its status differs from orig's.
func (c *Controller) updateStatus(ctx context.Context, orig, ro *manifests.Rollout) error {
	if manifests.EqualJSON(orig.Status, ro.Status) {
		return nil
	}
	_, err := c.st.Update(ctx, ro)
	return controller.StatusWriteError("rollout "+ro.Name, err)
}

func (c *Controller) event(ctx context.Context, obj manifests.Object, typ, reason, format string, args ...any) {
	if c.rec == nil {
		return
	}
	if err := c.rec.Eventf(ctx, obj, typ, reason, format, args...); err != nil {
		slog.DebugContext(ctx, "record event", "reason", reason, "err", err)
	}
}
