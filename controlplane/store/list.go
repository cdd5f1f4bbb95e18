package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

// WithJetStream gives the store the JetStream context of its bucket, with
// which List finds keys its snapshot missed (fillMissed) and writes are
// group-committed (commit.go).
func WithJetStream(js jetstream.JetStream) Option {
	return func(s *Store) { s.js = js; s.gc = newCommitter(s.kv, js) }
}

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
	gone := map[string]bool{} // delete markers seen
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
			gone[e.Key()] = true
			continue
		}
		obj, err := s.decode(e.Key(), e.Value(), e.Revision())
		if err != nil {
			return nil, 0, fmt.Errorf("list %s: %w", k.Resource, err)
		}
		byKey[e.Key()] = obj
	}
	if err := s.fillMissed(ctx, k, ns, rev, byKey, gone); err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", k.Resource, err)
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

// fillMissed adds to byKey the keys the watcher's snapshot missed. The
// snapshot is the last message of each key as the consumer starts; a key
// rewritten before its old message is delivered (the bucket keeps one
// message per key) is delivered only after the snapshot ends, so a list
// taken while it is rewritten would not hold it. When the bucket changed
// during the list, the keys that exist are read from the stream's subject
// state and any not seen is read by a direct get. Without a JetStream
// handle (WithJetStream) nothing is checked.
func (s *Store) fillMissed(ctx context.Context, k manifests.Kind, ns string, rev uint64, byKey map[string]manifests.Object, gone map[string]bool) error {
	if s.js == nil {
		return nil
	}
	now, err := s.lastRevision(ctx)
	if err != nil || now <= rev {
		return err
	}
	stream, err := s.js.Stream(ctx, "KV_"+s.kv.Bucket())
	if err != nil {
		return fmt.Errorf("objects stream: %w", err)
	}
	prefix := "$KV." + s.kv.Bucket() + "."
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(prefix+filter(k, ns)))
	if err != nil {
		return fmt.Errorf("objects stream subjects: %w", err)
	}
	for subj := range info.State.Subjects {
		key := strings.TrimPrefix(subj, prefix)
		if _, ok := byKey[key]; ok || gone[key] {
			continue
		}
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
		obj, err := s.decode(key, e.Value(), e.Revision())
		if err != nil {
			return err
		}
		byKey[key] = obj
	}
	return nil
}
