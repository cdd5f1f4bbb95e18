package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
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

// Controller binds unscheduled pods to nodes.
type Controller struct {
	st    Store
	pods  Lister
	nodes Lister
	rec   Recorder
	queue *controller.Queue
	now   func() time.Time

	mu sync.Mutex
	// assumed holds pods bound by this scheduler that the pod cache does
	// not show bound yet, so that the next decision counts them.
	assumed map[string]*manifests.Pod
}

// NewController returns a scheduler reading pods and nodes from the given
// caches. Register PodChanged and NodeChanged as their handlers.
func NewController(st Store, pods, nodes Lister, rec Recorder) *Controller {
	return &Controller{
		st: st, pods: pods, nodes: nodes, rec: rec,
		queue:   controller.NewQueue(100*time.Millisecond, 30*time.Second),
		now:     time.Now,
		assumed: map[string]*manifests.Pod{},
	}
}

// Run schedules pods with one worker until ctx is done (one worker keeps
// decisions sequential, each seeing the previous binding).
func (c *Controller) Run(ctx context.Context) {
	controller.RunWorkers(ctx, c.queue, 1, c.Sync)
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
		if op != nil {
			if c.forgetAssumed(controller.Key(op)) || op.Spec.NodeName != "" {
				c.requeuePending()
			}
		}
	case needsScheduling(np):
		c.queue.Add(controller.Key(np))
	default:
		if np.Spec.NodeName != "" {
			c.forgetAssumed(controller.Key(np)) // the cache shows it bound now
		}
		if ended(np) && (op == nil || !ended(op)) {
			c.requeuePending()
		}
	}
}

func ended(p *manifests.Pod) bool {
	return p.Status.Phase == manifests.PodSucceeded || p.Status.Phase == manifests.PodFailed
}

// NodeChanged is the node informer's handler: any node change may let a
// pending pod fit.
func (c *Controller) NodeChanged(old, new manifests.Object) {
	if new != nil {
		c.requeuePending()
	}
}

func (c *Controller) requeuePending() {
	for _, o := range c.pods.List(manifests.Selector{}) {
		if p, ok := o.(*manifests.Pod); ok && needsScheduling(p) {
			c.queue.Add(controller.Key(p))
		}
	}
}

// forgetAssumed drops key from the assumed bindings and reports whether
// it was there.
func (c *Controller) forgetAssumed(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.assumed[key]
	delete(c.assumed, key)
	return ok
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
	nodes, placed := c.snapshot()
	node, fitErr := Schedule(pod, nodes, placed)
	if fitErr != nil {
		return c.unschedulable(ctx, pod, fitErr)
	}
	return c.bind(ctx, pod, node)
}

// snapshot returns the cached nodes and the pods on each node, including
// the pods this scheduler bound that the cache does not show bound yet.
func (c *Controller) snapshot() ([]*manifests.Node, map[string][]*manifests.Pod) {
	var nodes []*manifests.Node
	for _, o := range c.nodes.List(manifests.Selector{}) {
		if n, ok := o.(*manifests.Node); ok {
			nodes = append(nodes, n)
		}
	}
	placed := map[string][]*manifests.Pod{}
	seen := map[string]bool{}
	// Hold mu across the list and the read of assumed: a pod the cache
	// shows bound only after the list is still in assumed, because its
	// handler (forgetAssumed) waits for mu.
	c.mu.Lock()
	for _, o := range c.pods.List(manifests.Selector{}) {
		if p, ok := o.(*manifests.Pod); ok && p.Spec.NodeName != "" {
			placed[p.Spec.NodeName] = append(placed[p.Spec.NodeName], p)
			seen[controller.Key(p)] = true
		}
	}
	for k, p := range c.assumed {
		if !seen[k] {
			placed[p.Spec.NodeName] = append(placed[p.Spec.NodeName], p)
		}
	}
	c.mu.Unlock()
	return nodes, placed
}

func (c *Controller) bind(ctx context.Context, pod *manifests.Pod, node string) error {
	cp, err := controller.Copy(pod)
	if err != nil {
		return err
	}
	cp.Spec.NodeName = node
	setCondition(&cp.Status, manifests.PodCondition{Type: manifests.PodScheduled, Status: manifests.ConditionTrue}, c.now())
	if cp.Status.Phase == "" {
		cp.Status.Phase = manifests.PodPending
	}
	if _, err := c.st.Update(ctx, cp); err != nil {
		return fmt.Errorf("bind pod %s/%s to %s: %w", pod.Namespace, pod.Name, node, err)
	}
	c.mu.Lock()
	c.assumed[controller.Key(cp)] = cp
	c.mu.Unlock()
	c.event(ctx, cp, manifests.EventNormal, EventScheduled, "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node)
	return nil
}

func (c *Controller) unschedulable(ctx context.Context, pod *manifests.Pod, fitErr *FitError) error {
	msg := fitErr.Error()
	want := manifests.PodCondition{Type: manifests.PodScheduled, Status: manifests.ConditionFalse, Reason: ReasonUnschedulable, Message: msg}
	if cur := condition(pod.Status, manifests.PodScheduled); cur == nil || cur.Status != want.Status || cur.Reason != want.Reason || cur.Message != want.Message {
		cp, err := controller.Copy(pod)
		if err != nil {
			return err
		}
		setCondition(&cp.Status, want, c.now())
		if cp.Status.Phase == "" {
			cp.Status.Phase = manifests.PodPending
		}
		if _, err := c.st.Update(ctx, cp); err != nil {
			return fmt.Errorf("mark pod %s/%s unschedulable: %w", pod.Namespace, pod.Name, err)
		}
		c.event(ctx, pod, manifests.EventWarning, EventFailedScheduling, "%s", msg)
	}
	return fmt.Errorf("pod %s/%s: %s: %w", pod.Namespace, pod.Name, msg, controller.ErrRetry)
}

func (c *Controller) event(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) {
	if c.rec == nil {
		return
	}
	if err := c.rec.Eventf(ctx, obj, eventType, reason, format, args...); err != nil {
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
