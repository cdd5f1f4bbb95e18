package rollout

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/deployment"
	"github.com/edgeorch/edgeorch/manifests"
)

// Deployment targets: waves are replica steps. While a rollout runs, the
// Deployment holds the new template, a RollingUpdate strategy and the
// partition annotation (the replicas of the waves started so far); the
// Deployment controller keeps its new ReplicaSet within the partition and
// its old ones at replicas-partition or more.

// syncDeployment reconciles a Rollout of a Deployment.
func (c *Controller) syncDeployment(ctx context.Context, cached, ro *manifests.Rollout) error {
	key := controller.Key(ro)
	if c.deploys == nil || c.rsets == nil {
		return c.fail(ctx, ro, "this controller has no deployment cache")
	}
	do, ok := c.deploys.Get(ro.Namespace + "/" + ro.Spec.TargetRef.Name)
	if !ok {
		if ro.Status.Revision == "" {
			return c.fail(ctx, ro, fmt.Sprintf("deployment %q not found", ro.Spec.TargetRef.Name))
		}
		return nil
	}
	d := do.(*manifests.Deployment)
	if ro.Status.Revision == "" {
		return c.startDeployment(ctx, ro, d)
	}
	if h := deployment.ComputeHash(&ro.Spec.Template, nil); h != ro.Status.Revision && ro.Status.Phase == manifests.RolloutProgressing {
		return c.fail(ctx, ro, fmt.Sprintf("spec.template changed during the rollout (revision %s, now %s)", ro.Status.Revision, h))
	}
	holds := deployment.EqualIgnoreHash(&d.Spec.Template, &ro.Spec.Template)
	pods := c.newTemplatePods(d, ro)
	switch ro.Status.Phase {
	case manifests.RolloutRolledBack:
		if holds && ro.Status.PreviousTemplate != nil {
			cp := manifests.DeepCopy(d).(*manifests.Deployment)
			cp.Spec.Template = *ro.Status.PreviousTemplate
			if prev := ro.Status.PreviousDeploymentStrategy; prev != nil {
				cp.Spec.Strategy = *prev
			}
			delete(cp.Annotations, manifests.RolloutPartitionAnnotation)
			return c.updateTarget(ctx, cp)
		}
		c.observeDeployment(ro, pods, false)
		return c.updateStatus(ctx, cached, ro)
	case manifests.RolloutCompleted:
		if _, ok := d.Annotations[manifests.RolloutPartitionAnnotation]; holds && ok {
			cp := manifests.DeepCopy(d).(*manifests.Deployment)
			delete(cp.Annotations, manifests.RolloutPartitionAnnotation)
			if prev := ro.Status.PreviousDeploymentStrategy; prev != nil {
				cp.Spec.Strategy = *prev
			}
			return c.updateTarget(ctx, cp)
		}
		if !holds {
			return nil // the target moved on: no longer ours
		}
		c.observeDeployment(ro, pods, false)
		for _, w := range ro.Status.Waves {
			if w.Ready+w.Offline+w.Failed < w.Total {
				c.queue.AddAfter(key, resync) // replicas still pass their readySeconds
				break
			}
		}
		return c.updateStatus(ctx, cached, ro)
	case manifests.RolloutPaused:
		if !c.resume(ctx, ro, func() [][]nodeState { return c.observeDeployment(ro, pods, true) }) {
			c.observeDeployment(ro, pods, false)
		}
		return c.updateStatus(ctx, cached, ro)
	}
	if c.pauseByUser(ctx, ro) {
		c.observeDeployment(ro, pods, false)
		return c.updateStatus(ctx, cached, ro)
	}
	// Progressing: the target holds the new template, a RollingUpdate
	// strategy and the current wave's partition.
	i := min(int(ro.Status.CurrentWave), len(ro.Status.Waves)-1)
	partition := strconv.Itoa(int(ro.Status.Waves[i].Partition))
	strategy := rollingStrategy(ro.Status.PreviousDeploymentStrategy)
	if !holds || d.Annotations[manifests.RolloutPartitionAnnotation] != partition || !manifests.EqualJSON(d.Spec.Strategy, strategy) {
		cp := manifests.DeepCopy(d).(*manifests.Deployment)
		cp.Spec.Template = ro.Spec.Template // ro is a private copy
		cp.Spec.Strategy = strategy
		if cp.Annotations == nil {
			cp.Annotations = map[string]string{}
		}
		cp.Annotations[manifests.RolloutPartitionAnnotation] = partition
		return c.updateTarget(ctx, cp)
	}
	c.advance(ctx, ro, c.observeDeployment(ro, pods, true), "replicas")
	if err := c.updateStatus(ctx, cached, ro); err != nil {
		return err
	}
	if ro.Status.Phase == manifests.RolloutProgressing {
		c.queue.AddAfter(key, resync)
	} else {
		c.queue.Add(key) // raise the partition or restore the target
	}
	return nil
}

// rollingStrategy is the strategy a Deployment runs under during a
// rollout: its own when it is a RollingUpdate, else RollingUpdate with
// Kubernetes' defaults (25% surge, 25% unavailable).
func rollingStrategy(prev *manifests.DeploymentStrategy) manifests.DeploymentStrategy {
	if prev != nil && prev.Type == manifests.RollingUpdateDeploymentStrategyType && prev.RollingUpdate != nil {
		return *prev // from the caller's private copy of the rollout
	}
	surge, unavail := manifests.FromString("25%"), manifests.FromString("25%")
	return manifests.DeploymentStrategy{
		Type:          manifests.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &manifests.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavail},
	}
}

// startDeployment plans the waves (replica steps) and records the
// Deployment's template and strategy; the next sync changes the target.
func (c *Controller) startDeployment(ctx context.Context, ro *manifests.Rollout, d *manifests.Deployment) error {
	orig := manifests.DeepCopy(ro).(*manifests.Rollout)
	plan, err := planReplicas(ro, d)
	if err != nil {
		return c.fail(ctx, ro, err.Error())
	}
	prevT := d.Spec.Template
	prevS := d.Spec.Strategy
	ro.Status = manifests.RolloutStatus{
		Phase:                      manifests.RolloutProgressing,
		Revision:                   deployment.ComputeHash(&ro.Spec.Template, nil),
		PreviousTemplate:           &prevT,
		PreviousDeploymentStrategy: &prevS,
		Waves:                      plan,
	}
	if deployment.EqualIgnoreHash(&d.Spec.Template, &ro.Spec.Template) {
		ro.Status.Phase = manifests.RolloutCompleted
		ro.Status.CurrentWave = int32(len(plan))
		ro.Status.Message = "the target already runs this template"
		return c.updateStatus(ctx, orig, ro)
	}
	ro.Status.Waves[0].StartedAt = c.now().UTC()
	c.event(ctx, ro, manifests.EventNormal, EventWaveStarted, "Wave 1/%d started on %d replicas", len(plan), plan[0].Total)
	return c.updateStatus(ctx, orig, ro)
}

// planReplicas splits the Deployment's replicas into the waves: a wave
// takes count more replicas (a percentage of spec.replicas, rounded up),
// all the remaining ones when unset; the last wave takes what is left.
func planReplicas(ro *manifests.Rollout, d *manifests.Deployment) ([]manifests.RolloutWaveStatus, error) {
	replicas := 1
	if d.Spec.Replicas != nil {
		replicas = int(*d.Spec.Replicas)
	}
	waves := ro.Spec.Waves
	if len(waves) == 0 {
		waves = []manifests.RolloutWave{{}}
	}
	out := make([]manifests.RolloutWaveStatus, len(waves))
	remaining, done := replicas, 0
	for i, w := range waves {
		if w.Selector != nil {
			return nil, fmt.Errorf("waves[%d].selector: not supported for a Deployment", i)
		}
		take := remaining
		if w.Count != nil {
			n, err := manifests.ScaledValueFromIntOrPercent(w.Count, replicas, true)
			if err != nil {
				return nil, fmt.Errorf("waves[%d].count: %w", i, err)
			}
			take = min(max(n, 0), remaining)
		}
		remaining -= take
		done += take
		out[i].Total, out[i].Partition = int32(take), int32(done)
	}
	last := &out[len(out)-1]
	last.Total += int32(remaining)
	last.Partition = int32(replicas)
	return out, nil
}

// newTemplatePods returns the live pods of d's ReplicaSets with the
// rollout's template.
func (c *Controller) newTemplatePods(d *manifests.Deployment, ro *manifests.Rollout) []*manifests.Pod {
	uids := map[string]bool{}
	for _, o := range c.rsets.List(manifests.Selector{}) {
		rs := o.(*manifests.ReplicaSet)
		ref := manifests.GetControllerOf(rs)
		if rs.Namespace == d.Namespace && ref != nil && ref.UID == d.UID && deployment.EqualIgnoreHash(&rs.Spec.Template, &ro.Spec.Template) {
			uids[rs.UID] = true
		}
	}
	sel, err := manifests.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || len(uids) == 0 {
		return nil
	}
	var out []*manifests.Pod
	for _, o := range c.pods.List(sel) {
		p := o.(*manifests.Pod)
		ref := manifests.GetControllerOf(p)
		if p.Namespace != d.Namespace || ref == nil || !uids[ref.UID] || p.DeletionTimestamp != nil {
			continue
		}
		out = append(out, p)
	}
	return out
}

// observeDeployment recounts a Deployment rollout. Replicas are
// fungible: the new template's pods are counted, not placed. A wave passes
// once as many new replicas as its partition are done: ready (for the
// health gate), failed (crashing; or, once the wave in progress timed out
// and only with timeouts, not ready at all, pods missing included) or
// offline (on a node that is not Ready) for waitSeconds, counted from the
// wave's start or from when the controller first saw the pod offline,
// whichever is earlier. For the status the counts fill the waves in order:
// ready first, then failed, offline and pending replicas.
func (c *Controller) observeDeployment(ro *manifests.Rollout, pods []*manifests.Pod, timeouts bool) [][]nodeState {
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
	wait := time.Duration(ro.Spec.OfflinePolicy.WaitSeconds) * time.Second
	var ready, failed, offWaited, offline, pending []nodeState
	for _, p := range pods {
		s := c.replicaState(ro, p, now, seen, next)
		switch {
		case s.offline:
			since, ok := seen["offline/"+p.UID]
			if !ok {
				since = now
			}
			next["offline/"+p.UID] = since
			if now.Sub(since) >= wait {
				s.offlineWaited = true
				offWaited = append(offWaited, s)
			} else {
				offline = append(offline, s)
			}
		case s.ready:
			ready = append(ready, s)
		case s.failed:
			failed = append(failed, s)
		default:
			pending = append(pending, s)
		}
	}
	total := 0
	for _, w := range ro.Status.Waves {
		total += int(w.Total)
	}
	if cur := int(ro.Status.CurrentWave); timeouts && cur < len(ro.Status.Waves) {
		w := ro.Status.Waves[cur]
		if !w.StartedAt.IsZero() && w.CompletedAt.IsZero() && now.Sub(w.StartedAt) >= ro.Spec.HealthGate.WaveTimeout() {
			// The partition's replicas not ready by now failed.
			for range int(w.Partition) - len(ready) - len(failed) - len(offWaited) - len(offline) {
				s := nodeState{failed: true}
				if len(pending) > 0 {
					s.updated = true
					pending = pending[1:]
				}
				failed = append(failed, s)
			}
		}
	}
	slots := make([]nodeState, 0, total)
	for _, list := range [][]nodeState{ready, failed, offWaited, offline, pending} {
		slots = append(slots, list[:min(len(list), total-len(slots))]...)
	}
	for len(slots) < total {
		slots = append(slots, nodeState{}) // no pod (yet)
	}
	states := make([][]nodeState, len(ro.Status.Waves))
	for i := range ro.Status.Waves {
		w := &ro.Status.Waves[i]
		w.Updated, w.Ready, w.Failed, w.Offline = 0, 0, 0, 0
		states[i], slots = slots[:w.Total], slots[w.Total:]
		for _, s := range states[i] {
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
		}
	}
	return states
}

// replicaState is one new-template pod as observed now.
func (c *Controller) replicaState(ro *manifests.Rollout, p *manifests.Pod, now time.Time, seen, next map[string]time.Time) nodeState {
	s := nodeState{updated: true}
	if p.Spec.NodeName != "" && !c.nodeReady(p.Spec.NodeName) {
		s.offline = true
		return s
	}
	s.failed = crashing(p)
	if !s.failed && manifests.IsPodReady(p) {
		since, ok := seen[p.UID]
		if !ok {
			since = now
		}
		next[p.UID] = since
		gate := time.Duration(ro.Spec.HealthGate.ReadySeconds) * time.Second
		s.ready = manifests.IsPodAvailable(p, ro.Spec.HealthGate.ReadySeconds, now) && now.Sub(since) >= gate
	}
	return s
}
