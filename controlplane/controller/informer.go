package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

// Watcher is what an informer needs of the store.
type Watcher interface {
	Watch(ctx context.Context, resource, namespace string) (<-chan store.Event, error)
}

// Handler is told of every change the informer applies to its cache: old
// is nil for an addition, new is nil for a deletion. Both are cached
// objects: read them, never modify them. Handlers run on the informer's
// goroutine and should only queue keys.
type Handler func(old, new manifests.Object)

// Informer keeps an in-memory copy of every object of one resource, fed
// by a store watch. Objects it hands out are shared and read-only.
type Informer struct {
	w        Watcher
	resource string

	mu    sync.RWMutex
	items map[string]manifests.Object
	// keys are the keys of items, sorted, for List; nil when an addition
	// or deletion made them stale (updates, the common change, do not).
	keys []string
	// controlled are the keys of the objects each controller (by UID)
	// owns, for ListControlledBy.
	controlled map[string]map[string]struct{}
	handlers   []Handler
	synced     chan struct{}
	once       sync.Once
}

// NewInformer returns an informer of resource (e.g. "pods") across all
// namespaces. Call Run to start it.
func NewInformer(w Watcher, resource string) *Informer {
	return &Informer{w: w, resource: resource, items: map[string]manifests.Object{}, controlled: map[string]map[string]struct{}{}, synced: make(chan struct{})}
}

// Key is the cache key of obj: "namespace/name", or "name" when it is
// cluster-scoped.
func Key(obj manifests.Object) string {
	m := obj.GetObjectMeta()
	if m.Namespace == "" {
		return m.Name
	}
	return m.Namespace + "/" + m.Name
}

// SplitKey reverses Key.
func SplitKey(key string) (namespace, name string) {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i], key[i+1:]
	}
	return "", key
}

// AddHandler registers h. Register handlers before Run.
func (i *Informer) AddHandler(h Handler) {
	i.mu.Lock()
	i.handlers = append(i.handlers, h)
	i.mu.Unlock()
}

// HasSynced reports whether the cache has held the complete state once.
func (i *Informer) HasSynced() bool {
	select {
	case <-i.synced:
		return true
	default:
		return false
	}
}

// WaitForSync blocks until the cache is synced or ctx is done.
func (i *Informer) WaitForSync(ctx context.Context) error {
	select {
	case <-i.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for %s cache: %w", i.resource, ctx.Err())
	}
}

// Get returns the cached object under key.
func (i *Informer) Get(key string) (manifests.Object, bool) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	o, ok := i.items[key]
	return o, ok
}

// List returns the cached objects whose labels match sel, ordered by key.
func (i *Informer) List(sel manifests.Selector) []manifests.Object {
	i.mu.RLock()
	if i.keys == nil {
		i.mu.RUnlock()
		i.mu.Lock()
		defer i.mu.Unlock()
		if i.keys == nil {
			keys := make([]string, 0, len(i.items))
			for k := range i.items {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			i.keys = keys
		}
	} else {
		defer i.mu.RUnlock()
	}
	out := make([]manifests.Object, 0, len(i.keys))
	for _, k := range i.keys {
		if o := i.items[k]; sel.Matches(o.GetObjectMeta().Labels) {
			out = append(out, o)
		}
	}
	return out
}

// ListControlledBy returns the cached objects whose controller (the owner
// reference marked controller) has UID uid, ordered by key: what a
// controller reads of its own objects without going over every object.
func (i *Informer) ListControlledBy(uid string) []manifests.Object {
	i.mu.RLock()
	defer i.mu.RUnlock()
	keys := make([]string, 0, len(i.controlled[uid]))
	for k := range i.controlled[uid] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]manifests.Object, 0, len(keys))
	for _, k := range keys {
		out = append(out, i.items[k])
	}
	return out
}

// index files key under the UID of obj's controller, if any (or removes
// it, when add is false).
func (i *Informer) index(key string, obj manifests.Object, add bool) {
	ref := manifests.GetControllerOf(obj)
	if ref == nil {
		return
	}
	keys := i.controlled[ref.UID]
	if add {
		if keys == nil {
			keys = map[string]struct{}{}
			i.controlled[ref.UID] = keys
		}
		keys[key] = struct{}{}
		return
	}
	delete(keys, key)
	if len(keys) == 0 {
		delete(i.controlled, ref.UID)
	}
}

// Run watches the store until ctx is done. If the watch ends early it is
// restarted; objects that disappeared meanwhile are reported as deleted.
func (i *Informer) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := i.watchOnce(ctx)
		if ctx.Err() != nil {
			break
		}
		slog.WarnContext(ctx, "informer watch ended, restarting", "resource", i.resource, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

func (i *Informer) watchOnce(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := i.w.Watch(ctx, i.resource, "")
	if err != nil {
		return fmt.Errorf("watch %s: %w", i.resource, err)
	}
	seen := map[string]bool{} // keys listed before Synced, to drop stale ones
	listing := true
	for ev := range ch {
		if ev.Type == store.Synced {
			if listing {
				i.dropUnseen(seen)
				listing = false
				i.once.Do(func() { close(i.synced) })
			}
			continue
		}
		if ev.Object == nil {
			continue
		}
		key := Key(ev.Object)
		if ev.Type == client.Deleted {
			i.apply(key, nil)
			continue
		}
		if listing {
			seen[key] = true
		}
		i.apply(key, ev.Object)
	}
	return fmt.Errorf("watch %s: channel closed", i.resource)
}

// apply stores obj under key (deletes it when obj is nil) and notifies.
func (i *Informer) apply(key string, obj manifests.Object) {
	i.mu.Lock()
	old, had := i.items[key]
	if obj == nil {
		if !had {
			i.mu.Unlock()
			return
		}
		delete(i.items, key)
		i.keys = nil
		i.index(key, old, false)
	} else {
		if had && old.GetObjectMeta().ResourceVersion == obj.GetObjectMeta().ResourceVersion {
			i.mu.Unlock()
			return // replayed by a restarted watch
		}
		if !had {
			i.keys = nil
		} else {
			i.index(key, old, false)
		}
		i.items[key] = obj
		i.index(key, obj, true)
	}
	hs := i.handlers
	i.mu.Unlock()
	if !had {
		old = nil
	}
	for _, h := range hs {
		h(old, obj)
	}
}

func (i *Informer) dropUnseen(seen map[string]bool) {
	i.mu.RLock()
	var gone []string
	for k := range i.items {
		if !seen[k] {
			gone = append(gone, k)
		}
	}
	i.mu.RUnlock()
	for _, k := range gone {
		i.apply(k, nil)
	}
}
