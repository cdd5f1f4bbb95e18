// Package daemonset is the DaemonSet controller: one pod per eligible node
// (nodeSelector, required node affinity, taints against the pod's
// tolerations plus the ones Kubernetes adds to daemon pods), placed by
// setting spec.nodeName directly (the scheduler is bypassed), replaced by
// RollingUpdate (maxUnavailable) or OnDelete when the template changes,
// with Kubernetes' status counters.
package daemonset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/scheduler"
	"github.com/edgeorch/edgeorch/manifests"
)

// Name is the controller's name, the source of its events.
const Name = "daemonset-controller"

// Labels the controller puts on its pods.
const (
	// RevisionHashLabel holds the hash of the template a pod was made from.
	RevisionHashLabel = "controller-revision-hash"
	// TemplateGenerationLabel holds the DaemonSet generation a pod was made at.
	TemplateGenerationLabel = "pod-template-generation"
)

// Event reasons (Kubernetes').
const (
	EventSuccessfulCreate = "SuccessfulCreate"
	EventSuccessfulDelete = "SuccessfulDelete"
	EventFailedCreate     = "FailedCreate"
	EventFailedDelete     = "FailedDelete"
	EventFailedDaemonPod  = "FailedDaemonPod"
)

// Taints daemon pods tolerate automatically (besides the pod's own
// tolerations), as Kubernetes adds them, plus the edge unreachable taint.
var automaticTolerations = []manifests.Toleration{
	{Key: "node.kubernetes.io/not-ready", Operator: "Exists", Effect: scheduler.TaintEffectNoExecute},
	{Key: "node.kubernetes.io/unreachable", Operator: "Exists", Effect: scheduler.TaintEffectNoExecute},
	{Key: "node.edge.io/unreachable", Operator: "Exists", Effect: scheduler.TaintEffectNoExecute},
	{Key: "node.kubernetes.io/disk-pressure", Operator: "Exists", Effect: scheduler.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/memory-pressure", Operator: "Exists", Effect: scheduler.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/pid-pressure", Operator: "Exists", Effect: scheduler.TaintEffectNoSchedule},
	{Key: scheduler.TaintUnschedulable, Operator: "Exists", Effect: scheduler.TaintEffectNoSchedule},
}

// maxCreateBatch bounds the pod creates in flight at once.
const maxCreateBatch = 500

// expectTimeout bounds how long a create or delete the pod cache does not
// show yet is assumed to be under way.
const expectTimeout = time.Minute

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

// PodLister is the pods' cache, which also lists the pods of one
// controller without going over every pod.
type PodLister interface {
	Lister
	ListControlledBy(uid string) []manifests.Object
}

// Recorder records events.
type Recorder interface {
	Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error
}

// Controller reconciles DaemonSets.
type Controller struct {
	st    Store
	dsets Lister
	pods  PodLister
	nodes Lister
	rec   Recorder
	// async records events in the background under Run, so that the
	// creates for a fleet do not wait, one after another, for their
	// SuccessfulCreate events (at 10,000 nodes that held the DaemonSet at
	// ~40 pods/s).
	async atomic.Pointer[events.AsyncRecorder]
	queue *controller.Queue
	now   func() time.Time

	mu sync.Mutex
	// Creates and deletes of earlier syncs the pod cache may not show
	// yet, by DaemonSet key: nodes given a pod, and uids of deleted pods.
	adds    map[string]map[string]time.Time
	deletes map[string]map[string]time.Time
}

// New returns a controller over the given caches. Register DSChanged,
// PodChanged and NodeChanged as the caches' handlers.
func New(st Store, dsets Lister, pods PodLister, nodes Lister, rec Recorder) *Controller {
	return &Controller{
		st: st, dsets: dsets, pods: pods, nodes: nodes, rec: rec,
		queue: controller.NewQueue(50*time.Millisecond, 30*time.Second),
		now:   time.Now,
		adds:  map[string]map[string]time.Time{}, deletes: map[string]map[string]time.Time{},
	}
}

// SetClock replaces the clock (tests).
func (c *Controller) SetClock(now func() time.Time) { c.now = now }

// Run syncs with workers workers until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) {
	if b, ok := c.rec.(interface {
		Async(ctx context.Context) *events.AsyncRecorder
	}); ok {
		c.async.Store(b.Async(ctx))
		defer c.async.Store(nil)
	}
	controller.RunWorkers(ctx, c.queue, workers, c.Sync)
}

// DSChanged queues a changed DaemonSet.
func (c *Controller) DSChanged(old, cur manifests.Object) { c.queue.AddObject(old, cur) }

// PodChanged queues the DaemonSet controlling a changed pod.
func (c *Controller) PodChanged(old, cur manifests.Object) {
	c.queue.AddControllerOf("DaemonSet", old, cur)
}

// NodeChanged queues every DaemonSet when a node comes, goes or changes
// its readiness, and, when it changes its labels or spec, the DaemonSets
// whose pods that change lets on or off the node (as Kubernetes: a label
// given to 1,000 nodes does not sync every DaemonSet 1,000 times over
// every node).
func (c *Controller) NodeChanged(old, cur manifests.Object) {
	on, _ := old.(*manifests.Node)
	nn, _ := cur.(*manifests.Node)
	if on != nil && nn != nil && scheduler.IsNodeReady(on) == scheduler.IsNodeReady(nn) {
		if manifests.EqualJSON(on.Labels, nn.Labels) && manifests.EqualJSON(on.Spec, nn.Spec) {
			return
		}
		for _, o := range c.dsets.List(manifests.Selector{}) {
			probe := fitProbe(o.(*manifests.DaemonSet))
			r0, c0 := nodeFit(probe, on)
			r1, c1 := nodeFit(probe, nn)
			if r0 != r1 || c0 != c1 {
				c.queue.Add(controller.Key(o))
			}
		}
		return
	}
	for _, o := range c.dsets.List(manifests.Selector{}) {
		c.queue.Add(controller.Key(o))
	}
}

// fitProbe is what nodeFit reads of ds's pods: the template's spec with
// the automatic daemon tolerations (NewPod without the copies and the
// template hash).
func fitProbe(ds *manifests.DaemonSet) *manifests.Pod {
	p := &manifests.Pod{Spec: ds.Spec.Template.Spec}
	p.Spec.Tolerations = slices.Clone(p.Spec.Tolerations) // addTolerations appends
	addTolerations(p)
	return p
}

// TemplateHash is the controller-revision-hash of a template.
func TemplateHash(t *manifests.PodTemplateSpec) string {
	raw, _ := json.Marshal(t)
	h := fnv.New32a()
	h.Write(raw)
	return strconv.FormatUint(uint64(h.Sum32()), 36)
}

// nodeFit says what a node is for a DaemonSet: whether a new daemon pod
// belongs there (shouldRun: selector, affinity, NoSchedule and NoExecute
// taints) and whether one already there may stay (shouldContinue:
// selector, affinity and NoExecute taints only), as Kubernetes decides.
func nodeFit(pod *manifests.Pod, node *manifests.Node) (shouldRun, shouldContinue bool) {
	if !scheduler.MatchesNodeSelector(pod, node) {
		return false, false
	}
	shouldRun, shouldContinue = true, true
	for _, t := range node.Spec.Taints {
		if scheduler.Tolerates(pod.Spec.Tolerations, t) {
			continue
		}
		switch t.Effect {
		case scheduler.TaintEffectNoExecute:
			return false, false
		case scheduler.TaintEffectNoSchedule:
			shouldRun = false
		}
	}
	if node.Spec.Unschedulable && !scheduler.Tolerates(pod.Spec.Tolerations, manifests.Taint{Key: scheduler.TaintUnschedulable, Effect: scheduler.TaintEffectNoSchedule}) {
		shouldRun = false
	}
	return shouldRun, shouldContinue
}

// NewPod returns the daemon pod of ds for node.
func NewPod(ds *manifests.DaemonSet, node, hash string) (*manifests.Pod, error) {
	ref, err := manifests.NewControllerRef(ds)
	if err != nil {
		return nil, err
	}
	t := ds.Spec.Template
	spec := manifests.DeepCopy(&manifests.Pod{Spec: t.Spec}).(*manifests.Pod).Spec
	labels := map[string]string{}
	for k, v := range t.Labels {
		labels[k] = v
	}
	labels[RevisionHashLabel] = hash
	labels[TemplateGenerationLabel] = strconv.FormatInt(ds.Generation, 10)
	var ann map[string]string
	if len(t.Annotations) > 0 {
		ann = map[string]string{}
		for k, v := range t.Annotations {
			ann[k] = v
		}
	}
	pod := &manifests.Pod{
		TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{
			GenerateName:    ds.Name + "-",
			Namespace:       ds.Namespace,
			Labels:          labels,
			Annotations:     ann,
			OwnerReferences: []manifests.OwnerReference{ref},
		},
		Spec: spec,
	}
	addTolerations(pod)
	pod.Spec.NodeName = node
	manifests.Default(pod)
	pod.Status.Phase = manifests.PodPending
	return pod, nil
}

// addTolerations adds the automatic daemon tolerations pod lacks.
func addTolerations(pod *manifests.Pod) {
	for _, t := range automaticTolerations {
		have := false
		for _, o := range pod.Spec.Tolerations {
			if o.Key == t.Key && o.Effect == t.Effect && o.Operator == t.Operator && o.TolerationSeconds == nil {
				have = true
			}
		}
		if !have {
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, t)
		}
	}
}

// Sync reconciles the DaemonSet under key.
func (c *Controller) Sync(ctx context.Context, key string) error {
	o, ok := c.dsets.Get(key)
	if !ok {
		c.forget(key)
		return nil
	}
	ds := o.(*manifests.DaemonSet)
	if ds.DeletionTimestamp != nil {
		return nil
	}
	now := c.now()
	hash := TemplateHash(&ds.Spec.Template)
	probe, err := NewPod(ds, "", hash)
	if err != nil {
		return fmt.Errorf("daemonset %s: %w", key, err)
	}
	byNode := c.podsByNode(key, ds)
	pendingAdds := c.pendingAdds(key, byNode, now)

	var nodes []*manifests.Node
	for _, o := range c.nodes.List(manifests.Selector{}) {
		nodes = append(nodes, o.(*manifests.Node))
	}
	known := map[string]bool{}
	var create []string
	var del []*manifests.Pod
	var errs []error
	st := manifests.DaemonSetStatus{ObservedGeneration: ds.Generation}
	// Nodes where a daemon pod should be, with the pod there (nil when
	// none yet), for the rolling update.
	type slot struct {
		node string
		pod  *manifests.Pod
	}
	var desired []slot
	for _, n := range nodes {
		known[n.Name] = true
		shouldRun, shouldContinue := nodeFit(probe, n)
		pods := byNode[n.Name]
		_, adding := pendingAdds[n.Name]
		// Failed daemon pods are deleted and replaced.
		var live []*manifests.Pod
		for _, p := range pods {
			if p.Status.Phase == manifests.PodFailed {
				del = append(del, p)
				c.event(ctx, ds, manifests.EventWarning, EventFailedDaemonPod, "Found failed daemon pod %s/%s on node %s, will try to kill it", p.Namespace, p.Name, n.Name)
				continue
			}
			live = append(live, p)
		}
		switch {
		case shouldRun || (shouldContinue && len(live) > 0):
			if len(live) == 0 && !adding { // only when shouldRun
				create = append(create, n.Name)
				desired = append(desired, slot{node: n.Name})
				st.DesiredNumberScheduled++
				continue
			}
			st.DesiredNumberScheduled++
			st.CurrentNumberScheduled++
			if len(live) == 0 { // created, not in the cache yet
				st.UpdatedNumberScheduled++
				desired = append(desired, slot{node: n.Name})
				continue
			}
			// Keep one pod: the newest of the current revision, else the oldest.
			sort.Slice(live, func(i, j int) bool { return keepFirst(live[i], live[j], hash) })
			keep := live[0]
			del = append(del, live[1:]...)
			desired = append(desired, slot{node: n.Name, pod: keep})
			if keep.Labels[RevisionHashLabel] == hash {
				st.UpdatedNumberScheduled++
			}
			if manifests.IsPodReady(keep) {
				st.NumberReady++
			}
			if manifests.IsPodAvailable(keep, ds.Spec.MinReadySeconds, now) {
				st.NumberAvailable++
			}
		default:
			if len(live) > 0 {
				st.NumberMisscheduled++
				del = append(del, live...)
			}
		}
	}
	// Pods on nodes that no longer exist.
	for node, pods := range byNode {
		if !known[node] {
			del = append(del, pods...)
		}
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable

	// Rolling update: replace old-revision pods on at most maxUnavailable
	// nodes at a time, counting the nodes already unavailable.
	if ds.Spec.UpdateStrategy.Type != manifests.OnDeleteDaemonSetStrategyType {
		maxUnavailable := 1
		if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
			n, err := manifests.ScaledValueFromIntOrPercent(ru.MaxUnavailable, int(st.DesiredNumberScheduled), true)
			if err != nil {
				errs = append(errs, fmt.Errorf("daemonset %s: maxUnavailable: %w", key, err))
			} else {
				maxUnavailable = max(n, 1)
			}
		}
		unavailable := 0
		for _, s := range desired {
			if s.pod == nil || !manifests.IsPodAvailable(s.pod, ds.Spec.MinReadySeconds, now) {
				unavailable++
			}
		}
		for _, s := range desired {
			if s.pod == nil || s.pod.Labels[RevisionHashLabel] == hash {
				continue
			}
			if !manifests.IsPodAvailable(s.pod, ds.Spec.MinReadySeconds, now) {
				del = append(del, s.pod) // already unavailable: no budget needed
				continue
			}
			if unavailable < maxUnavailable {
				del = append(del, s.pod)
				unavailable++
			}
		}
	}

	// Creates go out in batches growing from 1 and doubling while every
	// create succeeds (as the ReplicaSet's do, and Kubernetes' DaemonSet
	// controller's): a fleet of 10,000 nodes gets its pods from many
	// writes in flight, which the store commits in groups, and a create
	// that fails (quota, invalid template) fails once, not once per node.
	// Nodes left by a failed batch are created on the retry.
	var next atomic.Int64
	if _, err := controller.SlowStartBatchMax(len(create), 1, maxCreateBatch, func() error {
		return c.createPod(ctx, key, ds, create[next.Add(1)-1], hash)
	}); err != nil {
		errs = append(errs, err)
	}
	for _, p := range dedupe(del) {
		if err := c.deletePod(ctx, key, ds, p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.updateStatus(ctx, ds, st); err != nil {
		errs = append(errs, err)
	}
	if ds.Spec.MinReadySeconds > 0 && st.NumberReady != st.NumberAvailable {
		c.queue.AddAfter(key, time.Duration(ds.Spec.MinReadySeconds)*time.Second)
	}
	return errors.Join(errs...)
}

// keepFirst orders the pods of one node: current revision first, then
// ready ones, then the oldest.
func keepFirst(a, b *manifests.Pod, hash string) bool {
	ah, bh := a.Labels[RevisionHashLabel] == hash, b.Labels[RevisionHashLabel] == hash
	if ah != bh {
		return ah
	}
	ar, br := manifests.IsPodReady(a), manifests.IsPodReady(b)
	if ar != br {
		return ar
	}
	if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
		return a.CreationTimestamp.Before(b.CreationTimestamp)
	}
	return a.Name < b.Name
}

func dedupe(pods []*manifests.Pod) []*manifests.Pod {
	seen := map[string]bool{}
	var out []*manifests.Pod
	for _, p := range pods {
		if !seen[p.UID] {
			seen[p.UID] = true
			out = append(out, p)
		}
	}
	return out
}

// podsByNode returns the pods ds controls by node, leaving out pods being
// deleted and those this controller deleted that the cache still shows.
func (c *Controller) podsByNode(key string, ds *manifests.DaemonSet) map[string][]*manifests.Pod {
	c.mu.Lock()
	deleted := c.deletes[key]
	c.mu.Unlock()
	out := map[string][]*manifests.Pod{}
	gone := map[string]bool{}
	for _, o := range c.pods.ListControlledBy(ds.UID) {
		p := o.(*manifests.Pod)
		if p.Namespace != ds.Namespace {
			continue
		}
		ref := manifests.GetControllerOf(p)
		if ref == nil || ref.UID != ds.UID || p.DeletionTimestamp != nil {
			continue
		}
		c.mu.Lock()
		_, del := deleted[p.UID]
		c.mu.Unlock()
		if del {
			gone[p.UID] = true
			continue
		}
		out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p)
	}
	// Forget deletes the cache shows done.
	c.mu.Lock()
	for uid := range c.deletes[key] {
		if !gone[uid] {
			delete(c.deletes[key], uid)
		}
	}
	c.mu.Unlock()
	return out
}

// pendingAdds returns the nodes given a pod the cache does not show yet,
// forgetting those it shows and those that timed out.
func (c *Controller) pendingAdds(key string, byNode map[string][]*manifests.Pod, now time.Time) map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]time.Time{}
	for node, at := range c.adds[key] {
		if len(byNode[node]) > 0 || now.Sub(at) > expectTimeout {
			delete(c.adds[key], node)
			continue
		}
		out[node] = at
	}
	return out
}

func (c *Controller) forget(key string) {
	c.mu.Lock()
	delete(c.adds, key)
	delete(c.deletes, key)
	c.mu.Unlock()
}

func (c *Controller) createPod(ctx context.Context, key string, ds *manifests.DaemonSet, node, hash string) error {
	pod, err := NewPod(ds, node, hash)
	if err != nil {
		return err
	}
	created, err := c.st.Create(ctx, pod)
	if err != nil {
		c.event(ctx, ds, manifests.EventWarning, EventFailedCreate, "Error creating: %v", err)
		return fmt.Errorf("create daemon pod of %s on %s: %w", ds.Name, node, err)
	}
	c.mu.Lock()
	if c.adds[key] == nil {
		c.adds[key] = map[string]time.Time{}
	}
	c.adds[key][node] = c.now()
	c.mu.Unlock()
	c.event(ctx, ds, manifests.EventNormal, EventSuccessfulCreate, "Created pod: %s", created.GetObjectMeta().Name)
	return nil
}

func (c *Controller) deletePod(ctx context.Context, key string, ds *manifests.DaemonSet, pod *manifests.Pod) error {
	_, err := c.st.Delete(ctx, "pods", pod.Namespace, pod.Name, 0)
	if err != nil && !client.IsNotFound(err) {
		c.event(ctx, ds, manifests.EventWarning, EventFailedDelete, "Error deleting: %v", err)
		return fmt.Errorf("delete daemon pod %s: %w", pod.Name, err)
	}
	c.mu.Lock()
	if c.deletes[key] == nil {
		c.deletes[key] = map[string]time.Time{}
	}
	c.deletes[key][pod.UID] = c.now()
	c.mu.Unlock()
	if err == nil {
		c.event(ctx, ds, manifests.EventNormal, EventSuccessfulDelete, "Deleted pod: %s", pod.Name)
	}
	return nil
}

// updateStatus writes st unless the DaemonSet already has it.
func (c *Controller) updateStatus(ctx context.Context, ds *manifests.DaemonSet, st manifests.DaemonSetStatus) error {
	st.CollisionCount = ds.Status.CollisionCount
	st.Conditions = ds.Status.Conditions
	if manifests.EqualJSON(st, ds.Status) {
		return nil
	}
	cp := manifests.DeepCopy(ds).(*manifests.DaemonSet)
	cp.Status = st
	_, err := controller.UpdateFrom(ctx, c.st, cp, ds)
	return controller.StatusWriteError("daemonset "+ds.Name, err)
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
