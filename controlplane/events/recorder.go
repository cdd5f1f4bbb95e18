// Package events records Kubernetes-style Event objects about other
// objects: repeated identical events are folded into one with a count, and
// old events are garbage-collected.
package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

const resource = "events"

// Defaults of Options.
const (
	DefaultDedupWindow = 10 * time.Minute
	DefaultTTL         = time.Hour
)

// Store is what the recorder needs of the object store.
type Store interface {
	Create(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Get(ctx context.Context, resource, namespace, name string) (manifests.Object, error)
	List(ctx context.Context, resource, namespace string, sel manifests.Selector) ([]manifests.Object, uint64, error)
	Delete(ctx context.Context, resource, namespace, name string, rev uint64) (manifests.Object, error)
}

// Options tune a Recorder. Zero values take the defaults.
type Options struct {
	// Component is the event's source.component, e.g. "default-scheduler".
	Component string
	// DedupWindow is how long an identical event updates the previous one
	// (count, lastTimestamp) instead of creating a new one.
	DedupWindow time.Duration
	// TTL is the age (since lastTimestamp) past which GC deletes an event.
	TTL time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Recorder creates events in the store.
type Recorder struct {
	st   Store
	opts Options

	mu   sync.Mutex
	last map[dedupKey]*manifests.Event // the stored event of each recent (object, reason, message)
}

type dedupKey struct {
	kind, namespace, name, uid, eventType, reason, message string
}

// NewRecorder returns a recorder writing to st.
func NewRecorder(st Store, opts Options) *Recorder {
	if opts.DedupWindow <= 0 {
		opts.DedupWindow = DefaultDedupWindow
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Recorder{st: st, opts: opts, last: map[dedupKey]*manifests.Event{}}
}

// Eventf records an event of eventType (manifests.EventNormal or
// EventWarning) about obj. Errors are returned for the caller to log;
// recording an event is never worth failing a reconcile for.
func (r *Recorder) Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error {
	ref, err := reference(obj)
	if err != nil {
		return fmt.Errorf("record event %s: %w", reason, err)
	}
	msg := fmt.Sprintf(format, args...)
	key := dedupKey{ref.Kind, ref.Namespace, ref.Name, ref.UID, eventType, reason, msg}
	now := r.opts.Now().UTC().Truncate(time.Second)

	r.mu.Lock()
	defer r.mu.Unlock() // serialises writes per recorder: events are rare
	if prev, ok := r.last[key]; ok && now.Sub(prev.LastTimestamp) < r.opts.DedupWindow {
		ev, err := r.bump(ctx, prev, now)
		if err == nil {
			r.last[key] = ev
			return nil
		}
		if !client.IsNotFound(err) {
			return fmt.Errorf("record event %s on %s %s: %w", reason, ref.Kind, ref.Name, err)
		}
		// The event was deleted (GC, operator): start a new one.
	}
	ev := &manifests.Event{
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             msg,
		Type:                eventType,
		Source:              manifests.EventSource{Component: r.opts.Component},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: r.opts.Component,
	}
	ev.APIVersion, ev.Kind = "v1", "Event"
	ev.Namespace = eventNamespace(ref)
	var stored manifests.Object
	for attempt := 0; ; attempt++ {
		ev.Name = fmt.Sprintf("%s.%x", ref.Name, r.opts.Now().UnixNano()+int64(attempt))
		stored, err = r.st.Create(ctx, ev)
		if err == nil || client.CodeOf(err) != client.CodeExists || attempt == 3 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("record event %s on %s %s: %w", reason, ref.Kind, ref.Name, err)
	}
	if e, ok := stored.(*manifests.Event); ok {
		r.last[key] = e
	}
	return nil
}

// bump increments the count of prev, retrying on a conflicting write.
func (r *Recorder) bump(ctx context.Context, prev *manifests.Event, now time.Time) (*manifests.Event, error) {
	cur := *prev
	for attempt := 0; ; attempt++ {
		next := cur
		next.Count++
		next.LastTimestamp = now
		stored, err := r.st.Update(ctx, &next)
		if err == nil {
			if e, ok := stored.(*manifests.Event); ok {
				return e, nil
			}
			return &next, nil
		}
		if !client.IsConflict(err) || attempt == 3 {
			return nil, err
		}
		fresh, err := r.st.Get(ctx, resource, prev.Namespace, prev.Name)
		if err != nil {
			return nil, err
		}
		e, ok := fresh.(*manifests.Event)
		if !ok {
			return nil, fmt.Errorf("event %s/%s: stored object is a %T", prev.Namespace, prev.Name, fresh)
		}
		cur = *e
	}
}

// reference describes obj as an event's involvedObject.
func reference(obj manifests.Object) (manifests.ObjectReference, error) {
	k, err := manifests.KindOf(obj)
	if err != nil {
		return manifests.ObjectReference{}, err
	}
	m := obj.GetObjectMeta()
	return manifests.ObjectReference{
		Kind:            k.Kind,
		APIVersion:      k.APIVersion,
		Namespace:       m.Namespace,
		Name:            m.Name,
		UID:             m.UID,
		ResourceVersion: m.ResourceVersion,
	}, nil
}

// eventNamespace is where events about ref live: its namespace, or
// "default" for cluster-scoped objects such as nodes (as in Kubernetes).
func eventNamespace(ref manifests.ObjectReference) string {
	if ref.Namespace == "" {
		return "default"
	}
	return ref.Namespace
}

// CollectGarbage deletes the events whose lastTimestamp is older than the
// TTL and forgets expired entries of the dedup cache. It returns how many
// events it deleted.
func (r *Recorder) CollectGarbage(ctx context.Context) (int, error) {
	now := r.opts.Now()
	r.mu.Lock()
	for k, ev := range r.last {
		if now.Sub(ev.LastTimestamp) >= r.opts.DedupWindow {
			delete(r.last, k)
		}
	}
	r.mu.Unlock()

	objs, _, err := r.st.List(ctx, resource, "", manifests.Selector{})
	if err != nil {
		return 0, fmt.Errorf("list events: %w", err)
	}
	var errs []error
	n := 0
	for _, o := range objs {
		ev, ok := o.(*manifests.Event)
		if !ok {
			continue
		}
		last := ev.LastTimestamp
		if last.IsZero() {
			last = ev.CreationTimestamp
		}
		if now.Sub(last) < r.opts.TTL {
			continue
		}
		var rev uint64
		fmt.Sscan(ev.ResourceVersion, &rev)
		// Conditional: an event bumped meanwhile survives.
		if _, err := r.st.Delete(ctx, resource, ev.Namespace, ev.Name, rev); err != nil {
			if !client.IsNotFound(err) && !client.IsConflict(err) {
				errs = append(errs, fmt.Errorf("delete event %s/%s: %w", ev.Namespace, ev.Name, err))
			}
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// RunGC collects garbage every interval (TTL/10 when zero) until ctx is
// done. Errors go to onError, which may be nil.
func (r *Recorder) RunGC(ctx context.Context, interval time.Duration, onError func(error)) {
	if interval <= 0 {
		interval = r.opts.TTL / 10
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.CollectGarbage(ctx); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
