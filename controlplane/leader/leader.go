// Package leader elects one leader among several control-plane processes
// with a lease held in a JetStream KV key: the leader creates the key, then
// renews it by compare-and-swap on its revision every ttl/3; a follower
// takes the key over (again by compare-and-swap) once it has stayed
// unchanged for ttl. Time is judged twice, both ways safe against clock
// skew: by how long the follower itself has seen the same revision, and by
// the server's timestamp of the entry (Created()).
package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KV is what the election needs of the bucket holding the lease.
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
}

// Record is the value of the lease key. The time of the last renewal is
// the entry's server timestamp; RenewTime is the holder's own clock, for
// people reading the key.
type Record struct {
	Holder               string    `json:"holder"`
	LeaseDurationSeconds float64   `json:"leaseDurationSeconds"`
	AcquireTime          time.Time `json:"acquireTime"`
	RenewTime            time.Time `json:"renewTime"`
	LeaderTransitions    int       `json:"leaderTransitions"`
}

// Callbacks are told of leadership changes.
type Callbacks struct {
	// OnStartedLeading runs (in its own goroutine) when this process
	// becomes the leader; ctx is cancelled when it stops being the leader.
	// Elect waits for it to return before it campaigns again.
	OnStartedLeading func(ctx context.Context)
	// OnStoppedLeading is called after OnStartedLeading has returned.
	OnStoppedLeading func()
	// OnNewLeader is called when the observed holder changes ("" when none).
	OnNewLeader func(id string)
}

// Options tune an election; zero values take the defaults.
type Options struct {
	// RetryPeriod is how often a follower reads the lease and the leader
	// renews it (ttl/3).
	RetryPeriod time.Duration
	// Now is the local clock.
	Now func() time.Time
}

// Elect campaigns for key in kv as id until ctx is done, calling cb as
// leadership comes and goes. A leader that cannot renew for ttl (measured
// from the start of its last successful renewal) steps down before any
// follower may take over. When ctx is done a leader releases the key, so
// that another process takes over at once.
func Elect(ctx context.Context, kv KV, key, id string, ttl time.Duration, cb Callbacks, opts ...Options) error {
	if ttl <= 0 {
		return errors.New("leader election: ttl must be positive")
	}
	if id == "" {
		return errors.New("leader election: empty id")
	}
	e := &elector{kv: kv, key: key, id: id, ttl: ttl, cb: cb, retry: ttl / 3, now: time.Now}
	if len(opts) > 0 {
		if opts[0].RetryPeriod > 0 {
			e.retry = opts[0].RetryPeriod
		}
		if opts[0].Now != nil {
			e.now = opts[0].Now
		}
	}
	for ctx.Err() == nil {
		if !e.acquire(ctx) {
			break
		}
		e.lead(ctx)
	}
	return nil
}

type elector struct {
	kv    KV
	key   string
	id    string
	ttl   time.Duration
	retry time.Duration
	cb    Callbacks
	now   func() time.Time

	// What the follower last saw: revision and when it first saw it.
	seenRev  uint64
	seenAt   time.Time
	seenHold string
	rev      uint64 // revision of our own record while leading
	rec      Record
}

func (e *elector) observe(holder string) {
	if holder != e.seenHold {
		e.seenHold = holder
		if e.cb.OnNewLeader != nil {
			e.cb.OnNewLeader(holder)
		}
	}
}

// acquire tries to get the lease every retry period until it does (true)
// or ctx is done (false).
func (e *elector) acquire(ctx context.Context) bool {
	t := time.NewTicker(e.retry)
	defer t.Stop()
	for {
		ok, err := e.tryAcquire(ctx)
		if err != nil && ctx.Err() == nil {
			slog.DebugContext(ctx, "leader election", "key", e.key, "err", err)
		}
		if ok {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

func (e *elector) tryAcquire(ctx context.Context) (bool, error) {
	now := e.now()
	entry, err := e.kv.Get(ctx, e.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		e.observe("")
		rec := Record{Holder: e.id, LeaseDurationSeconds: e.ttl.Seconds(), AcquireTime: now.UTC(), RenewTime: now.UTC()}
		raw, _ := json.Marshal(rec)
		rev, err := e.kv.Create(ctx, e.key, raw)
		if err != nil {
			return false, fmt.Errorf("create lease %s: %w", e.key, err)
		}
		e.won(rec, rev)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read lease %s: %w", e.key, err)
	}
	var cur Record
	if err := json.Unmarshal(entry.Value(), &cur); err != nil {
		cur = Record{} // unreadable: treat as held by nobody, but still wait for it to age
	}
	e.observe(cur.Holder)
	if entry.Revision() != e.seenRev {
		e.seenRev, e.seenAt = entry.Revision(), now
	}
	if cur.Holder == e.id {
		// Ours from an earlier term of this process (e.g. a renewal that
		// succeeded after we gave up): take it back at once.
	} else if now.Sub(e.seenAt) < e.ttl || now.Sub(entry.Created()) < e.ttl {
		return false, nil
	}
	rec := Record{Holder: e.id, LeaseDurationSeconds: e.ttl.Seconds(), AcquireTime: now.UTC(), RenewTime: now.UTC(), LeaderTransitions: cur.LeaderTransitions}
	if cur.Holder != e.id {
		rec.LeaderTransitions++
	}
	raw, _ := json.Marshal(rec)
	rev, err := e.kv.Update(ctx, e.key, raw, entry.Revision())
	if err != nil {
		return false, fmt.Errorf("take over lease %s: %w", e.key, err)
	}
	e.won(rec, rev)
	return true, nil
}

func (e *elector) won(rec Record, rev uint64) {
	e.rec, e.rev = rec, rev
	e.observe(e.id)
}

// lead runs OnStartedLeading and renews the lease until renewing fails
// for ttl, the lease is taken, or ctx is done.
func (e *elector) lead(ctx context.Context) {
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if e.cb.OnStartedLeading != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.cb.OnStartedLeading(lctx)
		}()
	}
	lastOK := e.now() // the acquisition counts as a renewal started now (or later)
	t := time.NewTicker(e.retry)
	deadline := time.NewTimer(e.ttl)
	defer deadline.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-deadline.C:
			slog.WarnContext(ctx, "leader election: could not renew for the whole ttl, stepping down", "key", e.key, "id", e.id)
			break loop
		case <-t.C:
			start := e.now()
			left := lastOK.Add(e.ttl).Sub(start)
			if left <= 0 {
				break loop
			}
			err := e.renew(ctx, start, left)
			if err == nil {
				lastOK = start
				deadline.Reset(e.ttl - e.now().Sub(start))
				continue
			}
			if ctx.Err() != nil {
				break loop
			}
			if errors.Is(err, errLost) {
				slog.WarnContext(ctx, "leader election: lease lost", "key", e.key, "id", e.id, "err", err)
				break loop
			}
			slog.WarnContext(ctx, "leader election: renew failed, retrying", "key", e.key, "id", e.id, "err", err)
		}
	}
	t.Stop()
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		e.release()
	}
	e.seenRev, e.seenAt = 0, time.Time{}
	e.seenHold = ""
	if e.cb.OnStoppedLeading != nil {
		e.cb.OnStoppedLeading()
	}
}

var errLost = errors.New("lease held by another")

func (e *elector) renew(ctx context.Context, now time.Time, timeout time.Duration) error {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rec := e.rec
	rec.RenewTime = now.UTC()
	raw, _ := json.Marshal(rec)
	rev, err := e.kv.Update(rctx, e.key, raw, e.rev)
	if err == nil {
		e.rec, e.rev = rec, rev
		return nil
	}
	// A conflict: see whether the lease is still ours (an earlier renewal
	// may have been applied although its reply was lost).
	entry, gerr := e.kv.Get(rctx, e.key)
	if gerr != nil {
		if errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
			return fmt.Errorf("renew %s: %w (deleted)", e.key, errLost)
		}
		return fmt.Errorf("renew %s: %w", e.key, err)
	}
	var cur Record
	if json.Unmarshal(entry.Value(), &cur) == nil && cur.Holder == e.id {
		e.rev = entry.Revision()
		return fmt.Errorf("renew %s: %w", e.key, err) // retried at the next tick with the right revision
	}
	return fmt.Errorf("renew %s: %w (now %q)", e.key, errLost, cur.Holder)
}

// release deletes the lease if it is still ours, so that a follower takes
// over without waiting for it to expire.
func (e *elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.retry+time.Second)
	defer cancel()
	if err := e.kv.Delete(ctx, e.key, jetstream.LastRevision(e.rev)); err != nil {
		slog.Debug("leader election: release", "key", e.key, "err", err)
	}
}
