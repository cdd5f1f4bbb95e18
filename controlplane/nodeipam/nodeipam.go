// Package nodeipam is the node pod-CIDR controller: a Node without
// spec.podCIDR gets the first free subnet of the cluster CIDR (claimed in
// the leases bucket, so two controllers never hand one subnet out twice)
// in spec.podCIDR and spec.podCIDRs.
package nodeipam

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// Name is the controller's name.
const Name = "node-ipam-controller"

// Store is what the controller needs of the object store.
type Store interface {
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
}

// Lister is a read-only cache of nodes.
type Lister interface {
	Get(key string) (manifests.Object, bool)
	List(sel manifests.Selector) []manifests.Object
}

// Allocator hands out pod CIDRs (ipam.PodCIDRs).
type Allocator interface {
	Allocate(ctx context.Context, node string, used func(cidr string) bool, holds func(ctx context.Context, node, cidr string) (bool, error)) (string, error)
	Release(ctx context.Context, node, cidr string) error
}

// DefaultRegisterGrace is how long a new node without status is left
// alone: its agent writes the status right after creating the node with a
// compare-and-swap, which a pod-CIDR write in between would make fail.
const DefaultRegisterGrace = 5 * time.Second

// Controller assigns pod CIDRs to nodes.
type Controller struct {
	st    Store
	nodes Lister
	alloc Allocator
	queue *controller.Queue
	// RegisterGrace is DefaultRegisterGrace unless changed before Run.
	RegisterGrace time.Duration
	now           func() time.Time

	// used counts, by pod CIDR, the cached nodes that show it, kept by
	// NodeChanged: a sync reads it instead of listing every node, which
	// made giving 10,000 new nodes their CIDRs cost 10,000 x 10,000 node
	// reads (most of an otherwise idle control plane's CPU for minutes).
	mu   sync.Mutex
	used map[string]int
}

// New returns a controller; register NodeChanged as the node cache's
// handler.
func New(st Store, nodes Lister, alloc Allocator) *Controller {
	return &Controller{st: st, nodes: nodes, alloc: alloc, queue: controller.NewQueue(50*time.Millisecond, 30*time.Second),
		RegisterGrace: DefaultRegisterGrace, now: time.Now, used: map[string]int{}}
}

// Run syncs with one worker until ctx is done (one at a time keeps the
// allocation sequential).
func (c *Controller) Run(ctx context.Context) { controller.RunWorkers(ctx, c.queue, 1, c.Sync) }

// NodeChanged counts the pod CIDRs nodes show and queues a node that has
// none. Register it before the node cache runs: the pod CIDRs a sync
// avoids are those it was told of.
func (c *Controller) NodeChanged(old, cur manifests.Object) {
	on, _ := old.(*manifests.Node)
	nn, _ := cur.(*manifests.Node)
	c.mu.Lock()
	for _, cidr := range nodeCIDRs(on) {
		if c.used[cidr]--; c.used[cidr] <= 0 {
			delete(c.used, cidr)
		}
	}
	for _, cidr := range nodeCIDRs(nn) {
		c.used[cidr]++
	}
	c.mu.Unlock()
	if nn != nil && nn.Spec.PodCIDR == "" {
		c.queue.Add(controller.Key(nn))
	}
}

// nodeCIDRs are the distinct pod CIDRs n shows.
func nodeCIDRs(n *manifests.Node) []string {
	if n == nil {
		return nil
	}
	var out []string
	for _, cidr := range append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...) {
		if cidr != "" && !slices.Contains(out, cidr) {
			out = append(out, cidr)
		}
	}
	return out
}

// inUse reports whether a cached node shows cidr.
func (c *Controller) inUse(cidr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used[cidr] > 0
}

// Sync gives the node under key a pod CIDR if it has none.
func (c *Controller) Sync(ctx context.Context, key string) error {
	o, ok := c.nodes.Get(key)
	if !ok {
		return nil
	}
	node := o.(*manifests.Node)
	if node.Spec.PodCIDR != "" || node.DeletionTimestamp != nil {
		return nil
	}
	if wait := node.CreationTimestamp.Add(c.RegisterGrace).Sub(c.now()); wait > 0 && !registered(node) {
		c.queue.AddAfter(key, wait)
		return nil
	}
	holds := func(_ context.Context, name, cidr string) (bool, error) {
		o, ok := c.nodes.Get(name)
		return ok && o.(*manifests.Node).Spec.PodCIDR == cidr, nil
	}
	cidr, err := c.alloc.Allocate(ctx, node.Name, c.inUse, holds)
	if err != nil {
		return fmt.Errorf("node %s: allocate pod CIDR: %w", node.Name, err)
	}
	next, err := controller.Copy(node)
	if err != nil {
		return err
	}
	next.Spec.PodCIDR, next.Spec.PodCIDRs = cidr, []string{cidr}
	if _, err := controller.UpdateFrom(ctx, c.st, next, node); err != nil {
		if rerr := c.alloc.Release(context.WithoutCancel(ctx), node.Name, cidr); rerr != nil {
			err = fmt.Errorf("%w (release %s: %v)", err, cidr, rerr)
		}
		if client.IsConflict(err) || client.IsNotFound(err) {
			return fmt.Errorf("%w: node %s: %w", controller.ErrRetry, node.Name, err)
		}
		return fmt.Errorf("node %s: set pod CIDR: %w", node.Name, err)
	}
	return nil
}

// registered reports whether the node's agent has written its status.
func registered(n *manifests.Node) bool {
	return n.Status.NodeInfo.Architecture != "" || len(n.Status.Addresses) > 0 || len(n.Status.Conditions) > 0
}
