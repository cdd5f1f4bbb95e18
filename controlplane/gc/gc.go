// Package gc is the garbage collector: it deletes objects whose owners
// (metadata.ownerReferences, checked by uid) are all gone, and carries out
// foreground and orphan deletion of owners, which the API marks with a
// deletionTimestamp and the foregroundDeletion or orphan finalizer.
//
// It follows Kubernetes' garbage collector: Background deletion removes
// the owner at once and its dependents afterwards; Foreground deletes the
// dependents first (recursively, in foreground when they have dependents
// themselves) and the owner once no dependent with blockOwnerDeletion is
// left; Orphan removes the owner's references from its dependents, then
// the owner.
package gc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// Deletion propagation policies (Kubernetes').
const (
	PropagationBackground = "Background"
	PropagationForeground = "Foreground"
	PropagationOrphan     = "Orphan"
)

// Store is what the collector needs of the object store.
type Store interface {
	Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Delete(ctx context.Context, resource, namespace, name string, rev uint64) (manifests.Object, error)
	List(ctx context.Context, resource, namespace string, sel manifests.Selector) ([]manifests.Object, uint64, error)
}

// Lister is a read-only cache of one resource.
type Lister interface {
	Get(key string) (manifests.Object, bool)
	List(sel manifests.Selector) []manifests.Object
}

// Delete deletes obj with policy ("" is Background): Foreground and Orphan
// mark it (deletionTimestamp and the policy's finalizer) for the collector
// to finish; an object carrying finalizers is only marked, and goes when
// its finalizers are removed. It returns the object as deleted or marked.
func Delete(ctx context.Context, st Store, obj manifests.Object, policy string, now time.Time) (manifests.Object, error) {
	k, err := manifests.KindOf(obj)
	if err != nil {
		return nil, err
	}
	m := obj.GetObjectMeta()
	var finalizer string
	switch policy {
	case "", PropagationBackground:
	case PropagationForeground:
		finalizer = manifests.FinalizerForeground
	case PropagationOrphan:
		finalizer = manifests.FinalizerOrphan
	default:
		return nil, client.Errorf(client.CodeInvalid, "propagationPolicy: Unsupported value: %q: supported values: %q, %q, %q",
			policy, PropagationForeground, PropagationBackground, PropagationOrphan)
	}
	if finalizer == "" && len(m.Finalizers) == 0 {
		rev, err := strconv.ParseUint(m.ResourceVersion, 10, 64)
		if err != nil {
			rev = 0
		}
		return st.Delete(ctx, k.Resource, m.Namespace, m.Name, rev)
	}
	if m.DeletionTimestamp != nil && (finalizer == "" || slices.Contains(m.Finalizers, finalizer)) {
		return obj, nil // already being deleted this way
	}
	cp := manifests.DeepCopy(obj)
	cm := cp.GetObjectMeta()
	if cm.DeletionTimestamp == nil {
		t := now.UTC().Truncate(time.Second)
		cm.DeletionTimestamp = &t
	}
	if finalizer != "" && !slices.Contains(cm.Finalizers, finalizer) {
		cm.Finalizers = append(cm.Finalizers, finalizer)
	}
	return st.Update(ctx, cp)
}

// Collector is the garbage collector.
type Collector struct {
	st      Store
	listers map[string]Lister // by resource
	queue   *controller.Queue
	now     func() time.Time

	mu         sync.Mutex
	byUID      map[string]string          // uid -> item key
	dependents map[string]map[string]bool // owner uid -> dependent item keys
	refs       map[string][]string        // item key -> owner uids
	ownerKinds map[string]bool            // kinds seen as owners
}

// New returns a collector over listers (resource name -> cache); it
// watches the objects of every resource given. Register Handler(resource)
// on each cache.
func New(st Store, listers map[string]Lister) *Collector {
	return &Collector{
		st: st, listers: listers,
		queue:      controller.NewQueue(50*time.Millisecond, 30*time.Second),
		now:        time.Now,
		byUID:      map[string]string{},
		dependents: map[string]map[string]bool{},
		refs:       map[string][]string{},
		// The workload kinds own pods or ReplicaSets from their start;
		// other kinds join once seen in an ownerReference.
		ownerKinds: map[string]bool{"Deployment": true, "ReplicaSet": true, "DaemonSet": true, "Job": true},
	}
}

// Run collects with workers workers until ctx is done.
func (c *Collector) Run(ctx context.Context, workers int) {
	controller.RunWorkers(ctx, c.queue, workers, c.Sync)
}

// itemKey is "resource/namespace/name".
func itemKey(resource string, obj manifests.Object) string {
	m := obj.GetObjectMeta()
	return resource + "/" + m.Namespace + "/" + m.Name
}

// itemResource is the resource of a queue key.
func itemResource(key string) string {
	resource, _, _ := splitItemKey(key)
	return resource
}

func splitItemKey(key string) (resource, namespace, name string) {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) != 3 {
		return "", "", key
	}
	return parts[0], parts[1], parts[2]
}

// Handler returns the cache handler for resource: it keeps the owner index
// and queues the objects a change concerns.
func (c *Collector) Handler(resource string) controller.Handler {
	return func(old, cur manifests.Object) {
		obj := cur
		if obj == nil {
			obj = old
		}
		key := itemKey(resource, obj)
		m := obj.GetObjectMeta()
		c.mu.Lock()
		for _, uid := range c.refs[key] {
			delete(c.dependents[uid], key)
			if len(c.dependents[uid]) == 0 {
				delete(c.dependents, uid)
			}
		}
		delete(c.refs, key)
		var requeue []string
		if cur == nil {
			if c.byUID[m.UID] == key {
				delete(c.byUID, m.UID)
			}
			// Its dependents may now be orphans.
			for dep := range c.dependents[m.UID] {
				requeue = append(requeue, dep)
			}
		} else {
			c.byUID[m.UID] = key
			var uids []string
			for _, r := range m.OwnerReferences {
				uids = append(uids, r.UID)
				c.ownerKinds[r.Kind] = true
				if c.dependents[r.UID] == nil {
					c.dependents[r.UID] = map[string]bool{}
				}
				c.dependents[r.UID][key] = true
			}
			c.refs[key] = uids
			// Look at the object when it is being deleted, or when its
			// owners are new or not all known (a status update of a pod
			// whose owners are cached needs nothing).
			missing := false
			for _, uid := range uids {
				if c.byUID[uid] == "" {
					missing = true
				}
			}
			if m.DeletionTimestamp != nil || (len(uids) > 0 && (old == nil || missing || !sameOwners(old, cur))) {
				requeue = append(requeue, key)
			}
		}
		var owners []string
		for _, o := range []manifests.Object{old, cur} {
			if o == nil {
				continue
			}
			for _, r := range o.GetObjectMeta().OwnerReferences {
				if ok := c.byUID[r.UID]; ok != "" {
					owners = append(owners, ok)
				}
			}
		}
		c.mu.Unlock()
		for _, k := range requeue {
			c.queue.Add(k)
		}
		// Owners being deleted (foreground, orphan) re-check their dependents.
		for _, k := range owners {
			if o, ok := c.cached(k); ok && o.GetObjectMeta().DeletionTimestamp != nil {
				c.queue.Add(k)
			}
		}
	}
}

func sameOwners(a, b manifests.Object) bool {
	return slices.EqualFunc(a.GetObjectMeta().OwnerReferences, b.GetObjectMeta().OwnerReferences,
		func(x, y manifests.OwnerReference) bool { return x.UID == y.UID })
}

func (c *Collector) cached(key string) (manifests.Object, bool) {
	resource, ns, name := splitItemKey(key)
	l := c.listers[resource]
	if l == nil {
		return nil, false
	}
	ck := name
	if ns != "" {
		ck = ns + "/" + name
	}
	return l.Get(ck)
}

func (c *Collector) dependentsOf(uid string) []manifests.Object {
	c.mu.Lock()
	keys := make([]string, 0, len(c.dependents[uid]))
	for k := range c.dependents[uid] {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	slices.Sort(keys)
	var out []manifests.Object
	for _, k := range keys {
		if o, ok := c.cached(k); ok {
			out = append(out, o)
		}
	}
	return out
}

func (c *Collector) isOwnerKind(obj manifests.Object) bool {
	k, err := manifests.KindOf(obj)
	if err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ownerKinds[k.Kind]
}

func (c *Collector) hasDependents(uid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.dependents[uid]) > 0
}

// Sync processes the object under key ("resource/namespace/name"). A
// conflict (the cache was behind the store) is retried quietly.
func (c *Collector) Sync(ctx context.Context, key string) error {
	err := c.sync(ctx, key)
	if client.IsConflict(err) {
		return fmt.Errorf("%w: %w", controller.ErrRetry, err)
	}
	return err
}

func (c *Collector) sync(ctx context.Context, key string) error {
	obj, ok := c.cached(key)
	if !ok {
		return nil
	}
	m := obj.GetObjectMeta()
	if m.DeletionTimestamp != nil {
		if err := c.processDeleting(ctx, key, obj); err != nil {
			return fmt.Errorf("gc %s: %w", key, err)
		}
		return nil
	}
	if len(m.OwnerReferences) == 0 {
		return nil
	}
	if err := c.processDependent(ctx, key, obj); err != nil {
		return fmt.Errorf("gc %s: %w", key, err)
	}
	return nil
}

func revision(obj manifests.Object) uint64 {
	n, _ := strconv.ParseUint(obj.GetObjectMeta().ResourceVersion, 10, 64)
	return n
}

// processDeleting finishes the foreground or orphan deletion of obj, or
// deletes it when its finalizers are gone.
func (c *Collector) processDeleting(ctx context.Context, key string, obj manifests.Object) error {
	m := obj.GetObjectMeta()
	switch {
	case slices.Contains(m.Finalizers, manifests.FinalizerOrphan):
		if err := c.orphanDependents(ctx, obj); err != nil {
			return err
		}
		return controller.RemoveFinalizer(ctx, c.st, itemResource(key), obj, manifests.FinalizerOrphan)
	case slices.Contains(m.Finalizers, manifests.FinalizerForeground):
		blocking := 0
		var errs []error
		for _, dep := range c.dependentsOf(m.UID) {
			if blocks(dep, m.UID) {
				blocking++
			}
			if dep.GetObjectMeta().DeletionTimestamp != nil {
				continue
			}
			// A dependent that owns objects itself goes in foreground
			// too. The kind is checked as well as the index: its own
			// dependents may be newer than the caches.
			policy := PropagationBackground
			if c.hasDependents(dep.GetObjectMeta().UID) || c.isOwnerKind(dep) {
				policy = PropagationForeground
			}
			if _, err := Delete(ctx, c.st, dep, policy, c.now()); err != nil && !client.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete dependent %s: %w", dep.GetObjectMeta().Name, err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		if blocking > 0 {
			return nil // requeued as each dependent goes
		}
		// The caches show no blocking dependent: make sure of it in the
		// store (a dependent may be newer than the caches).
		deps, err := c.storeDependents(ctx, obj)
		if err != nil {
			return err
		}
		for _, dep := range deps {
			if !blocks(dep, m.UID) {
				continue
			}
			blocking++
			if dep.GetObjectMeta().DeletionTimestamp == nil {
				// Not cached yet: an owner kind goes in foreground, as above.
				policy := PropagationBackground
				if c.hasDependents(dep.GetObjectMeta().UID) || c.isOwnerKind(dep) {
					policy = PropagationForeground
				}
				if _, err := Delete(ctx, c.st, dep, policy, c.now()); err != nil && !client.IsNotFound(err) {
					return fmt.Errorf("delete dependent %s: %w", dep.GetObjectMeta().Name, err)
				}
			}
		}
		if blocking > 0 {
			return fmt.Errorf("%d dependents not cached yet: %w", blocking, controller.ErrRetry)
		}
		return controller.RemoveFinalizer(ctx, c.st, itemResource(key), obj, manifests.FinalizerForeground)
	case len(m.Finalizers) == 0:
		resource, ns, name := splitItemKey(key)
		if _, err := c.st.Delete(ctx, resource, ns, name, revision(obj)); err != nil && !client.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// blocks reports whether dep's reference to owner has blockOwnerDeletion.
func blocks(dep manifests.Object, owner string) bool {
	for _, r := range dep.GetObjectMeta().OwnerReferences {
		if r.UID == owner && r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion {
			return true
		}
	}
	return false
}

// orphanDependents removes the references to owner from its dependents.
// They are listed from the store, not the caches: a dependent the caches
// do not show yet must not lose its owner without being orphaned (it
// would then be collected).
func (c *Collector) orphanDependents(ctx context.Context, ownerObj manifests.Object) error {
	owner := ownerObj.GetObjectMeta().UID
	deps, err := c.storeDependents(ctx, ownerObj)
	if err != nil {
		return err
	}
	var errs []error
	for _, dep := range deps {
		cp := manifests.DeepCopy(dep)
		m := cp.GetObjectMeta()
		m.OwnerReferences = slices.DeleteFunc(m.OwnerReferences, func(r manifests.OwnerReference) bool { return r.UID == owner })
		if len(m.OwnerReferences) == 0 {
			m.OwnerReferences = nil
		}
		if _, err := c.st.Update(ctx, cp); err != nil && !client.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("orphan %s: %w", m.Name, err))
		}
	}
	return errors.Join(errs...)
}

// storeDependents lists, from the store, the objects that reference
// owner, among the resources the collector watches.
func (c *Collector) storeDependents(ctx context.Context, owner manifests.Object) ([]manifests.Object, error) {
	om := owner.GetObjectMeta()
	var out []manifests.Object
	resources := make([]string, 0, len(c.listers))
	for r := range c.listers {
		resources = append(resources, r)
	}
	slices.Sort(resources)
	for _, r := range resources {
		k, err := manifests.KindForResource(r)
		if err != nil {
			continue
		}
		ns := ""
		if k.Namespaced {
			ns = om.Namespace
		} else if om.Namespace != "" {
			continue // a namespaced owner has no cluster-scoped dependents
		}
		objs, _, err := c.st.List(ctx, r, ns, manifests.Selector{})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", r, err)
		}
		for _, o := range objs {
			if slices.ContainsFunc(o.GetObjectMeta().OwnerReferences, func(ref manifests.OwnerReference) bool { return ref.UID == om.UID }) {
				out = append(out, o)
			}
		}
	}
	return out, nil
}

// ownerState is what became of one owner.
type ownerState int

const (
	ownerAbsent ownerState = iota
	ownerSolid
	ownerDeleting
)

// owner looks ref up by uid: in the caches first, then (the owner may be
// newer than the cache) in the store.
func (c *Collector) owner(ctx context.Context, namespace string, ref manifests.OwnerReference) (ownerState, error) {
	c.mu.Lock()
	key, ok := c.byUID[ref.UID]
	c.mu.Unlock()
	var obj manifests.Object
	if ok {
		obj, ok = c.cached(key)
	}
	if !ok {
		k, err := manifests.KindFor(ref.APIVersion, ref.Kind)
		if err != nil {
			return ownerAbsent, nil // a kind this cluster does not have
		}
		ns := namespace
		if !k.Namespaced {
			ns = ""
		}
		got, err := c.st.Get(ctx, k.Resource, ns, ref.Name)
		if client.IsNotFound(err) {
			return ownerAbsent, nil
		}
		if err != nil {
			return ownerAbsent, err
		}
		obj = got
	}
	m := obj.GetObjectMeta()
	switch {
	case m.UID != ref.UID:
		return ownerAbsent, nil
	case m.DeletionTimestamp != nil:
		return ownerDeleting, nil
	}
	return ownerSolid, nil
}

// processDependent deletes obj when every owner is gone, and drops the
// references to missing owners when some owner remains.
func (c *Collector) processDependent(ctx context.Context, key string, obj manifests.Object) error {
	m := obj.GetObjectMeta()
	var dangling []string
	solid, deleting := 0, 0
	for _, ref := range m.OwnerReferences {
		st, err := c.owner(ctx, m.Namespace, ref)
		if err != nil {
			return err
		}
		switch st {
		case ownerAbsent:
			dangling = append(dangling, ref.UID)
		case ownerSolid:
			solid++
		case ownerDeleting:
			deleting++
		}
	}
	switch {
	case len(dangling) == 0:
		return nil
	case solid > 0 || deleting > 0:
		// Keep the object; forget the owners that are gone.
		cp := manifests.DeepCopy(obj)
		cm := cp.GetObjectMeta()
		cm.OwnerReferences = slices.DeleteFunc(cm.OwnerReferences, func(r manifests.OwnerReference) bool { return slices.Contains(dangling, r.UID) })
		if _, err := c.st.Update(ctx, cp); err != nil && !client.IsNotFound(err) {
			return fmt.Errorf("remove dangling owner references: %w", err)
		}
		return nil
	}
	// Every owner is gone: delete, in foreground when obj has dependents
	// of its own that wait for it (Kubernetes deletes them in background
	// unless told otherwise; so do we).
	if _, err := Delete(ctx, c.st, obj, PropagationBackground, c.now()); err != nil && !client.IsNotFound(err) {
		return fmt.Errorf("delete orphan: %w", err)
	}
	return nil
}
