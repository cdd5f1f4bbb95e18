// Package controller holds the pieces every reconcile loop shares: a
// de-duplicating, rate-limited key queue and an informer that keeps a
// read-only cache of one resource fed by a store watch (the
// sample-controller pattern: watch -> key queue -> sync(key)).
package controller

import (
	"context"
	"sync"
	"time"
)

// Backoff bounds of the per-key exponential retry delay.
const (
	DefaultBaseDelay = 50 * time.Millisecond
	DefaultMaxDelay  = 30 * time.Second
)

// Queue is a work queue of keys. A key is held at most once while waiting,
// and never handed to two workers at the same time: a key added while it is
// being processed is queued again when Done is called for it.
type Queue struct {
	base, max time.Duration

	mu         sync.Mutex
	items      []string
	dirty      map[string]bool
	processing map[string]bool
	failures   map[string]int
	shutdown   bool
	signal     chan struct{}
}

// NewQueue returns a queue whose retry delay per key starts at base and
// doubles up to max. Zero values take the defaults.
func NewQueue(base, max time.Duration) *Queue {
	if base <= 0 {
		base = DefaultBaseDelay
	}
	if max <= 0 {
		max = DefaultMaxDelay
	}
	return &Queue{
		base:       base,
		max:        max,
		dirty:      map[string]bool{},
		processing: map[string]bool{},
		failures:   map[string]int{},
		signal:     make(chan struct{}, 1),
	}
}

func (q *Queue) wake() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// Add queues key unless it is already waiting.
func (q *Queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown || q.dirty[key] {
		return
	}
	q.dirty[key] = true
	if q.processing[key] {
		return
	}
	q.items = append(q.items, key)
	q.wake()
}

// AddAfter queues key once d has passed.
func (q *Queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	time.AfterFunc(d, func() { q.Add(key) })
}

// AddRateLimited queues key after its current backoff delay and counts one
// more failure for it.
func (q *Queue) AddRateLimited(key string) {
	q.mu.Lock()
	n := q.failures[key]
	q.failures[key] = n + 1
	q.mu.Unlock()
	q.AddAfter(key, q.delay(n))
}

func (q *Queue) delay(failures int) time.Duration {
	d := q.base
	for i := 0; i < failures; i++ {
		d *= 2
		if d >= q.max {
			return q.max
		}
	}
	return d
}

// Forget resets the backoff of key, after it was processed successfully.
func (q *Queue) Forget(key string) {
	q.mu.Lock()
	delete(q.failures, key)
	q.mu.Unlock()
}

// NumRequeues is how many times key failed since it was last forgotten.
func (q *Queue) NumRequeues(key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failures[key]
}

// Len is the number of keys waiting.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Get blocks until a key is available and marks it as being processed. It
// returns false when ctx is done or the queue was shut down. The caller
// must call Done with the key.
func (q *Queue) Get(ctx context.Context) (string, bool) {
	for {
		q.mu.Lock()
		if q.shutdown {
			q.mu.Unlock()
			return "", false
		}
		if len(q.items) > 0 {
			key := q.items[0]
			q.items[0] = ""
			q.items = q.items[1:]
			delete(q.dirty, key)
			q.processing[key] = true
			if len(q.items) > 0 {
				q.wake() // let another waiter take the next one
			}
			q.mu.Unlock()
			return key, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", false
		case <-q.signal:
		}
	}
}

// Done marks key as processed; if it was added meanwhile it is queued again.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] && !q.shutdown {
		q.items = append(q.items, key)
		q.wake()
	}
}

// ShutDown makes every Get return false; later adds are ignored.
func (q *Queue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.shutdown {
		q.shutdown = true
		close(q.signal) // every wake checks shutdown under mu first
	}
}
