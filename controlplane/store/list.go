package store

import (
	"context"
	"fmt"
	"sort"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// filter is the KV key filter of a resource in namespace ("" = all).
func filter(k manifests.Kind, namespace string) string {
	if namespace == "" || !k.Namespaced {
		return messaging.ObjectFilter(k.Resource, "*")
	}
	return messaging.ObjectFilter(k.Resource, namespace)
}

// List returns the objects of resource in namespace ("" = all namespaces)
// whose labels match sel, sorted by namespace and name, and the bucket
// revision the list reflects: every change with a higher revision happened
// after the list was read, so a watch that skips revisions up to it misses
// nothing and sees nothing twice.
func (s *Store) List(ctx context.Context, resource, namespace string, sel manifests.Selector) ([]manifests.Object, uint64, error) {
	k, ns, err := resolve(resource, namespace)
	if err != nil {
		return nil, 0, err
	}
	// Everything up to the stream's last sequence before the watcher starts
	// is part of the snapshot the watcher delivers.
	rev, err := s.lastRevision(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", k.Resource, err)
	}
	w, err := s.kv.WatchFiltered(ctx, []string{filter(k, ns)})
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: watch: %w", k.Resource, err)
	}
	defer w.Stop()
	byKey := map[string]manifests.Object{}
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("list %s: %w", k.Resource, ctx.Err())
		case e, ok = <-w.Updates():
		}
		if !ok {
			return nil, 0, fmt.Errorf("list %s: watcher stopped", k.Resource)
		}
		if e == nil {
			break
		}
		rev = max(rev, e.Revision())
		if e.Operation() != jetstream.KeyValuePut {
			delete(byKey, e.Key())
			continue
		}
		obj, err := s.decode(e.Key(), e.Value(), e.Revision())
		if err != nil {
			return nil, 0, fmt.Errorf("list %s: %w", k.Resource, err)
		}
		byKey[e.Key()] = obj
	}
	out := make([]manifests.Object, 0, len(byKey))
	for _, obj := range byKey {
		if sel.Matches(obj.GetObjectMeta().Labels) {
			out = append(out, obj)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].GetObjectMeta(), out[j].GetObjectMeta()
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out, rev, nil
}

// lastRevision is the last sequence of the bucket's stream.
func (s *Store) lastRevision(ctx context.Context) (uint64, error) {
	st, err := s.kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("bucket status: %w", err)
	}
	si, ok := st.(interface{ StreamInfo() *jetstream.StreamInfo })
	if !ok || si.StreamInfo() == nil {
		return 0, nil
	}
	return si.StreamInfo().State.LastSeq, nil
}
