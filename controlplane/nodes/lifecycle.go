// Package nodes runs the node lifecycle controller: it turns the agents'
// heartbeat leases into each Node's Ready condition and lifecycle taints.
// A node silent for Grace becomes NotReady (Ready=Unknown, taint
// node.kubernetes.io/not-ready:NoSchedule); silent for UnreachableGrace
// more it becomes Unreachable (taints node.edge.io/unreachable with
// NoSchedule and NoExecute). Pods on it are left alone (edge autonomy)
// unless they tolerate node.edge.io/unreachable:NoExecute for a limited
// tolerationSeconds: those are deleted once it has passed, so that their
// controllers replace them elsewhere. Other NoExecute taints evict as in
// Kubernetes (untolerated pods at once).
package nodes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/scheduler"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultGrace is how long a node stays Ready without a new heartbeat.
const DefaultGrace = 40 * time.Second

// DefaultUnreachableGrace is how long a node stays NotReady before it is
// Unreachable.
const DefaultUnreachableGrace = 5 * time.Minute

// Lifecycle taints.
const (
	// TaintNotReady is put (NoSchedule) on a node that stopped heartbeating.
	TaintNotReady = "node.kubernetes.io/not-ready"
	// TaintUnreachable is put (NoSchedule and NoExecute) on a node silent
	// for Grace+UnreachableGrace. Unlike Kubernetes' NoExecute taints it
	// evicts only the pods that tolerate it for a limited time.
	TaintUnreachable = "node.edge.io/unreachable"
)

// EventTaintManagerEviction is the reason of the event on an evicted pod.
const EventTaintManagerEviction = "TaintManagerEviction"

// EventNodeUnreachable is the reason of the event on a node that became
// unreachable.
const EventNodeUnreachable = "NodeUnreachable"

// Ready condition reasons and messages.
const (
	ReasonReady          = "AgentReady"
	MessageReady         = "edge-agent is posting ready status"
	ReasonUnknown        = "NodeStatusUnknown"
	MessageUnknown       = "Agent stopped posting heartbeats"
	EventNodeReady       = "NodeReady"
	EventNodeNotReady    = "NodeNotReady"
	nodesResource        = "nodes"
	maxConflictRetries   = 5
	defaultWorkerBackoff = 100 * time.Millisecond
)

// Options tune the controller. Zero values take the defaults.
type Options struct {
	Grace time.Duration
	// UnreachableGrace is how long a node stays NotReady before it is
	// Unreachable (DefaultUnreachableGrace).
	UnreachableGrace time.Duration
	// Resync is how often every node is re-evaluated (Grace/4 when zero).
	Resync time.Duration
	Now    func() time.Time
	// Pods is the pod cache; without it no pod is evicted.
	Pods PodLister
}

// PodLister is the pod cache.
type PodLister interface {
	List(sel manifests.Selector) []manifests.Object
}

// Store is what the controller needs of the object store.
type Store interface {
	Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Delete(ctx context.Context, resource, namespace, name string, rev uint64) (manifests.Object, error)
}

// Recorder records events.
type Recorder interface {
	Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error
}

// NodeLister is the node cache.
type NodeLister interface {
	Get(key string) (manifests.Object, bool)
	List(sel manifests.Selector) []manifests.Object
}

// Controller keeps the Ready condition of every node in line with its lease.
type Controller struct {
	st     Store
	nodes  NodeLister
	rec    Recorder
	opts   Options
	queue  *controller.Queue
	start  time.Time
	leases sync.Map // node name -> heartbeat: the last lease write seen
	// nodes counts the nodes the informer holds (NodeChanged), which sets
	// how often a heartbeat time is written (heartbeatWriteInterval).
	count atomic.Int64
}

// New returns a controller; feed it with WatchLeases and the node informer
// (see Run).
func New(st Store, nodes NodeLister, rec Recorder, opts Options) *Controller {
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.UnreachableGrace <= 0 {
		opts.UnreachableGrace = DefaultUnreachableGrace
	}
	if opts.Resync <= 0 {
		opts.Resync = opts.Grace / 4
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Controller{st: st, nodes: nodes, rec: rec, opts: opts, queue: controller.NewQueue(defaultWorkerBackoff, opts.Grace), start: opts.Now()}
}

// heartbeat is the last lease write of a node the controller saw: its
// server time, and the local time the controller saw it, by which the node
// is judged (as Kubernetes judges by its own probe time, so that clock
// skew between the control plane and NATS does not matter). replayed marks
// a lease read when the watch (re)started rather than seen being written:
// it says nothing about whether the node is alive now.
type heartbeat struct {
	server, seen time.Time
	replayed     bool
}

// ObserveLease records a heartbeat of node written at server time t.
func (c *Controller) ObserveLease(node string, t time.Time) {
	c.observe(node, t, false)
}

func (c *Controller) observe(node string, t time.Time, replayed bool) {
	if v, ok := c.leases.Load(node); ok && !v.(heartbeat).server.Before(t) {
		// The same write, replayed by a restarted watch, or an older
		// lease in the other bucket (an agent that moved buckets).
		c.queue.Add(node)
		return
	}
	_, known := c.leases.Load(node)
	c.leases.Store(node, heartbeat{server: t, seen: c.opts.Now(), replayed: replayed && !known})
	c.queue.Add(node)
}

// ForgetLease records that node's lease was deleted.
func (c *Controller) ForgetLease(node string) {
	c.leases.Delete(node)
	c.queue.Add(node)
}

// NodeChanged is the node informer's handler.
func (c *Controller) NodeChanged(old, new manifests.Object) {
	switch {
	case old == nil && new != nil:
		c.count.Add(1)
	case old != nil && new == nil:
		c.count.Add(-1)
	}
	if new != nil {
		c.queue.Add(controller.Key(new))
	}
}

// PodChanged is the pod informer's handler: a pod bound to a node with a
// NoExecute taint may have to be evicted.
func (c *Controller) PodChanged(old, new manifests.Object) {
	p, _ := new.(*manifests.Pod)
	if p == nil || p.Spec.NodeName == "" {
		return
	}
	if obj, ok := c.nodes.Get(p.Spec.NodeName); ok {
		if n, ok := obj.(*manifests.Node); ok && hasNoExecute(n) {
			c.queue.Add(p.Spec.NodeName)
		}
	}
}

// State is where a node is in its lifecycle.
type State int

// Node states.
const (
	StateReady State = iota
	StateNotReady
	StateUnreachable
)

func (s State) String() string {
	return [...]string{"Ready", "NotReady", "Unreachable"}[s]
}

// state returns the state of a node last heard of at last, and when it
// changes next if no heartbeat comes (zero when never).
func (c *Controller) state(now, last time.Time) (State, time.Time) {
	notReady := last.Add(c.opts.Grace)
	unreachable := notReady.Add(c.opts.UnreachableGrace)
	switch {
	case now.Before(notReady):
		return StateReady, notReady
	case now.Before(unreachable):
		return StateNotReady, unreachable
	default:
		return StateUnreachable, time.Time{}
	}
}

// Sync brings the Ready condition and the lifecycle taints of node name in
// line with its lease, then evicts the pods whose NoExecute toleration has
// run out. A node is judged from when this controller saw its last lease
// write, and at the earliest from when it started; until it has seen one
// being written, the node's state does not improve. So neither a
// control-plane restart after an outage (every lease old) nor a change of
// leader (a node unreachable for hours) flaps nodes or evicts pods.
func (c *Controller) Sync(ctx context.Context, name string) error {
	obj, ok := c.nodes.Get(name)
	if !ok {
		return nil
	}
	node, ok := obj.(*manifests.Node)
	if !ok {
		return fmt.Errorf("node %s: cached object is a %T", name, obj)
	}
	now := c.opts.Now()
	last, written, live := c.start, c.start, false
	if v, ok := c.leases.Load(name); ok {
		hb := v.(heartbeat)
		last, written, live = hb.seen, hb.server, !hb.replayed
	}
	st, next := c.state(now, last)
	if !next.IsZero() && next.Sub(now) < c.opts.Resync {
		c.queue.AddAfter(name, next.Sub(now)+10*time.Millisecond)
	}
	if cur := currentState(node); !live && cur > st {
		st = cur
	}
	want := readyCondition(now, written, st == StateReady)
	for attempt := 0; ; attempt++ {
		updated, err := c.apply(ctx, node, want, st, now)
		if err == nil {
			if updated != nil {
				c.record(ctx, node, updated, st)
				node = updated
			}
			break
		}
		if !client.IsConflict(err) || attempt >= maxConflictRetries {
			return fmt.Errorf("set node %s %s: %w", name, st, err)
		}
		fresh, err := c.st.Get(ctx, nodesResource, "", name)
		if err != nil {
			if client.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("get node %s: %w", name, err)
		}
		if node, ok = fresh.(*manifests.Node); !ok {
			return fmt.Errorf("node %s: stored object is a %T", name, fresh)
		}
	}
	return c.evict(ctx, node, now)
}

// apply writes the Ready condition and the taints of state st into a copy
// of node unless it already has them; it returns the written node, or nil
// when nothing changed.
func (c *Controller) apply(ctx context.Context, node *manifests.Node, want manifests.NodeCondition, st State, now time.Time) (*manifests.Node, error) {
	taints, taintsChanged := lifecycleTaints(node.Spec.Taints, st, now)
	condChanged := readyStatus(node) != want.Status
	beatStale := !condChanged && heartbeatStale(node, want.LastHeartbeatTime, heartbeatWriteInterval(c.count.Load()))
	if !taintsChanged && !condChanged && !beatStale {
		return nil, nil
	}
	cp, err := controller.Copy(node)
	if err != nil {
		return nil, err
	}
	cp.Spec.Taints = taints
	if condChanged {
		replaced := false
		for i := range cp.Status.Conditions {
			if cp.Status.Conditions[i].Type == manifests.NodeReady {
				cp.Status.Conditions[i] = want
				replaced = true
			}
		}
		if !replaced {
			cp.Status.Conditions = append(cp.Status.Conditions, want)
		}
	} else if beatStale {
		for i := range cp.Status.Conditions {
			if cp.Status.Conditions[i].Type == manifests.NodeReady {
				cp.Status.Conditions[i].LastHeartbeatTime = want.LastHeartbeatTime
			}
		}
	}
	updated, err := controller.UpdateFrom(ctx, c.st, cp, node)
	if err != nil {
		return nil, err
	}
	n, _ := updated.(*manifests.Node)
	if n == nil {
		n = cp
	}
	return n, nil
}

// lifecycleTaints returns taints with the lifecycle taints of state st
// (keeping the time those already there were added) and whether that
// differs from taints.
func lifecycleTaints(taints []manifests.Taint, st State, now time.Time) ([]manifests.Taint, bool) {
	var want []manifests.Taint
	switch st {
	case StateNotReady:
		want = []manifests.Taint{{Key: TaintNotReady, Effect: scheduler.TaintEffectNoSchedule}}
	case StateUnreachable:
		want = []manifests.Taint{
			{Key: TaintUnreachable, Effect: scheduler.TaintEffectNoSchedule},
			{Key: TaintUnreachable, Effect: scheduler.TaintEffectNoExecute},
		}
	}
	var out []manifests.Taint
	changed := false
	for _, t := range taints {
		if t.Key != TaintNotReady && t.Key != TaintUnreachable {
			out = append(out, t)
			continue
		}
		keep := false
		for _, w := range want {
			if w.Key == t.Key && w.Effect == t.Effect {
				keep = true
			}
		}
		if keep {
			out = append(out, t)
		} else {
			changed = true
		}
	}
	at := now.UTC().Truncate(time.Second)
	for _, w := range want {
		found := false
		for _, t := range out {
			if w.Key == t.Key && w.Effect == t.Effect {
				found = true
			}
		}
		if !found {
			w.TimeAdded = &at
			out = append(out, w)
			changed = true
		}
	}
	return out, changed
}

// currentState is the state node is marked with: Unreachable with the
// unreachable taint, NotReady when Ready is not True, Ready when it is or
// when the node has no Ready condition yet.
func currentState(n *manifests.Node) State {
	for _, t := range n.Spec.Taints {
		if t.Key == TaintUnreachable {
			return StateUnreachable
		}
	}
	if s := readyStatus(n); s != "" && s != manifests.ConditionTrue {
		return StateNotReady
	}
	return StateReady
}

func hasNoExecute(n *manifests.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Effect == scheduler.TaintEffectNoExecute {
			return true
		}
	}
	return false
}

// evictAt returns when pod must leave a node with taints (ok false: never).
// For node.edge.io/unreachable a pod stays unless it tolerates the taint
// for a limited time (edge autonomy); for any other NoExecute taint a pod
// that does not tolerate it goes at once, as in Kubernetes.
func evictAt(pod *manifests.Pod, taints []manifests.Taint, now time.Time) (time.Time, bool) {
	var at time.Time
	found := false
	for _, t := range taints {
		if t.Effect != scheduler.TaintEffectNoExecute {
			continue
		}
		added := now
		if t.TimeAdded != nil {
			added = *t.TimeAdded
		}
		tol, ok := scheduler.FindToleration(pod.Spec.Tolerations, t)
		var when time.Time
		switch {
		case !ok && t.Key == TaintUnreachable:
			continue
		case !ok:
			when = now
		case tol.TolerationSeconds == nil:
			continue
		default:
			when = added.Add(time.Duration(max(*tol.TolerationSeconds, 0)) * time.Second)
		}
		if !found || when.Before(at) {
			at, found = when, true
		}
	}
	return at, found
}

// evict deletes the pods on node whose NoExecute toleration has run out
// and queues node again for the next one.
func (c *Controller) evict(ctx context.Context, node *manifests.Node, now time.Time) error {
	if c.opts.Pods == nil || !hasNoExecute(node) {
		return nil
	}
	var next time.Time
	var errs []error
	for _, o := range c.opts.Pods.List(manifests.Selector{}) {
		p, ok := o.(*manifests.Pod)
		if !ok || p.Spec.NodeName != node.Name || p.DeletionTimestamp != nil {
			continue
		}
		at, ok := evictAt(p, node.Spec.Taints, now)
		if !ok {
			continue
		}
		if at.After(now) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		rev, _ := strconv.ParseUint(p.ResourceVersion, 10, 64)
		if _, err := c.st.Delete(ctx, "pods", p.Namespace, p.Name, rev); err != nil {
			if client.IsNotFound(err) {
				continue
			}
			errs = append(errs, fmt.Errorf("evict pod %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		if c.rec != nil {
			if err := c.rec.Eventf(ctx, p, manifests.EventNormal, EventTaintManagerEviction, "Marking for deletion Pod %s/%s", p.Namespace, p.Name); err != nil {
				slog.WarnContext(ctx, "record eviction event", "pod", p.Name, "err", err)
			}
		}
	}
	if !next.IsZero() {
		c.queue.AddAfter(node.Name, next.Sub(now)+10*time.Millisecond)
	}
	return errors.Join(errs...)
}

func (c *Controller) record(ctx context.Context, old, node *manifests.Node, st State) {
	if c.rec == nil {
		return
	}
	var reason string
	switch {
	case readyStatus(old) != readyStatus(node) && st == StateReady:
		reason = EventNodeReady
	case readyStatus(old) != readyStatus(node):
		reason = EventNodeNotReady
	case st == StateUnreachable:
		reason = EventNodeUnreachable
	default:
		return
	}
	if err := c.rec.Eventf(ctx, node, manifests.EventNormal, reason, "Node %s status is now: %s", node.Name, reason); err != nil {
		slog.WarnContext(ctx, "record node event", "node", node.Name, "err", err)
	}
}

// HeartbeatWriteInterval is the least time between two writes of a
// node's Ready lastHeartbeatTime made only to follow its lease (the
// condition's status changing is written at once): the Node shows its last
// report time to within that, without a store write per heartbeat.
const HeartbeatWriteInterval = 30 * time.Second

// HeartbeatWritesPerSecond bounds the writes of heartbeat times across the
// fleet: past 600 nodes the interval grows with the fleet (10,000 nodes:
// 500 s, as Kubernetes' kubelet reports an unchanged status every 5
// minutes), so that an idle fleet does not cost a synced write per node
// every 30 s (333 /s at 10,000 nodes).
const HeartbeatWritesPerSecond = 20

// heartbeatWriteInterval is the interval for a fleet of nodes nodes.
func heartbeatWriteInterval(nodes int64) time.Duration {
	return max(HeartbeatWriteInterval, time.Duration(nodes)*time.Second/HeartbeatWritesPerSecond)
}

// heartbeatStale reports whether the Ready condition of node shows a last
// heartbeat at least interval older than beat.
func heartbeatStale(node *manifests.Node, beat time.Time, interval time.Duration) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == manifests.NodeReady {
			return beat.Sub(c.LastHeartbeatTime) >= interval
		}
	}
	return false
}

func readyCondition(now, heartbeat time.Time, fresh bool) manifests.NodeCondition {
	c := manifests.NodeCondition{
		Type:               manifests.NodeReady,
		LastHeartbeatTime:  heartbeat.UTC().Truncate(time.Second),
		LastTransitionTime: now.UTC().Truncate(time.Second),
	}
	if fresh {
		c.Status, c.Reason, c.Message = manifests.ConditionTrue, ReasonReady, MessageReady
	} else {
		c.Status, c.Reason, c.Message = manifests.ConditionUnknown, ReasonUnknown, MessageUnknown
	}
	return c
}

func readyStatus(node *manifests.Node) string {
	for _, c := range node.Status.Conditions {
		if c.Type == manifests.NodeReady {
			return c.Status
		}
	}
	return ""
}

// WatchLeases feeds the controller from the leases bucket until ctx is
// done. It calls synced once the current leases have been read.
func (c *Controller) WatchLeases(ctx context.Context, kv jetstream.KeyValue, synced func()) error {
	w, err := kv.Watch(ctx, messaging.NodeLeasesFilter)
	if err != nil {
		return fmt.Errorf("watch leases: %w", err)
	}
	defer w.Stop()
	replaying := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("watch leases: watcher closed")
			}
			if e == nil {
				replaying = false
				if synced != nil {
					synced()
					synced = nil
				}
				continue
			}
			node := messaging.DecodeToken(e.Key())
			if e.Operation() != jetstream.KeyValuePut {
				c.ForgetLease(node)
				continue
			}
			c.observe(node, e.Created(), replaying)
		}
	}
}

// Run watches the leases in every bucket of leases and the nodes, and
// reconciles until ctx is done. The node informer must have been given
// NodeChanged as a handler and be running; nodesSynced waits for it. A
// broken lease watch is restarted.
func (c *Controller) Run(ctx context.Context, nodesSynced func(context.Context) error, leases ...jetstream.KeyValue) error {
	for _, kv := range leases {
		leasesSynced := make(chan struct{})
		var once sync.Once
		go func() {
			for ctx.Err() == nil {
				err := c.WatchLeases(ctx, kv, func() { once.Do(func() { close(leasesSynced) }) })
				if err == nil || ctx.Err() != nil {
					return
				}
				slog.WarnContext(ctx, "lease watch ended, restarting", "bucket", kv.Bucket(), "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
		select {
		case <-leasesSynced:
		case <-ctx.Done():
			return nil
		}
	}
	if err := nodesSynced(ctx); err != nil {
		return nil // ctx done
	}
	go c.resync(ctx)
	controller.RunWorkers(ctx, c.queue, 1, c.Sync)
	return nil
}

// resync re-evaluates every node periodically: a lease that stops
// changing produces no event of its own.
func (c *Controller) resync(ctx context.Context) {
	t := time.NewTicker(c.opts.Resync)
	defer t.Stop()
	for {
		for _, o := range c.nodes.List(manifests.Selector{}) {
			c.queue.Add(controller.Key(o))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
