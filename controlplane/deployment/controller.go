// Package deployment is the Deployment controller: one ReplicaSet per pod
// template (named <deployment>-<pod-template-hash>), rolled out with the
// RollingUpdate or Recreate strategy, with revisions, pausing, a progress
// deadline, revision history cleanup and Kubernetes' status and conditions.
// It follows Kubernetes' deployment controller closely.
package deployment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// Name is the controller's name, the source of its events.
const Name = "deployment-controller"

// Store is what the controller needs of the object store.
type Store interface {
	Create(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error)
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

// Controller reconciles Deployments.
type Controller struct {
	st     Store
	deploy Lister
	rsets  Lister
	pods   Lister
	rec    Recorder
	queue  *controller.Queue
	now    func() time.Time
}

// New returns a controller over the given caches. Register
// DeploymentChanged, RSChanged and PodChanged as their handlers.
func New(st Store, deployments, rsets, pods Lister, rec Recorder) *Controller {
	return &Controller{
		st: st, deploy: deployments, rsets: rsets, pods: pods, rec: rec,
		queue: controller.NewQueue(50*time.Millisecond, 30*time.Second),
		now:   time.Now,
	}
}

// SetClock replaces the clock (tests).
func (c *Controller) SetClock(now func() time.Time) { c.now = now }

// Run syncs with workers workers until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) {
	controller.RunWorkers(ctx, c.queue, workers, c.Sync)
}

// DeploymentChanged queues a changed Deployment.
func (c *Controller) DeploymentChanged(old, cur manifests.Object) {
	if cur == nil {
		cur = old
	}
	c.queue.Add(controller.Key(cur))
}

// RSChanged queues the Deployment owning a changed ReplicaSet (before and
// after), or for an orphan every Deployment that might adopt it.
func (c *Controller) RSChanged(old, cur manifests.Object) {
	for _, o := range []manifests.Object{old, cur} {
		if o == nil {
			continue
		}
		rs := o.(*manifests.ReplicaSet)
		if ref := manifests.GetControllerOf(rs); ref != nil {
			if ref.Kind == "Deployment" {
				c.queue.Add(rs.Namespace + "/" + ref.Name)
			}
			continue
		}
		if o != cur {
			continue
		}
		for _, d := range c.deploymentsFor(rs) {
			c.queue.Add(controller.Key(d))
		}
	}
}

// PodChanged queues the Deployment of a deleted pod's ReplicaSet: a
// Recreate rollout waits for the old pods to be gone.
func (c *Controller) PodChanged(old, cur manifests.Object) {
	if cur != nil || old == nil {
		return
	}
	pod := old.(*manifests.Pod)
	ref := manifests.GetControllerOf(pod)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	o, ok := c.rsets.Get(pod.Namespace + "/" + ref.Name)
	if !ok {
		return
	}
	if dref := manifests.GetControllerOf(o); dref != nil && dref.Kind == "Deployment" {
		c.queue.Add(pod.Namespace + "/" + dref.Name)
	}
}

func (c *Controller) deploymentsFor(rs *manifests.ReplicaSet) []*manifests.Deployment {
	var out []*manifests.Deployment
	for _, o := range c.deploy.List(manifests.Selector{}) {
		d := o.(*manifests.Deployment)
		if d.Namespace != rs.Namespace {
			continue
		}
		sel, err := manifests.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(rs.Labels) {
			continue
		}
		out = append(out, d)
	}
	return out
}

func (c *Controller) event(ctx context.Context, obj manifests.Object, typ, reason, format string, args ...any) {
	if c.rec == nil {
		return
	}
	if err := c.rec.Eventf(ctx, obj, typ, reason, format, args...); err != nil {
		slog.WarnContext(ctx, "record event", "reason", reason, "err", err)
	}
}

// Sync reconciles the Deployment under key. A conflict or a missing
// object (the cache was behind the store) is retried quietly.
func (c *Controller) Sync(ctx context.Context, key string) error {
	err := c.sync(ctx, key)
	if client.IsConflict(err) || client.IsNotFound(err) {
		return fmt.Errorf("%w: %w", controller.ErrRetry, err)
	}
	return err
}

func (c *Controller) sync(ctx context.Context, key string) error {
	o, ok := c.deploy.Get(key)
	if !ok {
		return nil
	}
	// Work on a copy: the cached object is shared.
	d := manifests.DeepCopy(o).(*manifests.Deployment)
	sel, err := manifests.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return fmt.Errorf("deployment %s: selector: %w", key, err)
	}
	if sel.Empty() {
		c.event(ctx, d, manifests.EventWarning, EventSelectingAll, "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			_, err := c.updateDeployment(ctx, d)
			return err
		}
		return nil
	}
	s := &syncer{c: c, d: d}
	rsList, err := s.claimReplicaSets(ctx, sel)
	if err != nil {
		return fmt.Errorf("deployment %s: %w", key, err)
	}
	s.rsList = rsList
	if d.DeletionTimestamp != nil {
		return s.syncStatusOnly(ctx)
	}
	if err := s.checkPausedConditions(ctx); err != nil {
		return err
	}
	if d.Spec.Paused {
		return s.sync(ctx)
	}
	scaling, err := s.isScalingEvent(ctx)
	if err != nil {
		return err
	}
	if scaling {
		return s.sync(ctx)
	}
	if d.Spec.Strategy.Type == manifests.RecreateDeploymentStrategyType {
		return s.rolloutRecreate(ctx)
	}
	return s.rolloutRolling(ctx)
}

// syncer holds one sync's working state: the Deployment as last written
// and its ReplicaSets.
type syncer struct {
	c      *Controller
	d      *manifests.Deployment
	rsList []*manifests.ReplicaSet
}

// claimReplicaSets returns the ReplicaSets d controls after adopting
// matching orphans and releasing owned ones that no longer match.
func (s *syncer) claimReplicaSets(ctx context.Context, sel manifests.Selector) ([]*manifests.ReplicaSet, error) {
	d := s.d
	var out []*manifests.ReplicaSet
	var errs []error
	for _, o := range s.c.rsets.List(manifests.Selector{}) {
		rs := o.(*manifests.ReplicaSet)
		if rs.Namespace != d.Namespace {
			continue
		}
		matches := sel.Matches(rs.Labels)
		ref := manifests.GetControllerOf(rs)
		switch {
		case ref != nil && ref.UID == d.UID:
			if matches {
				out = append(out, manifests.DeepCopy(rs).(*manifests.ReplicaSet))
				continue
			}
			cp := manifests.DeepCopy(rs).(*manifests.ReplicaSet)
			refs := cp.OwnerReferences[:0]
			for _, r := range cp.OwnerReferences {
				if r.UID != d.UID {
					refs = append(refs, r)
				}
			}
			cp.OwnerReferences = refs
			if _, err := s.c.st.Update(ctx, cp); err != nil && !client.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("release replicaset %s: %w", rs.Name, err))
			}
		case ref == nil && matches && d.DeletionTimestamp == nil && rs.DeletionTimestamp == nil:
			ref, err := manifests.NewControllerRef(d)
			if err != nil {
				return nil, err
			}
			cp := manifests.DeepCopy(rs).(*manifests.ReplicaSet)
			cp.OwnerReferences = append(cp.OwnerReferences, ref)
			got, err := s.c.st.Update(ctx, cp)
			if err != nil {
				if !client.IsNotFound(err) {
					errs = append(errs, fmt.Errorf("adopt replicaset %s: %w", rs.Name, err))
				}
				continue
			}
			out = append(out, got.(*manifests.ReplicaSet))
		}
	}
	return out, errors.Join(errs...)
}

// updateDeployment writes s.d (annotations and status) and keeps the
// stored result as the working copy.
func (c *Controller) updateDeployment(ctx context.Context, d *manifests.Deployment) (*manifests.Deployment, error) {
	got, err := c.st.Update(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("update deployment %s: %w", d.Name, err)
	}
	return got.(*manifests.Deployment), nil
}

func (s *syncer) writeDeployment(ctx context.Context) error {
	got, err := s.c.updateDeployment(ctx, s.d)
	if err != nil {
		return err
	}
	s.d = got
	return nil
}

// getAllReplicaSetsAndSyncRevision splits the ReplicaSets into the new one
// (whose template is the Deployment's; created when createIfMissing) and
// the old ones, and brings revisions up to date.
func (s *syncer) getAllReplicaSetsAndSyncRevision(ctx context.Context, createIfMissing bool) (*manifests.ReplicaSet, []*manifests.ReplicaSet, error) {
	var newRS *manifests.ReplicaSet
	var old []*manifests.ReplicaSet
	// The oldest ReplicaSet with the template is the new one (Kubernetes'
	// FindNewReplicaSet): duplicates can exist after a hash collision.
	sorted := append([]*manifests.ReplicaSet(nil), s.rsList...)
	sortByCreation(sorted)
	for _, rs := range sorted {
		if newRS == nil && EqualIgnoreHash(&rs.Spec.Template, &s.d.Spec.Template) {
			newRS = rs
			continue
		}
		old = append(old, rs)
	}
	newRS, err := s.getNewReplicaSet(ctx, newRS, old, createIfMissing)
	if err != nil {
		return nil, nil, err
	}
	return newRS, old, nil
}

func (s *syncer) getNewReplicaSet(ctx context.Context, existing *manifests.ReplicaSet, old []*manifests.ReplicaSet, create bool) (*manifests.ReplicaSet, error) {
	d := s.d
	newRevision := MaxRevision(old) + 1
	if existing != nil {
		cp := manifests.DeepCopy(existing).(*manifests.ReplicaSet)
		changed := setNewReplicaSetAnnotations(d, cp, newRevision)
		minReadyChanged := cp.Spec.MinReadySeconds != d.Spec.MinReadySeconds
		if changed || minReadyChanged {
			cp.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			got, err := s.c.st.Update(ctx, cp)
			if err != nil {
				return nil, fmt.Errorf("update replicaset %s: %w", cp.Name, err)
			}
			cp = got.(*manifests.ReplicaSet)
			s.replace(cp)
		}
		needsUpdate := setDeploymentRevision(d, cp.Annotations[manifests.RevisionAnnotation])
		if hasProgressDeadline(d) && getCondition(&d.Status, manifests.DeploymentProgressing) == nil {
			setCondition(&d.Status, newCondition(manifests.DeploymentProgressing, manifests.ConditionTrue, ReasonFoundNewReplicaSet,
				fmt.Sprintf("Found new replica set %q", cp.Name), s.c.now()))
			needsUpdate = true
		}
		if needsUpdate {
			if err := s.writeDeployment(ctx); err != nil {
				return nil, err
			}
		}
		return cp, nil
	}
	if !create {
		return nil, nil
	}
	hash := ComputeHash(&d.Spec.Template, d.Status.CollisionCount)
	tmpl := *manifests.DeepCopy(&manifests.ReplicaSet{Spec: manifests.ReplicaSetSpec{Template: d.Spec.Template}}).(*manifests.ReplicaSet)
	template := tmpl.Spec.Template
	if template.Labels == nil {
		template.Labels = map[string]string{}
	}
	template.Labels[manifests.DefaultDeploymentUniqueLabelKey] = hash
	sel := &manifests.LabelSelector{MatchLabels: map[string]string{}}
	for k, v := range d.Spec.Selector.MatchLabels {
		sel.MatchLabels[k] = v
	}
	sel.MatchExpressions = append(sel.MatchExpressions, d.Spec.Selector.MatchExpressions...)
	sel.MatchLabels[manifests.DefaultDeploymentUniqueLabelKey] = hash
	ref, err := manifests.NewControllerRef(d)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{}
	for k, v := range template.Labels {
		labels[k] = v
	}
	rs := &manifests.ReplicaSet{
		TypeMeta: manifests.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: manifests.ObjectMeta{
			Name:            d.Name + "-" + hash,
			Namespace:       d.Namespace,
			Labels:          labels,
			OwnerReferences: []manifests.OwnerReference{ref},
		},
		Spec: manifests.ReplicaSetSpec{
			Selector:        sel,
			Template:        template,
			MinReadySeconds: d.Spec.MinReadySeconds,
		},
	}
	allRSs := append(append([]*manifests.ReplicaSet(nil), old...), rs)
	zero := int32(0)
	rs.Spec.Replicas = &zero
	n, err := newRSNewReplicas(d, allRSs, rs)
	if err != nil {
		return nil, err
	}
	rs.Spec.Replicas = &n
	setNewReplicaSetAnnotations(d, rs, newRevision)
	setReplicasAnnotations(rs, dReplicas(d), dReplicas(d)+MaxSurge(d))
	created, err := s.c.st.Create(ctx, rs)
	switch {
	case client.CodeOf(err) == client.CodeExists:
		// Usually our own, not cached yet; otherwise a hash collision.
		cur, gerr := s.c.st.Get(ctx, "replicasets", d.Namespace, rs.Name)
		if gerr != nil {
			return nil, fmt.Errorf("get replicaset %s: %w", rs.Name, gerr)
		}
		crs := cur.(*manifests.ReplicaSet)
		if ref := manifests.GetControllerOf(crs); ref != nil && ref.UID == d.UID && EqualIgnoreHash(&crs.Spec.Template, &d.Spec.Template) {
			return crs, nil
		}
		cc := int32(0)
		if d.Status.CollisionCount != nil {
			cc = *d.Status.CollisionCount
		}
		cc++
		d.Status.CollisionCount = &cc
		if err := s.writeDeployment(ctx); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("replicaset %s: hash collision, retrying with collisionCount %d: %w", rs.Name, cc, controller.ErrRetry)
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		if hasProgressDeadline(d) {
			setCondition(&d.Status, newCondition(manifests.DeploymentProgressing, manifests.ConditionFalse, ReasonFailedReplicaSetCreate, msg, s.c.now()))
			_ = s.writeDeployment(ctx)
		}
		s.c.event(ctx, d, manifests.EventWarning, ReasonFailedReplicaSetCreate, "%s", msg)
		return nil, fmt.Errorf("create replicaset %s: %w", rs.Name, err)
	}
	crs := created.(*manifests.ReplicaSet)
	s.rsList = append(s.rsList, crs)
	if n > 0 {
		s.c.event(ctx, d, manifests.EventNormal, EventScalingReplicaSet, "Scaled up replica set %s from 0 to %d", crs.Name, n)
	}
	setDeploymentRevision(d, crs.Annotations[manifests.RevisionAnnotation])
	if hasProgressDeadline(d) {
		setCondition(&d.Status, newCondition(manifests.DeploymentProgressing, manifests.ConditionTrue, ReasonNewReplicaSetCreated,
			fmt.Sprintf("Created new replica set %q", crs.Name), s.c.now()))
	}
	if err := s.writeDeployment(ctx); err != nil {
		return nil, err
	}
	return crs, nil
}

// setDeploymentRevision sets d's revision annotation; it reports a change.
func setDeploymentRevision(d *manifests.Deployment, revision string) bool {
	if revision == "" || d.Annotations[manifests.RevisionAnnotation] == revision {
		return false
	}
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[manifests.RevisionAnnotation] = revision
	return true
}

// replace puts rs (a newer version) in s.rsList.
func (s *syncer) replace(rs *manifests.ReplicaSet) {
	for i, r := range s.rsList {
		if r.UID == rs.UID {
			s.rsList[i] = rs
			return
		}
	}
}

// newRSNewReplicas is the size the new ReplicaSet may grow to now.
func newRSNewReplicas(d *manifests.Deployment, allRSs []*manifests.ReplicaSet, newRS *manifests.ReplicaSet) (int32, error) {
	if !isRollingUpdate(d) {
		return dReplicas(d), nil
	}
	surge, unavail := rollingParams(d)
	maxSurge, err := manifests.ScaledValueFromIntOrPercent(surge, int(dReplicas(d)), true)
	if err != nil {
		return 0, err
	}
	_ = unavail
	// Kubernetes sums spec.replicas; a ReplicaSet still deleting pods
	// beyond its spec (status.replicas > spec) counts them too, so that
	// the pods that exist, not only those wanted, stay within maxSurge.
	current := sumReplicas(allRSs, func(rs *manifests.ReplicaSet) int32 { return max(rsReplicas(rs), rs.Status.Replicas) })
	maxTotal := dReplicas(d) + int32(maxSurge)
	if current >= maxTotal {
		return rsReplicas(newRS), nil
	}
	up := min(maxTotal-current, newRSTarget(d)-rsReplicas(newRS))
	if up <= 0 {
		return rsReplicas(newRS), nil
	}
	return rsReplicas(newRS) + up, nil
}

// scaleReplicaSet sets rs's replicas (and replica annotations); it reports
// whether anything was written.
func (s *syncer) scaleReplicaSet(ctx context.Context, rs *manifests.ReplicaSet, newScale int32, op string) (bool, *manifests.ReplicaSet, error) {
	d := s.d
	cp := manifests.DeepCopy(rs).(*manifests.ReplicaSet)
	sizeChanged := rsReplicas(rs) != newScale
	annChanged := setReplicasAnnotations(cp, dReplicas(d), dReplicas(d)+MaxSurge(d))
	if !sizeChanged && !annChanged {
		return false, rs, nil
	}
	cp.Spec.Replicas = &newScale
	got, err := s.c.st.Update(ctx, cp)
	if err != nil {
		return false, nil, fmt.Errorf("scale replicaset %s: %w", rs.Name, err)
	}
	grs := got.(*manifests.ReplicaSet)
	s.replace(grs)
	if sizeChanged {
		s.c.event(ctx, d, manifests.EventNormal, EventScalingReplicaSet, "Scaled %s replica set %s from %d to %d", op, rs.Name, rsReplicas(rs), newScale)
	}
	return sizeChanged, grs, nil
}

func (s *syncer) scaleReplicaSetAndRecordEvent(ctx context.Context, rs *manifests.ReplicaSet, newScale int32) (bool, *manifests.ReplicaSet, error) {
	if rsReplicas(rs) == newScale {
		return false, rs, nil
	}
	op := "down"
	if rsReplicas(rs) < newScale {
		op = "up"
	}
	return s.scaleReplicaSet(ctx, rs, newScale, op)
}

// calculateStatus computes d's status from its ReplicaSets.
func (s *syncer) calculateStatus(allRSs []*manifests.ReplicaSet, newRS *manifests.ReplicaSet) manifests.DeploymentStatus {
	d := s.d
	available := sumReplicas(allRSs, availableReplicas)
	total := sumReplicas(allRSs, specReplicas)
	st := manifests.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            sumReplicas(allRSs, statusReplicas),
		ReadyReplicas:       sumReplicas(allRSs, readyReplicas),
		AvailableReplicas:   available,
		UnavailableReplicas: max(total-available, 0),
		CollisionCount:      d.Status.CollisionCount,
	}
	if newRS != nil {
		st.UpdatedReplicas = newRS.Status.Replicas
	}
	st.Conditions = append([]manifests.DeploymentCondition(nil), d.Status.Conditions...)
	if available >= dReplicas(d)-MaxUnavailable(d) {
		setCondition(&st, newCondition(manifests.DeploymentAvailable, manifests.ConditionTrue, ReasonMinimumReplicasAvail, "Deployment has minimum availability.", s.c.now()))
	} else {
		setCondition(&st, newCondition(manifests.DeploymentAvailable, manifests.ConditionFalse, ReasonMinimumReplicasUnavail, "Deployment does not have minimum availability.", s.c.now()))
	}
	return st
}

func (s *syncer) all(newRS *manifests.ReplicaSet, old []*manifests.ReplicaSet) []*manifests.ReplicaSet {
	out := append([]*manifests.ReplicaSet(nil), old...)
	if newRS != nil {
		out = append(out, newRS)
	}
	return out
}

// syncDeploymentStatus writes the status computed from the ReplicaSets.
func (s *syncer) syncDeploymentStatus(ctx context.Context, allRSs []*manifests.ReplicaSet, newRS *manifests.ReplicaSet) error {
	st := s.calculateStatus(allRSs, newRS)
	if statusEqual(s.d.Status, st) {
		return nil
	}
	s.d.Status = st
	return s.writeDeployment(ctx)
}

func statusEqual(a, b manifests.DeploymentStatus) bool {
	norm := func(s manifests.DeploymentStatus) manifests.DeploymentStatus {
		cs := make([]manifests.DeploymentCondition, len(s.Conditions))
		for i, c := range s.Conditions {
			c.LastUpdateTime = c.LastUpdateTime.UTC().Truncate(time.Second)
			c.LastTransitionTime = c.LastTransitionTime.UTC().Truncate(time.Second)
			cs[i] = c
		}
		s.Conditions = cs
		return s
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func (s *syncer) syncStatusOnly(ctx context.Context) error {
	newRS, old, err := s.getAllReplicaSetsAndSyncRevision(ctx, false)
	if err != nil {
		return err
	}
	return s.syncDeploymentStatus(ctx, s.all(newRS, old), newRS)
}

// checkPausedConditions records pausing and resuming in the Progressing
// condition (so that a paused rollout does not time out).
func (s *syncer) checkPausedConditions(ctx context.Context) error {
	d := s.d
	if !hasProgressDeadline(d) {
		return nil
	}
	cond := getCondition(&d.Status, manifests.DeploymentProgressing)
	if cond != nil && cond.Reason == ReasonProgressDeadlineExceed {
		return nil
	}
	pausedExists := cond != nil && cond.Reason == ReasonDeploymentPaused
	switch {
	case d.Spec.Paused && !pausedExists:
		setCondition(&d.Status, newCondition(manifests.DeploymentProgressing, manifests.ConditionUnknown, ReasonDeploymentPaused, "Deployment is paused", s.c.now()))
	case !d.Spec.Paused && pausedExists:
		setCondition(&d.Status, newCondition(manifests.DeploymentProgressing, manifests.ConditionUnknown, ReasonDeploymentResumed, "Deployment is resumed", s.c.now()))
	default:
		return nil
	}
	return s.writeDeployment(ctx)
}

// isScalingEvent reports whether spec.replicas changed since the active
// ReplicaSets were last annotated.
func (s *syncer) isScalingEvent(ctx context.Context) (bool, error) {
	newRS, old, err := s.getAllReplicaSetsAndSyncRevision(ctx, false)
	if err != nil {
		return false, err
	}
	for _, rs := range filterActive(s.all(newRS, old)) {
		if desired, ok := intAnnotation(rs, manifests.DesiredReplicasAnnotation); ok && desired != dReplicas(s.d) {
			return true, nil
		}
	}
	return false, nil
}

// sync handles scaling and paused Deployments: no rollout progress, only
// (proportional) scaling, cleanup and status.
func (s *syncer) sync(ctx context.Context) error {
	newRS, old, err := s.getAllReplicaSetsAndSyncRevision(ctx, false)
	if err != nil {
		return err
	}
	if err := s.scale(ctx, newRS, old); err != nil {
		return err
	}
	newRS, old = s.refresh(newRS, old)
	if s.d.Spec.Paused {
		if err := s.cleanupDeployment(ctx, old); err != nil {
			return err
		}
	}
	return s.syncDeploymentStatus(ctx, s.all(newRS, old), newRS)
}

// refresh returns the latest versions (from s.rsList) of newRS and old.
func (s *syncer) refresh(newRS *manifests.ReplicaSet, old []*manifests.ReplicaSet) (*manifests.ReplicaSet, []*manifests.ReplicaSet) {
	byUID := map[string]*manifests.ReplicaSet{}
	for _, rs := range s.rsList {
		byUID[rs.UID] = rs
	}
	if newRS != nil && byUID[newRS.UID] != nil {
		newRS = byUID[newRS.UID]
	}
	out := make([]*manifests.ReplicaSet, len(old))
	for i, rs := range old {
		if byUID[rs.UID] != nil {
			rs = byUID[rs.UID]
		}
		out[i] = rs
	}
	return newRS, out
}

// findActiveOrLatest returns the only active ReplicaSet, or the latest one
// when none is active, or nil when several are.
func findActiveOrLatest(newRS *manifests.ReplicaSet, old []*manifests.ReplicaSet) *manifests.ReplicaSet {
	if newRS == nil && len(old) == 0 {
		return nil
	}
	sorted := append([]*manifests.ReplicaSet(nil), old...)
	sortByCreation(sorted)
	for i, j := 0, len(sorted)-1; i < j; i, j = i+1, j-1 {
		sorted[i], sorted[j] = sorted[j], sorted[i]
	}
	all := append(sorted, newRS)
	active := filterActive(all)
	switch len(active) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return sorted[0]
	case 1:
		return active[0]
	}
	return nil
}

func isSaturated(d *manifests.Deployment, rs *manifests.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	desired, ok := intAnnotation(rs, manifests.DesiredReplicasAnnotation)
	return ok && desired == dReplicas(d) && rsReplicas(rs) == dReplicas(d) && rs.Status.AvailableReplicas == dReplicas(d)
}

// scale scales the ReplicaSets when spec.replicas changed, proportionally
// to their sizes during a rollout (Kubernetes' proportional scaling).
func (s *syncer) scale(ctx context.Context, newRS *manifests.ReplicaSet, old []*manifests.ReplicaSet) error {
	d := s.d
	if rs := findActiveOrLatest(newRS, old); rs != nil {
		if rsReplicas(rs) == dReplicas(d) {
			return nil
		}
		_, _, err := s.scaleReplicaSetAndRecordEvent(ctx, rs, dReplicas(d))
		return err
	}
	if isSaturated(d, newRS) {
		for _, rs := range filterActive(old) {
			if _, _, err := s.scaleReplicaSetAndRecordEvent(ctx, rs, 0); err != nil {
				return err
			}
		}
		return nil
	}
	if !isRollingUpdate(d) {
		return nil
	}
	all := filterActive(s.all(newRS, old))
	allReplicas := sumReplicas(all, specReplicas)
	allowed := dReplicas(d)
	if allowed > 0 {
		allowed += MaxSurge(d)
	}
	toAdd := allowed - allReplicas
	var op string
	switch {
	case toAdd > 0:
		sortBySizeNewer(all)
		op = "up"
	case toAdd < 0:
		sortBySizeOlder(all)
		op = "down"
	}
	added := int32(0)
	sizes := map[string]int32{}
	for _, rs := range all {
		if toAdd != 0 {
			p := proportion(rs, d, toAdd, added)
			sizes[rs.Name] = rsReplicas(rs) + p
			added += p
		} else {
			sizes[rs.Name] = rsReplicas(rs)
		}
	}
	if toAdd != added && len(all) > 0 {
		sizes[all[0].Name] = max(sizes[all[0].Name]+toAdd-added, 0)
	}
	for _, rs := range all {
		if _, _, err := s.scaleReplicaSet(ctx, rs, sizes[rs.Name], op); err != nil {
			return err
		}
	}
	return nil
}

func proportion(rs *manifests.ReplicaSet, d *manifests.Deployment, toAdd, added int32) int32 {
	if rs == nil || rsReplicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	fraction := replicaSetFraction(rs, d)
	allowed := toAdd - added
	if toAdd > 0 {
		return min(fraction, allowed)
	}
	return max(fraction, allowed)
}

func replicaSetFraction(rs *manifests.ReplicaSet, d *manifests.Deployment) int32 {
	if dReplicas(d) == 0 {
		return -rsReplicas(rs)
	}
	deploymentReplicas := dReplicas(d) + MaxSurge(d)
	annotated, ok := intAnnotation(rs, manifests.MaxReplicasAnnotation)
	if !ok || annotated == 0 {
		annotated = d.Status.Replicas
	}
	if annotated == 0 {
		return 0
	}
	size := float64(rsReplicas(rs)*deploymentReplicas) / float64(annotated)
	return int32(size+0.5) - rsReplicas(rs)
}

// cleanupDeployment deletes the oldest inactive ReplicaSets beyond
// spec.revisionHistoryLimit.
func (s *syncer) cleanupDeployment(ctx context.Context, old []*manifests.ReplicaSet) error {
	d := s.d
	if d.Spec.RevisionHistoryLimit == nil {
		return nil
	}
	var cleanable []*manifests.ReplicaSet
	for _, rs := range old {
		if rs != nil && rs.DeletionTimestamp == nil {
			cleanable = append(cleanable, rs)
		}
	}
	diff := len(cleanable) - int(*d.Spec.RevisionHistoryLimit)
	if diff <= 0 {
		return nil
	}
	sortByRevision(cleanable)
	var errs []error
	for _, rs := range cleanable[:diff] {
		if rs.Status.Replicas != 0 || rsReplicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration || rs.DeletionTimestamp != nil {
			continue
		}
		if _, err := s.c.st.Delete(ctx, "replicasets", rs.Namespace, rs.Name, 0); err != nil && !client.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete old replicaset %s: %w", rs.Name, err))
		}
	}
	return errors.Join(errs...)
}

func sortByRevision(rss []*manifests.ReplicaSet) {
	sortByCreation(rss)
	for i := 1; i < len(rss); i++ { // stable insertion sort by revision
		for j := i; j > 0 && Revision(rss[j]) < Revision(rss[j-1]); j-- {
			rss[j], rss[j-1] = rss[j-1], rss[j]
		}
	}
}

// syncRolloutStatus writes status with the Progressing condition and
// requeues the Deployment to check its progress deadline.
func (s *syncer) syncRolloutStatus(ctx context.Context, allRSs []*manifests.ReplicaSet, newRS *manifests.ReplicaSet) error {
	d := s.d
	st := s.calculateStatus(allRSs, newRS)
	if !hasProgressDeadline(d) {
		removeCondition(&st, manifests.DeploymentProgressing)
	}
	cur := getCondition(&d.Status, manifests.DeploymentProgressing)
	complete := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == ReasonNewReplicaSetAvailable
	now := s.c.now()
	if hasProgressDeadline(d) && !complete {
		switch {
		case DeploymentComplete(d, &st):
			msg := fmt.Sprintf("Deployment %q has successfully progressed.", d.Name)
			if newRS != nil {
				msg = fmt.Sprintf("ReplicaSet %q has successfully progressed.", newRS.Name)
			}
			setCondition(&st, newCondition(manifests.DeploymentProgressing, manifests.ConditionTrue, ReasonNewReplicaSetAvailable, msg, now))
		case heldAtPartition(d, newRS):
			// Waiting for the Rollout to raise the partition, as if
			// paused: the progress deadline does not run meanwhile.
			setCondition(&st, newCondition(manifests.DeploymentProgressing, manifests.ConditionUnknown, ReasonDeploymentPartitioned, "Deployment is held at its rollout partition", now))
		case cur != nil && cur.Reason == ReasonDeploymentPartitioned:
			// Released: the deadline counts from now.
			msg := fmt.Sprintf("Deployment %q is progressing.", d.Name)
			if newRS != nil {
				msg = fmt.Sprintf("ReplicaSet %q is progressing.", newRS.Name)
			}
			setCondition(&st, newCondition(manifests.DeploymentProgressing, manifests.ConditionTrue, ReasonReplicaSetUpdated, msg, now))
		case deploymentProgressing(d, &st):
			msg := fmt.Sprintf("Deployment %q is progressing.", d.Name)
			if newRS != nil {
				msg = fmt.Sprintf("ReplicaSet %q is progressing.", newRS.Name)
			}
			c := newCondition(manifests.DeploymentProgressing, manifests.ConditionTrue, ReasonReplicaSetUpdated, msg, now)
			if cur != nil {
				if cur.Status == manifests.ConditionTrue {
					c.LastTransitionTime = cur.LastTransitionTime
				}
				removeCondition(&st, manifests.DeploymentProgressing)
			}
			setCondition(&st, c)
		case deploymentTimedOut(d, &st, now):
			msg := fmt.Sprintf("Deployment %q has timed out progressing.", d.Name)
			if newRS != nil {
				msg = fmt.Sprintf("ReplicaSet %q has timed out progressing.", newRS.Name)
			}
			setCondition(&st, newCondition(manifests.DeploymentProgressing, manifests.ConditionFalse, ReasonProgressDeadlineExceed, msg, now))
		}
	}
	if f := replicaFailure(allRSs, newRS); f != nil {
		setCondition(&st, *f)
	} else {
		removeCondition(&st, manifests.DeploymentReplicaFailure)
	}
	if statusEqual(d.Status, st) {
		s.requeueStuck(st)
		return nil
	}
	s.d.Status = st
	if err := s.writeDeployment(ctx); err != nil {
		return err
	}
	s.requeueStuck(st)
	return nil
}

// replicaFailure surfaces the new (or else any) ReplicaSet's
// ReplicaFailure condition.
func replicaFailure(allRSs []*manifests.ReplicaSet, newRS *manifests.ReplicaSet) *manifests.DeploymentCondition {
	find := func(rs *manifests.ReplicaSet) *manifests.DeploymentCondition {
		for _, c := range rs.Status.Conditions {
			if c.Type == manifests.ReplicaSetReplicaFailure {
				return &manifests.DeploymentCondition{Type: manifests.DeploymentReplicaFailure, Status: c.Status, Reason: c.Reason, Message: c.Message,
					LastUpdateTime: c.LastTransitionTime, LastTransitionTime: c.LastTransitionTime}
			}
		}
		return nil
	}
	if newRS != nil {
		if c := find(newRS); c != nil {
			return c
		}
	}
	for _, rs := range allRSs {
		if c := find(rs); c != nil {
			return c
		}
	}
	return nil
}

// requeueStuck queues the Deployment for when its progress deadline
// passes, so that ProgressDeadlineExceeded is reported on time.
func (s *syncer) requeueStuck(st manifests.DeploymentStatus) {
	d := s.d
	c := getCondition(&st, manifests.DeploymentProgressing)
	if !hasProgressDeadline(d) || c == nil || c.Reason == ReasonNewReplicaSetAvailable || c.Reason == ReasonProgressDeadlineExceed || c.Reason == ReasonDeploymentPartitioned || DeploymentComplete(d, &st) {
		return
	}
	deadline := c.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second)
	after := deadline.Sub(s.c.now())
	key := controller.Key(d)
	if after <= 0 {
		s.c.queue.Add(key)
		return
	}
	s.c.queue.AddAfter(key, after+100*time.Millisecond)
}
