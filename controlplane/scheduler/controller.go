package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/manifests"
)

// Name is the scheduler's name: pods with this spec.schedulerName (or
// none) are scheduled by it. It is also the source of its events.
const Name = "default-scheduler"

// Event reasons.
const (
	EventScheduled        = "Scheduled"
	EventFailedScheduling = "FailedScheduling"
	ReasonUnschedulable   = "Unschedulable"
)

// Store is what the scheduler needs of the object store.
type Store interface {
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
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

// Binders is how many bindings the controller writes at once (Run). With
// many writes in flight the store commits them in batches, one disk sync
// for many (controlplane/store/commit.go), and the more writes wait, the
// fuller the batches: `go test -bench BenchmarkBind1000Synced` bound
// 2,340–2,637 pods/s with 64 binders, 2,828–3,742 with 128, 3,572–4,662
// with 256 and 4,896–5,890 with 512 on the 2-core machine; in the scale
// harness (1,000 simulated agents on the same 2 cores) 1,000 pending pods
// bound at 569–737 /s with 64 and 1,783–2,031 /s with 512.
const Binders = 512

// backgroundRecorder is a recorder that can also record without waiting
// for the store (events.Recorder).
type backgroundRecorder interface {
	Async(ctx context.Context) *events.AsyncRecorder
}

// Controller binds unscheduled pods to nodes. Decisions are sequential
// (one worker, each seeing the previous bindings); under Run the writes
// of the bindings are not: the decision is assumed at once and a pool of
// binders writes it, as the Kubernetes scheduler's binding cycle does.
type Controller struct {
	st    Store
	pods  Lister
	nodes Lister
	rec   Recorder
	// async records events in the background under Run: a binder writes
	// the binding, not its Scheduled event too.
	async atomic.Pointer[events.AsyncRecorder]
	queue *controller.Queue
	now   func() time.Time
	binds chan bindJob // nil: Sync writes the binding itself

	mu sync.Mutex
	// infos holds, by node name, the node and the pods bound to it, fed
	// by PodChanged and NodeChanged; order lists those with a node,
	// sorted by name (nil when it must be rebuilt).
	infos       map[string]*nodeInfo
	order       []*nodeInfo
	nodesListed bool
	// podNode is the node each counted pod is counted on.
	podNode map[string]string
	// assumed holds pods bound (or being bound) by this scheduler that the
	// pod cache does not show bound yet, so that the next decision counts
	// them.
	assumed map[string]*manifests.Pod
	// unfit holds the pods no node fitted at their last decision:
	// a node or pod change moves them back to the queue. (Other pending
	// pods are queued.)
	unfit map[string]bool
	// marking holds the Unschedulable condition message being written
	// by a binder for each pod (Run), so that a pod decided again before
	// the write is in the cache is not written twice.
	marking map[string]string
	// next is where the next decision starts filtering nodes.
	next int
	// selected caches, by selectorKey, the nodes (in order) a pod's
	// nodeSelector matches, and selNext where the next decision among
	// them starts: a decision for a pod that only a few nodes' labels
	// admit filters those few rather than every node (20 of 10,000 took
	// a full scan, ~1.4 ms a decision at 4,000 nodes). Both are dropped
	// when a node comes, goes or changes its labels.
	selected map[string][]*nodeInfo
	selNext  map[string]int
	// vols resolves the PersistentVolumeClaims of pods (volumes.go); nil
	// until SetVolumeListers.
	vols *volumes
}

type bindJob struct {
	key     string
	pod     *manifests.Pod // the cached, unbound pod
	assumed *manifests.Pod // the binding, counted in infos
	// unfit, instead of a binding: the pod with its Unschedulable
	// condition, and why no node fits.
	unfit  *manifests.Pod
	fitErr string
}

// NewController returns a scheduler reading pods and nodes from the given
// caches. Register PodChanged and NodeChanged as their handlers.
func NewController(st Store, pods, nodes Lister, rec Recorder) *Controller {
	return &Controller{
		st: st, pods: pods, nodes: nodes, rec: rec,
		queue:   controller.NewQueue(100*time.Millisecond, 30*time.Second),
		now:     time.Now,
		infos:   map[string]*nodeInfo{},
		podNode: map[string]string{},
		assumed: map[string]*manifests.Pod{},
		unfit:   map[string]bool{},
		marking: map[string]string{},
	}
}

// Run schedules pods with one worker, and writes the bindings (and the
// Unschedulable conditions) with Binders goroutines, until ctx is done. A
// recorder that can record in the background (events.Recorder) does so
// meanwhile.
func (c *Controller) Run(ctx context.Context) {
	if b, ok := c.rec.(backgroundRecorder); ok {
		c.async.Store(b.Async(ctx))
		defer c.async.Store(nil)
	}
	c.binds = make(chan bindJob, 4*Binders)
	var wg sync.WaitGroup
	for range Binders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-c.binds:
					if j.unfit != nil {
						c.markUnschedulable(ctx, j)
						continue
					}
					c.bindAssumed(ctx, j)
				}
			}
		}()
	}
	controller.RunWorkers(ctx, c.queue, 1, c.Sync)
	wg.Wait()
}

// needsScheduling reports whether this scheduler should place pod.
func needsScheduling(pod *manifests.Pod) bool {
	if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		return false
	}
	if pod.Spec.SchedulerName != "" && pod.Spec.SchedulerName != Name {
		return false
	}
	return !ended(pod)
}

// PodChanged is the pod informer's handler.
func (c *Controller) PodChanged(old, new manifests.Object) {
	np, _ := new.(*manifests.Pod)
	op, _ := old.(*manifests.Pod)
	switch {
	case np == nil: // deleted: its resources are free
		if op == nil {
			return
		}
		key := controller.Key(op)
		c.mu.Lock()
		delete(c.unfit, key)
		delete(c.assumed, key)
		delete(c.marking, key)
		freed := c.unplaceLocked(key)
		c.mu.Unlock()
		if freed || op.Spec.NodeName != "" {
			c.requeuePending()
		}
	case needsScheduling(np):
		key := controller.Key(np)
		c.queue.Add(key)
	default:
		key := controller.Key(np)
		c.mu.Lock()
		delete(c.unfit, key)
		if np.Spec.NodeName != "" {
			delete(c.assumed, key) // the cache shows it bound now
		}
		if np.Spec.NodeName != "" && !ended(np) {
			c.placeLocked(key, np)
		} else if _, ok := c.assumed[key]; !ok {
			c.unplaceLocked(key)
		}
		c.mu.Unlock()
		if ended(np) && (op == nil || !ended(op)) {
			c.requeuePending()
		}
	}
}

func ended(p *manifests.Pod) bool {
	return p.Status.Phase == manifests.PodSucceeded || p.Status.Phase == manifests.PodFailed
}

// NodeChanged is the node informer's handler: a new node, or a change of
// what the filters read, may let an unschedulable pod fit. (A heartbeat, which
// only moves the Ready condition's lastHeartbeatTime, does not.)
func (c *Controller) NodeChanged(old, new manifests.Object) {
	nn, _ := new.(*manifests.Node)
	on, _ := old.(*manifests.Node)
	c.mu.Lock()
	if nn == nil {
		if on != nil {
			if ni := c.infos[on.Name]; ni != nil {
				ni.setNode(nil)
				if len(ni.pods) == 0 {
					delete(c.infos, on.Name)
				}
				c.order = nil
				c.selected, c.selNext = nil, nil
			}
		}
		c.mu.Unlock()
		return
	}
	ni := c.infos[nn.Name]
	if ni == nil {
		ni = &nodeInfo{}
		c.infos[nn.Name] = ni
	}
	if ni.node == nil {
		c.order = nil
	}
	if on == nil || ni.node == nil || !maps.Equal(on.Labels, nn.Labels) {
		c.selected, c.selNext = nil, nil
	}
	ni.setNode(nn)
	c.mu.Unlock()
	if schedulingChanged(on, nn) {
		c.requeuePending()
	}
}

// schedulingChanged reports whether a filter or score may judge new
// differently from old.
func schedulingChanged(old, new *manifests.Node) bool {
	if old == nil {
		return true
	}
	return IsNodeReady(old) != IsNodeReady(new) ||
		old.Spec.Unschedulable != new.Spec.Unschedulable ||
		!maps.Equal(old.Labels, new.Labels) ||
		!slices.Equal(old.Spec.Taints, new.Spec.Taints) ||
		!maps.Equal(old.Status.Allocatable, new.Status.Allocatable) ||
		!maps.Equal(old.Status.Capacity, new.Status.Capacity) ||
		!slices.EqualFunc(old.Status.RuntimeHandlers, new.Status.RuntimeHandlers, func(a, b manifests.NodeRuntimeHandler) bool { return a.Name == b.Name })
}

// requeuePending moves the pods no node fitted back to the queue. They
// leave unfit until a decision finds no node for them again, so that a
// burst of node changes (a label applied to 1,000 nodes) moves each pod
// once, not once per node.
func (c *Controller) requeuePending() {
	c.mu.Lock()
	if len(c.unfit) == 0 {
		c.mu.Unlock()
		return
	}
	keys := make([]string, 0, len(c.unfit))
	for k := range c.unfit {
		keys = append(keys, k)
	}
	clear(c.unfit)
	c.mu.Unlock()
	for _, k := range keys {
		c.queue.Add(k)
	}
}

// placeLocked counts pod (bound to pod.Spec.NodeName) under key, in place
// of what was counted under key before.
func (c *Controller) placeLocked(key string, pod *manifests.Pod) {
	c.unplaceLocked(key)
	ni := c.infos[pod.Spec.NodeName]
	if ni == nil {
		ni = &nodeInfo{}
		c.infos[pod.Spec.NodeName] = ni
	}
	ni.add(pod)
	c.podNode[key] = pod.Spec.NodeName
}

// unplaceLocked stops counting the pod under key and reports whether it
// was counted.
func (c *Controller) unplaceLocked(key string) bool {
	name, ok := c.podNode[key]
	if !ok {
		return false
	}
	delete(c.podNode, key)
	if ni := c.infos[name]; ni != nil {
		ns, n := controller.SplitKey(key)
		ni.remove(ns, n)
		if ni.node == nil && len(ni.pods) == 0 {
			delete(c.infos, name)
		}
	}
	return true
}

// nodesLocked returns the cached nodes, sorted by name, with their pods.
func (c *Controller) nodesLocked() []*nodeInfo {
	if !c.nodesListed {
		// The handlers keep infos up to date from here on.
		for _, o := range c.nodes.List(manifests.Selector{}) {
			if n, ok := o.(*manifests.Node); ok {
				ni := c.infos[n.Name]
				if ni == nil {
					ni = &nodeInfo{}
					c.infos[n.Name] = ni
				}
				ni.setNode(n)
			}
		}
		c.nodesListed, c.order = true, nil
	}
	if c.order == nil {
		order := make([]*nodeInfo, 0, len(c.infos))
		for _, ni := range c.infos {
			if ni.node != nil {
				order = append(order, ni)
			}
		}
		slices.SortFunc(order, func(a, b *nodeInfo) int { return strings.Compare(a.node.Name, b.node.Name) })
		c.order = order
		c.selected, c.selNext = nil, nil
	}
	return c.order
}

// Sync schedules the pod under key if it still needs it. It returns an
// error wrapping controller.ErrRetry when no node fits.
func (c *Controller) Sync(ctx context.Context, key string) error {
	obj, ok := c.pods.Get(key)
	if !ok {
		return nil
	}
	pod, ok := obj.(*manifests.Pod)
	if !ok || !needsScheduling(pod) {
		return nil
	}
	c.mu.Lock()
	if _, ok := c.assumed[key]; ok {
		c.mu.Unlock()
		return nil // bound by a binder, or being bound
	}
	var (
		node   string
		fitErr *FitError
		next   = c.next
	)
	if c.vols != nil && hasClaims(pod) { // volumes.go: only pods with claims
		var place *manifests.Pod
		if place, fitErr = c.vols.placement(pod, len(c.nodesLocked())); fitErr == nil {
			if node, fitErr, next = schedule(place, c.nodesLocked(), c.next); fitErr != nil {
				fitErr = volumeFitError(fitErr)
			} else {
				c.vols.chose(pod, node)
			}
		}
	} else if key := selectorKey(pod); key != "" && len(pod.Spec.TopologySpreadConstraints) == 0 {
		node, fitErr, next = c.scheduleSelectedLocked(pod, key)
	} else {
		node, fitErr, next = schedule(pod, c.nodesLocked(), c.next)
	}
	if fitErr != nil {
		c.unfit[key] = true
		if c.binds == nil {
			c.mu.Unlock()
			return c.unschedulable(ctx, pod, fitErr)
		}
		job, err := c.unschedulableJobLocked(key, pod, fitErr)
		c.mu.Unlock()
		if job != nil {
			select {
			case c.binds <- *job:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return err
	}
	c.next = next
	if c.binds == nil {
		c.mu.Unlock()
		return c.bind(ctx, pod, node)
	}
	cp, err := binding(pod, node, c.now())
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.assumed[key] = cp
	delete(c.unfit, key)
	c.placeLocked(key, cp)
	c.mu.Unlock()
	select {
	case c.binds <- bindJob{key: key, pod: pod, assumed: cp}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// scheduleSelectedLocked is schedule for a pod whose only node constraint
// is its nodeSelector (key, selectorKey): among the nodes the selector
// matches, cached by key. The nodes it does not match count as failing
// the selector in the FitError, as schedule would count them. It returns
// c.next unchanged (the rotation among the selected nodes is selNext).
func (c *Controller) scheduleSelectedLocked(pod *manifests.Pod, key string) (string, *FitError, int) {
	infos := c.nodesLocked()
	sub, ok := c.selected[key]
	if !ok {
		for _, ni := range infos {
			if ni.matchesSelector(pod, key) {
				sub = append(sub, ni)
			}
		}
		if c.selected == nil {
			c.selected, c.selNext = map[string][]*nodeInfo{}, map[string]int{}
		}
		c.selected[key] = sub
	}
	if len(sub) == len(infos) {
		return schedule(pod, infos, c.next)
	}
	node, fe, next := schedule(pod, sub, c.selNext[key])
	if fe != nil {
		if fe.Reasons == nil {
			fe.Reasons = map[string]int{}
		}
		fe.NumNodes = len(infos)
		fe.Reasons[ReasonAffinity] += len(infos) - len(sub)
		return "", fe, c.next
	}
	c.selNext[key] = next
	return node, nil, c.next
}

// binding returns a copy of pod bound to node.
func binding(pod *manifests.Pod, node string, now time.Time) (*manifests.Pod, error) {
	cp, err := controller.Copy(pod)
	if err != nil {
		return nil, err
	}
	cp.Spec.NodeName = node
	setCondition(&cp.Status, manifests.PodCondition{Type: manifests.PodScheduled, Status: manifests.ConditionTrue}, now)
	if cp.Status.Phase == "" {
		cp.Status.Phase = manifests.PodPending
	}
	return cp, nil
}

// bind writes pod's binding to node and then counts it.
func (c *Controller) bind(ctx context.Context, pod *manifests.Pod, node string) error {
	cp, err := binding(pod, node, c.now())
	if err != nil {
		return err
	}
	if _, err := c.st.Update(ctx, cp); err != nil {
		return fmt.Errorf("bind pod %s/%s to %s: %w", pod.Namespace, pod.Name, node, err)
	}
	key := controller.Key(cp)
	c.mu.Lock()
	c.assumed[key] = cp
	delete(c.unfit, key)
	c.placeLocked(key, cp)
	c.mu.Unlock()
	c.event(ctx, cp, manifests.EventNormal, EventScheduled, "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node)
	return nil
}

// bindAssumed writes a binding already counted. If the write fails the
// binding is forgotten and the pod queued again (the next decision reads
// the cache's newer copy of a pod changed meanwhile).
func (c *Controller) bindAssumed(ctx context.Context, j bindJob) {
	if _, err := controller.UpdateFrom(ctx, c.st, j.assumed, j.pod); err != nil {
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		if c.assumed[j.key] == j.assumed {
			delete(c.assumed, j.key)
			c.unplaceLocked(j.key)
		}
		c.mu.Unlock()
		if !client.IsConflict(err) && !client.IsNotFound(err) {
			slog.WarnContext(ctx, "bind pod, will retry", "pod", j.key, "node", j.assumed.Spec.NodeName, "err", err)
		}
		c.queue.AddRateLimited(j.key)
		return
	}
	c.queue.Forget(j.key)
	c.event(ctx, j.assumed, manifests.EventNormal, EventScheduled, "Successfully assigned %s/%s to %s", j.pod.Namespace, j.pod.Name, j.assumed.Spec.NodeName)
}

func (c *Controller) unschedulable(ctx context.Context, pod *manifests.Pod, fitErr *FitError) error {
	msg := fitErr.Error()
	if cp, err := unschedulablePod(pod, msg, c.now()); err != nil {
		return err
	} else if cp != nil {
		if _, err := c.st.Update(ctx, cp); err != nil {
			return fmt.Errorf("mark pod %s/%s unschedulable: %w", pod.Namespace, pod.Name, err)
		}
		c.event(ctx, pod, manifests.EventWarning, EventFailedScheduling, "%s", msg)
	}
	return fmt.Errorf("pod %s/%s: %s: %w", pod.Namespace, pod.Name, msg, controller.ErrRetry)
}

// unschedulablePod returns a copy of pod with its PodScheduled condition
// False, reason Unschedulable, message msg; nil if pod has it already.
func unschedulablePod(pod *manifests.Pod, msg string, now time.Time) (*manifests.Pod, error) {
	want := manifests.PodCondition{Type: manifests.PodScheduled, Status: manifests.ConditionFalse, Reason: ReasonUnschedulable, Message: msg}
	if cur := condition(pod.Status, manifests.PodScheduled); cur != nil && cur.Status == want.Status && cur.Reason == want.Reason && cur.Message == want.Message {
		return nil, nil
	}
	cp, err := controller.Copy(pod)
	if err != nil {
		return nil, err
	}
	setCondition(&cp.Status, want, now)
	if cp.Status.Phase == "" {
		cp.Status.Phase = manifests.PodPending
	}
	return cp, nil
}

// unschedulableJobLocked returns the job for the binders that writes
// pod's Unschedulable condition, so that the decisions of the other pods
// do not wait for it; nil when the pod has the condition already or the
// same write is under way. The error asks for a retry.
func (c *Controller) unschedulableJobLocked(key string, pod *manifests.Pod, fitErr *FitError) (*bindJob, error) {
	msg := fitErr.Error()
	retry := fmt.Errorf("pod %s/%s: %s: %w", pod.Namespace, pod.Name, msg, controller.ErrRetry)
	if c.marking[key] == msg {
		return nil, retry
	}
	cp, err := unschedulablePod(pod, msg, c.now())
	if err != nil || cp == nil {
		return nil, errors.Join(err, retry)
	}
	c.marking[key] = msg
	return &bindJob{key: key, pod: pod, unfit: cp, fitErr: msg}, retry
}

// markUnschedulable writes a pod's Unschedulable condition and its
// FailedScheduling event. A conflict means the pod changed (bound,
// updated): the change requeues it, nothing is to be done.
func (c *Controller) markUnschedulable(ctx context.Context, j bindJob) {
	_, err := controller.UpdateFrom(ctx, c.st, j.unfit, j.pod)
	c.mu.Lock()
	if c.marking[j.key] == j.fitErr {
		delete(c.marking, j.key)
	}
	c.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil && !client.IsConflict(err) && !client.IsNotFound(err) {
			slog.WarnContext(ctx, "mark pod unschedulable", "pod", j.key, "err", err)
			c.queue.AddRateLimited(j.key)
		}
		return
	}
	c.event(ctx, j.pod, manifests.EventWarning, EventFailedScheduling, "%s", j.fitErr)
}

func (c *Controller) event(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) {
	var rec Recorder = c.rec
	if a := c.async.Load(); a != nil {
		rec = a
	}
	if rec == nil {
		return
	}
	if err := rec.Eventf(ctx, obj, eventType, reason, format, args...); err != nil {
		slog.WarnContext(ctx, "record event", "reason", reason, "err", err)
	}
}

func condition(st manifests.PodStatus, typ string) *manifests.PodCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == typ {
			return &st.Conditions[i]
		}
	}
	return nil
}

// setCondition sets cond in st, keeping lastTransitionTime when the status
// does not change.
func setCondition(st *manifests.PodStatus, cond manifests.PodCondition, now time.Time) {
	now = now.UTC().Truncate(time.Second)
	cond.LastTransitionTime = now
	for i := range st.Conditions {
		if st.Conditions[i].Type == cond.Type {
			if st.Conditions[i].Status == cond.Status && !st.Conditions[i].LastTransitionTime.IsZero() {
				cond.LastTransitionTime = st.Conditions[i].LastTransitionTime
			}
			st.Conditions[i] = cond
			return
		}
	}
	st.Conditions = append(st.Conditions, cond)
}
