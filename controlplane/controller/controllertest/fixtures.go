package controllertest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

// Cache is a fixture lister (Get by key, List in key order) that a test
// reloads from the store with Load, so a sync sees exactly what it is given.
type Cache struct {
	mu    sync.Mutex
	items map[string]manifests.Object
}

// Get returns the object under key.
func (c *Cache) Get(key string) (manifests.Object, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.items[key]
	return o, ok
}

// List returns every object, in key order (the selector is not applied).
func (c *Cache) List(manifests.Selector) []manifests.Object {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.items))
	for k := range c.items {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]manifests.Object, len(keys))
	for i, k := range keys {
		out[i] = c.items[k]
	}
	return out
}

// ListControlledBy returns the objects whose controller has UID uid, in
// key order.
func (c *Cache) ListControlledBy(uid string) []manifests.Object {
	var out []manifests.Object
	for _, o := range c.List(manifests.Selector{}) {
		if ref := manifests.GetControllerOf(o); ref != nil && ref.UID == uid {
			out = append(out, o)
		}
	}
	return out
}

// Load replaces the cache's content with the stored objects of resource.
func (c *Cache) Load(t testing.TB, st *store.Store, resource string) {
	t.Helper()
	objs, _, err := st.List(context.Background(), resource, "", manifests.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items = map[string]manifests.Object{}
	for _, o := range objs {
		c.items[controller.Key(o)] = o
	}
}

// Clear empties the cache, as if it had not seen anything yet.
func (c *Cache) Clear() {
	c.mu.Lock()
	c.items = nil
	c.mu.Unlock()
}

// Recorder keeps the reasons and messages of the events a controller
// records.
type Recorder struct {
	mu       sync.Mutex
	reasons  []string
	messages []string
}

// Eventf records reason and the message.
func (r *Recorder) Eventf(_ context.Context, _ manifests.Object, _, reason, format string, args ...any) error {
	r.mu.Lock()
	r.reasons = append(r.reasons, reason)
	r.messages = append(r.messages, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	return nil
}

// Find returns "reason: message" of the first event with reason, or "".
func (r *Recorder) Find(reason string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, got := range r.reasons {
		if got == reason {
			return got + ": " + r.messages[i]
		}
	}
	return ""
}

// Reasons returns the reasons recorded so far, in order.
func (r *Recorder) Reasons() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reasons)
}

// Has reports whether an event with reason was recorded.
func (r *Recorder) Has(reason string) bool { return slices.Contains(r.Reasons(), reason) }
