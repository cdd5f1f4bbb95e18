// Package replicaset is the ReplicaSet controller: it keeps spec.replicas
// pods matching a ReplicaSet's selector and owned by it, adopting matching
// orphans and releasing pods that stop matching, and reports status.
package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/manifests"
)

// Name is the controller's name, the source of its events.
const Name = "replicaset-controller"

// Event reasons (Kubernetes').
const (
	EventSuccessfulCreate = "SuccessfulCreate"
	EventSuccessfulDelete = "SuccessfulDelete"
	EventFailedCreate     = "FailedCreate"
	EventFailedDelete     = "FailedDelete"
)

// BurstReplicas bounds the pods created or deleted by one sync.
const BurstReplicas = 500

// ExpectationsTimeout is how long a sync waits for the pod cache to show
// the pods it created or deleted before it acts again regardless.
const ExpectationsTimeout = 5 * time.Minute

// Store is what the controller needs of the object store.
type Store interface {
	Create(ctx context.Context, obj manifests.Object) (manifests.Object, error)
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

// backgroundRecorder is a recorder that can also record without waiting
// for the store (events.Recorder).
type backgroundRecorder interface {
	Async(ctx context.Context) *events.AsyncRecorder
}

// Controller reconciles ReplicaSets.
type Controller struct {
	st    Store
	rsets Lister
	pods  Lister
	rec   Recorder
	// async records events in the background under Run, so that a burst
	// of creates does not wait for their SuccessfulCreate events.
	async atomic.Pointer[events.AsyncRecorder]
	queue *controller.Queue
	now   func() time.Time

	mu     sync.Mutex
	expect map[string]*expectations // by ReplicaSet key
}

// expectations are the pods a sync created or deleted that the pod cache
// does not reflect yet; until it does, the next sync does not act on the
// (stale) pod count.
type expectations struct {
	uid     string
	adds    map[string]bool   // pod names created
	deletes map[string]string // pod name -> uid deleted
	since   time.Time
}

// New returns a controller over the given caches. Register RSChanged and
// PodChanged as the caches' handlers.
func New(st Store, rsets, pods Lister, rec Recorder) *Controller {
	return &Controller{
		st: st, rsets: rsets, pods: pods, rec: rec,
		queue:  controller.NewQueue(50*time.Millisecond, 30*time.Second),
		now:    time.Now,
		expect: map[string]*expectations{},
	}
}

// SetClock replaces the clock (tests).
func (c *Controller) SetClock(now func() time.Time) { c.now = now }

// Run syncs with workers workers until ctx is done. A recorder that can
// record in the background (events.Recorder) does so meanwhile.
func (c *Controller) Run(ctx context.Context, workers int) {
	if b, ok := c.rec.(backgroundRecorder); ok {
		c.async.Store(b.Async(ctx))
		defer c.async.Store(nil)
	}
	controller.RunWorkers(ctx, c.queue, workers, c.Sync)
}

// RSChanged queues a changed ReplicaSet.
func (c *Controller) RSChanged(old, cur manifests.Object) {
	if cur == nil {
		c.queue.Add(controller.Key(old))
		return
	}
	c.queue.Add(controller.Key(cur))
}

// PodChanged queues the ReplicaSets concerned by a pod change: its
// controller (old and new) or, for an orphan, every ReplicaSet that might
// adopt it.
func (c *Controller) PodChanged(old, cur manifests.Object) {
	for _, o := range []manifests.Object{old, cur} {
		if o == nil {
			continue
		}
		pod := o.(*manifests.Pod)
		if ref := manifests.GetControllerOf(pod); ref != nil {
			if ref.Kind == "ReplicaSet" {
				c.queue.Add(pod.Namespace + "/" + ref.Name)
			}
			continue
		}
		if cur == nil || o != cur {
			continue
		}
		for _, rs := range c.podReplicaSets(pod) {
			c.queue.Add(controller.Key(rs))
		}
	}
}

// podReplicaSets returns the ReplicaSets whose selector matches pod.
func (c *Controller) podReplicaSets(pod *manifests.Pod) []*manifests.ReplicaSet {
	var out []*manifests.ReplicaSet
	for _, o := range c.rsets.List(manifests.Selector{}) {
		rs := o.(*manifests.ReplicaSet)
		if rs.Namespace != pod.Namespace {
			continue
		}
		sel, err := manifests.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(pod.Labels) {
			continue
		}
		out = append(out, rs)
	}
	return out
}

// Sync reconciles the ReplicaSet under key: claims pods, creates or
// deletes pods towards spec.replicas, and writes status. A conflict (the
// cache was behind the store) is retried quietly.
func (c *Controller) Sync(ctx context.Context, key string) error {
	err := c.sync(ctx, key)
	if client.IsConflict(err) {
		return fmt.Errorf("%w: %w", controller.ErrRetry, err)
	}
	return err
}

func (c *Controller) sync(ctx context.Context, key string) error {
	o, ok := c.rsets.Get(key)
	if !ok {
		c.mu.Lock()
		delete(c.expect, key)
		c.mu.Unlock()
		return nil
	}
	rs := o.(*manifests.ReplicaSet)
	sel, err := manifests.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		return fmt.Errorf("replicaset %s: selector: %w", key, err)
	}
	pods, err := c.claimPods(ctx, rs, sel)
	if err != nil {
		return fmt.Errorf("replicaset %s: %w", key, err)
	}
	var active []*manifests.Pod
	for _, p := range pods {
		if manifests.IsPodActive(p) {
			active = append(active, p)
		}
	}
	var manageErr error
	if rs.DeletionTimestamp == nil && c.satisfied(key, rs.UID) {
		var deleted map[string]bool
		deleted, manageErr = c.manage(ctx, key, rs, active)
		// Status counts the pods that remain, not those just deleted.
		remaining := active[:0:0]
		for _, p := range active {
			if !deleted[p.Name] {
				remaining = append(remaining, p)
			}
		}
		active = remaining
	}
	status := CalculateStatus(rs, active, manageErr, c.now())
	if err := c.updateStatus(ctx, rs, status); err != nil {
		return errors.Join(manageErr, err)
	}
	if manageErr != nil {
		return manageErr
	}
	// Pods that are ready but not yet available become available later.
	if rs.Spec.MinReadySeconds > 0 && status.ReadyReplicas != status.AvailableReplicas {
		c.queue.AddAfter(key, time.Duration(rs.Spec.MinReadySeconds)*time.Second)
	}
	return nil
}

// claimPods returns the pods rs controls after adopting matching orphans
// and releasing owned pods that no longer match (Kubernetes'
// PodControllerRefManager).
func (c *Controller) claimPods(ctx context.Context, rs *manifests.ReplicaSet, sel manifests.Selector) ([]*manifests.Pod, error) {
	var out []*manifests.Pod
	var errs []error
	for _, o := range c.pods.List(manifests.Selector{}) {
		pod := o.(*manifests.Pod)
		if pod.Namespace != rs.Namespace {
			continue
		}
		matches := !sel.Empty() && sel.Matches(pod.Labels)
		ref := manifests.GetControllerOf(pod)
		switch {
		case ref != nil && ref.UID == rs.UID:
			if matches {
				out = append(out, pod)
				continue
			}
			if err := c.release(ctx, rs, pod); err != nil {
				errs = append(errs, err)
			}
		case ref == nil && matches && rs.DeletionTimestamp == nil && pod.DeletionTimestamp == nil:
			adopted, err := c.adopt(ctx, rs, pod)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, adopted)
		}
	}
	return out, errors.Join(errs...)
}

func (c *Controller) adopt(ctx context.Context, rs *manifests.ReplicaSet, pod *manifests.Pod) (*manifests.Pod, error) {
	ref, err := manifests.NewControllerRef(rs)
	if err != nil {
		return nil, err
	}
	cp := manifests.DeepCopy(pod).(*manifests.Pod)
	cp.OwnerReferences = append(cp.OwnerReferences, ref)
	got, err := c.st.Update(ctx, cp)
	if err != nil {
		if client.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("adopt pod %s: %w", pod.Name, err)
	}
	return got.(*manifests.Pod), nil
}

func (c *Controller) release(ctx context.Context, rs *manifests.ReplicaSet, pod *manifests.Pod) error {
	cp := manifests.DeepCopy(pod).(*manifests.Pod)
	refs := cp.OwnerReferences[:0]
	for _, r := range cp.OwnerReferences {
		if r.UID != rs.UID {
			refs = append(refs, r)
		}
	}
	cp.OwnerReferences = refs
	if _, err := c.st.Update(ctx, cp); err != nil && !client.IsNotFound(err) {
		return fmt.Errorf("release pod %s: %w", pod.Name, err)
	}
	return nil
}

// satisfied reports whether the pod cache reflects every create and
// delete of earlier syncs of the ReplicaSet under key.
func (c *Controller) satisfied(key, uid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.expect[key]
	if e == nil {
		return true
	}
	if e.uid != uid || c.now().Sub(e.since) > ExpectationsTimeout {
		delete(c.expect, key)
		return true
	}
	ns, _ := controller.SplitKey(key)
	for name := range e.adds {
		if _, ok := c.pods.Get(ns + "/" + name); ok {
			delete(e.adds, name)
		}
	}
	for name, puid := range e.deletes {
		if p, ok := c.pods.Get(ns + "/" + name); !ok || p.GetObjectMeta().UID != puid {
			delete(e.deletes, name)
		}
	}
	if len(e.adds) == 0 && len(e.deletes) == 0 {
		delete(c.expect, key)
		return true
	}
	return false
}

func (c *Controller) expectations(key, uid string) *expectations {
	e := c.expect[key]
	if e == nil || e.uid != uid {
		e = &expectations{uid: uid, adds: map[string]bool{}, deletes: map[string]string{}}
		c.expect[key] = e
	}
	e.since = c.now()
	return e
}

func (c *Controller) expectAdd(key, uid, name string) {
	c.mu.Lock()
	c.expectations(key, uid).adds[name] = true
	c.mu.Unlock()
}

func (c *Controller) expectDelete(key, uid string, pod *manifests.Pod) {
	c.mu.Lock()
	c.expectations(key, uid).deletes[pod.Name] = pod.UID
	c.mu.Unlock()
}

// manage creates or deletes pods so that rs has spec.replicas active
// pods. It returns the names of the pods it deleted.
func (c *Controller) manage(ctx context.Context, key string, rs *manifests.ReplicaSet, active []*manifests.Pod) (map[string]bool, error) {
	diff := len(active) - int(replicas(rs))
	switch {
	case diff < 0:
		n := min(-diff, BurstReplicas)
		_, err := controller.SlowStartBatch(n, 1, func() error { return c.createPod(ctx, key, rs) })
		return nil, err
	case diff > 0:
		n := min(diff, BurstReplicas)
		victims := PodsToDelete(active, n, c.now())
		var wg sync.WaitGroup
		errs := make([]error, len(victims))
		for i, pod := range victims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = c.deletePod(ctx, key, rs, pod)
			}()
		}
		wg.Wait()
		deleted := map[string]bool{}
		for i, pod := range victims {
			if errs[i] == nil {
				deleted[pod.Name] = true
			}
		}
		return deleted, errors.Join(errs...)
	}
	return nil, nil
}

func replicas(rs *manifests.ReplicaSet) int32 {
	if rs.Spec.Replicas == nil {
		return 1
	}
	return *rs.Spec.Replicas
}

// NewPod returns the pod rs creates from its template.
func NewPod(rs *manifests.ReplicaSet) (*manifests.Pod, error) {
	ref, err := manifests.NewControllerRef(rs)
	if err != nil {
		return nil, err
	}
	t := rs.Spec.Template
	pod := &manifests.Pod{
		TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{
			GenerateName:    rs.Name + "-",
			Namespace:       rs.Namespace,
			Labels:          copyMap(t.Labels),
			Annotations:     copyMap(t.Annotations),
			OwnerReferences: []manifests.OwnerReference{ref},
		},
	}
	// The template is shared (cached): give the pod its own copy.
	spec := manifests.DeepCopy(&manifests.Pod{Spec: t.Spec}).(*manifests.Pod).Spec
	pod.Spec = spec
	manifests.Default(pod)
	return pod, nil
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (c *Controller) createPod(ctx context.Context, key string, rs *manifests.ReplicaSet) error {
	pod, err := NewPod(rs)
	if err != nil {
		return err
	}
	created, err := c.st.Create(ctx, pod)
	if err != nil {
		c.event(ctx, rs, manifests.EventWarning, EventFailedCreate, "Error creating: %v", err)
		return fmt.Errorf("create pod for replicaset %s: %w", rs.Name, err)
	}
	name := created.GetObjectMeta().Name
	c.expectAdd(key, rs.UID, name)
	c.event(ctx, rs, manifests.EventNormal, EventSuccessfulCreate, "Created pod: %s", name)
	return nil
}

func (c *Controller) deletePod(ctx context.Context, key string, rs *manifests.ReplicaSet, pod *manifests.Pod) error {
	_, err := c.st.Delete(ctx, "pods", pod.Namespace, pod.Name, 0)
	if err != nil && !client.IsNotFound(err) {
		c.event(ctx, rs, manifests.EventWarning, EventFailedDelete, "Error deleting: %v", err)
		return fmt.Errorf("delete pod %s: %w", pod.Name, err)
	}
	c.expectDelete(key, rs.UID, pod)
	if err == nil {
		c.event(ctx, rs, manifests.EventNormal, EventSuccessfulDelete, "Deleted pod: %s", pod.Name)
	}
	return nil
}

func (c *Controller) event(ctx context.Context, obj manifests.Object, typ, reason, format string, args ...any) {
	var rec Recorder = c.rec
	if a := c.async.Load(); a != nil {
		rec = a
	}
	if rec == nil {
		return
	}
	if err := rec.Eventf(ctx, obj, typ, reason, format, args...); err != nil {
		slog.WarnContext(ctx, "record event", "reason", reason, "err", err)
	}
}

// PodsToDelete picks n of pods to delete, the least useful first:
// unscheduled before scheduled, pending before unknown before running,
// not ready before ready, ready for less time before more, more restarts
// before fewer, newer before older (Kubernetes' ActivePods order).
func PodsToDelete(pods []*manifests.Pod, n int, now time.Time) []*manifests.Pod {
	sorted := append([]*manifests.Pod(nil), pods...)
	sort.SliceStable(sorted, func(i, j int) bool { return deleteFirst(sorted[i], sorted[j]) })
	if n > len(sorted) {
		n = len(sorted)
	}
	return sorted[:n]
}

var phaseRank = map[string]int{manifests.PodPending: 0, "": 0, manifests.PodUnknown: 1, manifests.PodRunning: 2}

func deleteFirst(a, b *manifests.Pod) bool {
	if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if ra, rb := phaseRank[a.Status.Phase], phaseRank[b.Status.Phase]; ra != rb {
		return ra < rb
	}
	ar, br := manifests.IsPodReady(a), manifests.IsPodReady(b)
	if ar != br {
		return !ar
	}
	if ar && br {
		ta, tb := manifests.GetPodReadyCondition(a).LastTransitionTime, manifests.GetPodReadyCondition(b).LastTransitionTime
		if !ta.Equal(tb) {
			return ta.After(tb) // ready for less time first
		}
	}
	if ra, rb := restarts(a), restarts(b); ra != rb {
		return ra > rb
	}
	ca, cb := a.CreationTimestamp, b.CreationTimestamp
	if !ca.Equal(cb) {
		return ca.After(cb)
	}
	return a.Name > b.Name
}

func restarts(p *manifests.Pod) int32 {
	var n int32
	for _, s := range p.Status.ContainerStatuses {
		n = max(n, s.RestartCount)
	}
	return n
}

// CalculateStatus returns rs's status for its active pods.
func CalculateStatus(rs *manifests.ReplicaSet, active []*manifests.Pod, manageErr error, now time.Time) manifests.ReplicaSetStatus {
	s := manifests.ReplicaSetStatus{ObservedGeneration: rs.Generation}
	tmpl := manifests.SelectorFromSet(rs.Spec.Template.Labels)
	for _, p := range active {
		s.Replicas++
		if tmpl.Matches(p.Labels) {
			s.FullyLabeledReplicas++
		}
		if manifests.IsPodReady(p) {
			s.ReadyReplicas++
			if manifests.IsPodAvailable(p, rs.Spec.MinReadySeconds, now) {
				s.AvailableReplicas++
			}
		}
	}
	// ReplicaFailure is True while creating or deleting pods fails.
	var prev *manifests.ReplicaSetCondition
	for i := range rs.Status.Conditions {
		if rs.Status.Conditions[i].Type == manifests.ReplicaSetReplicaFailure {
			prev = &rs.Status.Conditions[i]
		}
	}
	if manageErr != nil {
		reason := "FailedCreate"
		if s.Replicas > replicas(rs) {
			reason = "FailedDelete"
		}
		c := manifests.ReplicaSetCondition{Type: manifests.ReplicaSetReplicaFailure, Status: manifests.ConditionTrue, Reason: reason, Message: manageErr.Error(), LastTransitionTime: now}
		if prev != nil && prev.Status == c.Status {
			c.LastTransitionTime = prev.LastTransitionTime
		}
		s.Conditions = []manifests.ReplicaSetCondition{c}
	}
	return s
}

func (c *Controller) updateStatus(ctx context.Context, rs *manifests.ReplicaSet, status manifests.ReplicaSetStatus) error {
	if reflect.DeepEqual(normalize(rs.Status), normalize(status)) {
		return nil
	}
	cp := manifests.DeepCopy(rs).(*manifests.ReplicaSet)
	cp.Status = status
	if _, err := controller.UpdateFrom(ctx, c.st, cp, rs); err != nil {
		if client.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("update status of replicaset %s: %w", rs.Name, err)
	}
	return nil
}

// normalize makes statuses that encode the same comparable (time
// precision, empty vs nil slices).
func normalize(s manifests.ReplicaSetStatus) manifests.ReplicaSetStatus {
	if len(s.Conditions) == 0 {
		s.Conditions = nil
	}
	cs := make([]manifests.ReplicaSetCondition, len(s.Conditions))
	for i, c := range s.Conditions {
		c.LastTransitionTime = c.LastTransitionTime.Truncate(time.Second).UTC()
		cs[i] = c
	}
	if len(cs) > 0 {
		s.Conditions = cs
	}
	return s
}
