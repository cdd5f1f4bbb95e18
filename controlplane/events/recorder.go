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
	"github.com/edgeorch/edgeorch/controlplane/controller"
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

	mu      sync.Mutex
	entries map[dedupKey]*entry           // the stored event of each recent (object, reason, message)
	similar map[aggregateKey]*similarSeen // recent messages per (object, type, reason)
	records int                           // calls since the caches were last pruned
}

type dedupKey struct {
	kind, namespace, name, uid, eventType, reason, message string
}

// aggregateKey groups similar events: same object, type and reason, any
// message (Kubernetes' EventAggregatorByReasonFunc).
type aggregateKey struct {
	kind, namespace, name, uid, eventType, reason string
}

// entry is one dedup key's stored event. Its lock serialises the writes
// of that key only: events about different objects or with different
// messages are written concurrently (their round trips to the store
// overlap), not one after another.
type entry struct {
	write sync.Mutex
	ev    *manifests.Event // guarded by write; read under Recorder.mu when refs is 0
	refs  int              // writers holding or waiting for write; guarded by Recorder.mu
}

// similarSeen are the distinct messages of one aggregateKey seen since
// first (up to MaxSimilar of them).
type similarSeen struct {
	messages map[string]bool
	last     time.Time
}

// MaxSimilar is how many events about one object with the same type and
// reason but different messages are stored as they are within the dedup
// window; from the MaxSimilar-th on they are folded into one event whose
// message is CombinedPrefix and the latest message, its count the number
// folded (Kubernetes' event aggregator: a ReplicaSet creating 1,000 pods
// stores 10 SuccessfulCreate events, not 1,000).
const MaxSimilar = 10

// CombinedPrefix starts the message of an event that folds similar ones.
const CombinedPrefix = "(combined from similar events): "

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
	return &Recorder{st: st, opts: opts, entries: map[dedupKey]*entry{}, similar: map[aggregateKey]*similarSeen{}}
}

// Eventf records an event of eventType (manifests.EventNormal or
// EventWarning) about obj and returns once it is stored. Errors are
// returned for the caller to log; recording an event is never worth
// failing a reconcile for. Async records without waiting.
func (r *Recorder) Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error {
	ref, err := reference(obj)
	if err != nil {
		return fmt.Errorf("record event %s: %w", reason, err)
	}
	now := r.opts.Now().UTC().Truncate(time.Second)
	r.mu.Lock()
	key, msg := r.resolveLocked(ref, eventType, reason, fmt.Sprintf(format, args...), now)
	r.mu.Unlock()
	return r.write(ctx, pendingEvent{key: key, ref: ref, eventType: eventType, reason: reason, message: msg, count: 1, at: now})
}

// resolveLocked returns the dedup key an event is stored under and its
// message: as given, or combined with similar ones (MaxSimilar).
func (r *Recorder) resolveLocked(ref manifests.ObjectReference, eventType, reason, msg string, now time.Time) (dedupKey, string) {
	if r.records++; r.records >= 4096 {
		r.records = 0
		r.pruneLocked(now)
	}
	ak := aggregateKey{ref.Kind, ref.Namespace, ref.Name, ref.UID, eventType, reason}
	sim := r.similar[ak]
	if sim == nil || now.Sub(sim.last) >= r.opts.DedupWindow {
		sim = &similarSeen{messages: map[string]bool{}}
		r.similar[ak] = sim
	}
	sim.last = now
	if len(sim.messages) < MaxSimilar {
		sim.messages[msg] = true
	}
	if len(sim.messages) < MaxSimilar {
		return dedupKey{ref.Kind, ref.Namespace, ref.Name, ref.UID, eventType, reason, msg}, msg
	}
	// One key for every combined event of ak: the message is not part of it.
	return dedupKey{ref.Kind, ref.Namespace, ref.Name, ref.UID, eventType, reason, CombinedPrefix}, CombinedPrefix + msg
}

// pruneLocked forgets the dedup and aggregation state older than the
// window.
func (r *Recorder) pruneLocked(now time.Time) {
	for k, e := range r.entries {
		if e.refs == 0 && (e.ev == nil || now.Sub(e.ev.LastTimestamp) >= r.opts.DedupWindow) {
			delete(r.entries, k)
		}
	}
	for k, s := range r.similar {
		if now.Sub(s.last) >= r.opts.DedupWindow {
			delete(r.similar, k)
		}
	}
}

// pendingEvent is an event to store: count occurrences under key, the
// last at at.
type pendingEvent struct {
	key                        dedupKey
	ref                        manifests.ObjectReference
	eventType, reason, message string
	count                      int32
	at                         time.Time
}

// write stores p: a new event, or a bump of the stored one of its key
// within the window.
func (r *Recorder) write(ctx context.Context, p pendingEvent) error {
	r.mu.Lock()
	e := r.entries[p.key]
	if e == nil {
		e = &entry{}
		r.entries[p.key] = e
	}
	e.refs++
	r.mu.Unlock()
	e.write.Lock()
	err := r.writeEntry(ctx, e, p)
	e.write.Unlock()
	r.mu.Lock()
	if e.refs--; e.refs == 0 && e.ev == nil && r.entries[p.key] == e {
		delete(r.entries, p.key)
	}
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("record event %s on %s %s: %w", p.reason, p.ref.Kind, p.ref.Name, err)
	}
	return nil
}

// writeEntry writes p under e's write lock.
func (r *Recorder) writeEntry(ctx context.Context, e *entry, p pendingEvent) error {
	if prev := e.ev; prev != nil && p.at.Sub(prev.LastTimestamp) < r.opts.DedupWindow {
		ev, err := r.bump(ctx, prev, p.message, p.count, p.at)
		if err == nil {
			e.ev = ev
			return nil
		}
		if !client.IsNotFound(err) {
			return err
		}
		// The event was deleted (GC, operator): start a new one.
	}
	ev := &manifests.Event{
		InvolvedObject:      p.ref,
		Reason:              p.reason,
		Message:             p.message,
		Type:                p.eventType,
		Source:              manifests.EventSource{Component: r.opts.Component},
		FirstTimestamp:      p.at,
		LastTimestamp:       p.at,
		Count:               p.count,
		ReportingController: r.opts.Component,
	}
	ev.APIVersion, ev.Kind = "v1", "Event"
	ev.Namespace = eventNamespace(p.ref)
	var stored manifests.Object
	var err error
	for attempt := 0; ; attempt++ {
		ev.Name = fmt.Sprintf("%s.%x", p.ref.Name, r.opts.Now().UnixNano()+int64(attempt))
		stored, err = r.st.Create(ctx, ev)
		if err == nil || client.CodeOf(err) != client.CodeExists || attempt == 3 {
			break
		}
	}
	if err != nil {
		return err
	}
	if s, ok := stored.(*manifests.Event); ok {
		e.ev = s
	}
	return nil
}

// bump adds n to the count of prev and sets its message (the latest of
// combined events), retrying on a conflicting write.
func (r *Recorder) bump(ctx context.Context, prev *manifests.Event, msg string, n int32, now time.Time) (*manifests.Event, error) {
	cur := *prev
	for attempt := 0; ; attempt++ {
		next := cur
		next.Count += n
		next.Message = msg
		next.LastTimestamp = now
		stored, err := controller.UpdateFrom(ctx, r.st, &next, &cur)
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
	r.pruneLocked(now)
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
