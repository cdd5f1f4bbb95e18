// Package nodes runs the node lifecycle controller: it turns the agents'
// heartbeat leases into each Node's Ready condition. Pods on a silent node
// are left alone (edge autonomy): the node only becomes Ready=Unknown.
package nodes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultGrace is how long a node stays Ready without a new heartbeat.
const DefaultGrace = 40 * time.Second

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
	// Resync is how often every node is re-evaluated (Grace/4 when zero).
	Resync time.Duration
	Now    func() time.Time
}

// Store is what the controller needs of the object store.
type Store interface {
	Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
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
	leases sync.Map // node name -> time.Time: server time of the last lease write
}

// New returns a controller; feed it with WatchLeases and the node informer
// (see Run).
func New(st Store, nodes NodeLister, rec Recorder, opts Options) *Controller {
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Resync <= 0 {
		opts.Resync = opts.Grace / 4
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Controller{st: st, nodes: nodes, rec: rec, opts: opts, queue: controller.NewQueue(defaultWorkerBackoff, opts.Grace), start: opts.Now()}
}

// ObserveLease records a heartbeat of node written at server time t.
func (c *Controller) ObserveLease(node string, t time.Time) {
	c.leases.Store(node, t)
	c.queue.Add(node)
}

// ForgetLease records that node's lease was deleted.
func (c *Controller) ForgetLease(node string) {
	c.leases.Delete(node)
	c.queue.Add(node)
}

// NodeChanged is the node informer's handler.
func (c *Controller) NodeChanged(old, new manifests.Object) {
	if new != nil {
		c.queue.Add(controller.Key(new))
	}
}

// Sync brings the Ready condition of node name in line with its lease. A
// node without a lease seen since the controller started gets the grace
// period from the start, so a control-plane restart does not flap nodes.
func (c *Controller) Sync(ctx context.Context, name string) error {
	obj, ok := c.nodes.Get(name)
	if !ok {
		return nil
	}
	now := c.opts.Now()
	last := c.start
	if v, ok := c.leases.Load(name); ok {
		last = v.(time.Time)
	}
	want := readyCondition(now, last, now.Sub(last) < c.opts.Grace)
	node, ok := obj.(*manifests.Node)
	if !ok {
		return fmt.Errorf("node %s: cached object is a %T", name, obj)
	}
	if readyStatus(node) == want.Status {
		return nil
	}
	for attempt := 0; ; attempt++ {
		updated, err := c.setReady(ctx, node, want)
		if err == nil {
			if updated {
				c.record(ctx, node, want)
			}
			return nil
		}
		if !client.IsConflict(err) || attempt >= maxConflictRetries {
			return fmt.Errorf("set node %s Ready=%s: %w", name, want.Status, err)
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
}

// setReady writes want into a copy of node unless it already holds that
// status; it reports whether it wrote.
func (c *Controller) setReady(ctx context.Context, node *manifests.Node, want manifests.NodeCondition) (bool, error) {
	if readyStatus(node) == want.Status {
		return false, nil
	}
	cp, err := controller.Copy(node)
	if err != nil {
		return false, err
	}
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
	if _, err := c.st.Update(ctx, cp); err != nil {
		return false, err
	}
	return true, nil
}

func (c *Controller) record(ctx context.Context, node *manifests.Node, cond manifests.NodeCondition) {
	if c.rec == nil {
		return
	}
	reason := EventNodeNotReady
	if cond.Status == manifests.ConditionTrue {
		reason = EventNodeReady
	}
	if err := c.rec.Eventf(ctx, node, manifests.EventNormal, reason, "Node %s status is now: %s", node.Name, reason); err != nil {
		slog.WarnContext(ctx, "record node event", "node", node.Name, "err", err)
	}
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
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch leases: %w", err)
	}
	defer w.Stop()
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
			c.ObserveLease(node, e.Created())
		}
	}
}

// Run watches leases and nodes and reconciles until ctx is done. The node
// informer must have been given NodeChanged as a handler and be running;
// nodesSynced waits for it. A broken lease watch is restarted.
func (c *Controller) Run(ctx context.Context, kv jetstream.KeyValue, nodesSynced func(context.Context) error) error {
	leasesSynced := make(chan struct{})
	var once sync.Once
	go func() {
		for ctx.Err() == nil {
			err := c.WatchLeases(ctx, kv, func() { once.Do(func() { close(leasesSynced) }) })
			if err == nil || ctx.Err() != nil {
				return
			}
			slog.WarnContext(ctx, "lease watch ended, restarting", "err", err)
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
