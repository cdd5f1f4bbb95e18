package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// Defaults of the background writers (Async).
const (
	// AsyncWriters is how many events Async writes at once.
	AsyncWriters = 8
	// MaxQueued is how many distinct events may wait to be written; past
	// it Async drops new ones (and says so), as the Kubernetes event
	// broadcaster does, rather than hold the controller back.
	MaxQueued = 8192
	// asyncDrain bounds the writes of what is still queued once the
	// context of Async is done.
	asyncDrain = 2 * time.Second
)

// AsyncRecorder records events through a Recorder without waiting for the
// store: the Kubernetes event broadcaster's contract, under which
// recording an event never blocks the controller. Make one with
// Recorder.Async.
type AsyncRecorder struct {
	r *Recorder

	mu      sync.Mutex
	pending map[dedupKey]*queued
	order   []dedupKey // keys ready to be written, oldest first
	closed  bool
	signal  chan struct{}
}

// queued is what waits to be written under one dedup key: the occurrences
// recorded since the last write started, folded into one write.
type queued struct {
	p       pendingEvent // count 0: nothing waiting
	writing bool
	ready   bool // in order
}

// Async returns a recorder whose Eventf queues the event and returns at
// once; AsyncWriters goroutines write the queue through r (deduplication
// and combining as r's Eventf does) until ctx is done, then what is still
// queued for up to two seconds. Occurrences of the same stored event
// queued while it waits or is being written are written as one bump of
// its count, so a burst of similar events costs a few writes. Write errors
// are logged (there is no caller to return them to).
func (r *Recorder) Async(ctx context.Context) *AsyncRecorder {
	a := &AsyncRecorder{r: r, pending: map[dedupKey]*queued{}, signal: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	for range AsyncWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.run(ctx)
		}()
	}
	go func() {
		<-ctx.Done()
		wg.Wait()
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), asyncDrain)
		defer cancel()
		for {
			ok, err := a.writeNext(dctx)
			if !ok {
				return
			}
			if err != nil {
				// The store is gone with the controller: one line, not one per event.
				slog.WarnContext(ctx, "record events after stop: dropped", "events", a.drop(), "err", err)
				return
			}
		}
	}()
	return a
}

// Eventf queues an event of eventType about obj. It returns an error only
// when obj cannot be referred to or the queue is full (the event is then
// dropped); a failed write is logged later.
func (a *AsyncRecorder) Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error {
	ref, err := reference(obj)
	if err != nil {
		return fmt.Errorf("record event %s: %w", reason, err)
	}
	r := a.r
	now := r.opts.Now().UTC().Truncate(time.Second)
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	key, msg := r.resolveLocked(ref, eventType, reason, msg, now)
	r.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fmt.Errorf("record event %s on %s %s: recorder stopped: dropped", reason, ref.Kind, ref.Name)
	}
	q := a.pending[key]
	if q == nil {
		if len(a.pending) >= MaxQueued {
			return fmt.Errorf("record event %s on %s %s: %d events waiting to be written: dropped", reason, ref.Kind, ref.Name, len(a.pending))
		}
		q = &queued{}
		a.pending[key] = q
	}
	count := q.p.count + 1
	q.p = pendingEvent{key: key, ref: ref, eventType: eventType, reason: reason, message: msg, count: count, at: now}
	if !q.writing && !q.ready {
		q.ready = true
		a.order = append(a.order, key)
		select {
		case a.signal <- struct{}{}:
		default:
		}
	}
	return nil
}

// Len is how many distinct events wait to be written or are being
// written.
func (a *AsyncRecorder) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// drop forgets every queued event and returns how many there were.
func (a *AsyncRecorder) drop() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.order)
	for _, k := range a.order {
		delete(a.pending, k)
	}
	a.order = nil
	return n
}

func (a *AsyncRecorder) run(ctx context.Context) {
	for {
		for {
			ok, err := a.writeNext(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				slog.WarnContext(ctx, "record event", "err", err)
			}
			if !ok {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.signal:
		}
	}
}

// writeNext writes the oldest ready key's occurrences and reports whether
// there was one, and the error of its write.
func (a *AsyncRecorder) writeNext(ctx context.Context) (bool, error) {
	a.mu.Lock()
	if len(a.order) == 0 {
		a.mu.Unlock()
		return false, nil
	}
	key := a.order[0]
	a.order[0] = dedupKey{}
	a.order = a.order[1:]
	if len(a.order) > 0 {
		select { // another writer takes the next one
		case a.signal <- struct{}{}:
		default:
		}
	}
	q := a.pending[key]
	p := q.p
	q.p.count = 0
	q.ready, q.writing = false, true
	a.mu.Unlock()

	err := a.r.write(ctx, p)

	a.mu.Lock()
	q.writing = false
	if q.p.count > 0 {
		q.ready = true
		a.order = append(a.order, key)
	} else {
		delete(a.pending, key)
	}
	a.mu.Unlock()
	return true, err
}
