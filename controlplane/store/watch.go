package store

import (
	"context"
	"fmt"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/nats-io/nats.go/jetstream"
)

// Synced is the type of the event that follows the initial objects of a
// watch: from then on every event is a change.
const Synced = "SYNCED"

// Event is one item of a watch.
type Event struct {
	// Type is client.Added, client.Modified, client.Deleted or Synced.
	Type string
	// Object is the object after the change; for Deleted the last known
	// object, with the resourceVersion of the delete. Nil for Synced.
	Object manifests.Object
	// Revision is the bucket revision of the change (for Synced, the
	// highest revision delivered so far).
	Revision uint64
}

// Watch streams the objects of resource in namespace ("" = all): first the
// current ones as Added, then one Synced event, then every change. The
// channel closes when ctx is done or the watch fails.
func (s *Store) Watch(ctx context.Context, resource, namespace string) (<-chan Event, error) {
	k, ns, err := resolve(resource, namespace)
	if err != nil {
		return nil, err
	}
	return s.watch(ctx, k.Resource, filter(k, ns))
}

// WatchAll is Watch over every object of every resource, for the API
// server's single watcher that republishes all changes.
func (s *Store) WatchAll(ctx context.Context) (<-chan Event, error) {
	return s.watch(ctx, "all objects", ">")
}

func (s *Store) watch(ctx context.Context, what, keyFilter string) (<-chan Event, error) {
	w, err := s.kv.WatchFiltered(ctx, []string{keyFilter})
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", what, err)
	}
	out := make(chan Event, 256)
	go func() {
		defer close(out)
		defer w.Stop()
		s.run(ctx, w.Updates(), out)
	}()
	return out, nil
}

// run turns KV entries into events until ctx is done or updates closes.
// Every event carries its own decoded object, so receivers may keep or
// change it.
func (s *Store) run(ctx context.Context, updates <-chan jetstream.KeyValueEntry, out chan<- Event) {
	known := map[string][]byte{} // key -> last stored value
	synced := false
	var last uint64
	send := func(ev Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// Until synced, the initial entries are collected so that keys deleted
	// meanwhile are never reported and each key is reported once.
	initial := map[string]uint64{}
	var order []string
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return
		case e, ok = <-updates:
		}
		if !ok {
			return
		}
		if e == nil {
			if synced {
				continue
			}
			synced = true
			for _, key := range order {
				rev, ok := initial[key]
				if !ok {
					continue
				}
				obj, err := s.decode(key, known[key], rev)
				if err != nil {
					continue // not an object this code can read
				}
				delete(initial, key) // a key re-added after a delete is in order twice
				if !send(Event{Type: client.Added, Object: obj, Revision: rev}) {
					return
				}
			}
			initial, order = nil, nil
			if !send(Event{Type: Synced, Revision: last}) {
				return
			}
			continue
		}
		last = max(last, e.Revision())
		key := e.Key()
		if e.Operation() != jetstream.KeyValuePut {
			prev, had := known[key]
			delete(known, key)
			if !synced {
				delete(initial, key)
				continue
			}
			if !had {
				continue
			}
			obj, err := s.decode(key, prev, e.Revision())
			if err != nil {
				continue
			}
			if !send(Event{Type: client.Deleted, Object: obj, Revision: e.Revision()}) {
				return
			}
			continue
		}
		_, had := known[key]
		known[key] = e.Value()
		if !synced {
			if _, seen := initial[key]; !seen {
				order = append(order, key)
			}
			initial[key] = e.Revision()
			continue
		}
		obj, err := s.decode(key, e.Value(), e.Revision())
		if err != nil {
			continue
		}
		typ := client.Modified
		if !had {
			typ = client.Added
		}
		if !send(Event{Type: typ, Object: obj, Revision: e.Revision()}) {
			return
		}
	}
}
