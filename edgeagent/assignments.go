package edgeagent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

var errReconnected = errors.New("reconnected: resync")

// metaAssignmentsRevision is the state meta key of the last assignments
// bucket revision the agent applied.
const metaAssignmentsRevision = "assignmentsRevision"

// revisionFlushInterval is how often the applied revision is written
// behind to the state: a crash loses at most that much progress, which the
// next resync fetches again.
const revisionFlushInterval = time.Second

// watchAssignments keeps a KV watcher on the node's assignments. The first
// watcher of a fresh agent delivers every current assignment, after which
// the local pods that are no longer assigned are removed. Later watchers
// (after a reconnection, or a restart with a stored revision) resume from
// the last applied revision and receive only the changes since; a keys-only
// listing then catches deletes the stream no longer holds.
func (a *Agent) watchAssignments(ctx context.Context, js jetstream.JetStream) {
	delay := 250 * time.Millisecond
	for {
		err := a.watchOnce(ctx, js)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errReconnected) {
			delay = 250 * time.Millisecond
			continue
		}
		a.log.Debug("watch assignments", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-a.conn.connected():
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// resyncStats counts what one resync received.
type resyncStats struct {
	changes int
	bytes   int
}

func (a *Agent) watchOnce(ctx context.Context, js jetstream.JetStream) error {
	reconnected := a.conn.connected()
	kv, err := js.KeyValue(ctx, messaging.BucketAssignments)
	if err != nil {
		return fmt.Errorf("open %s: %w", messaging.BucketAssignments, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	from := a.revs.applied()
	var opts []jetstream.WatchOpt
	if from > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(from+1))
	}
	w, err := kv.Watch(wctx, messaging.AssignmentFilter(a.cfg.NodeName), opts...)
	if err != nil {
		return fmt.Errorf("watch %s: %w", messaging.BucketAssignments, err)
	}
	defer w.Stop()
	seen := map[string]bool{}
	initial := true
	var stats resyncStats
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reconnected:
			return errReconnected
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				if !initial {
					continue
				}
				initial = false
				if from == 0 {
					a.removeAllBut(seen)
					a.log.Info(fmt.Sprintf("resync: full relist, %d assignments, %d bytes", stats.changes, stats.bytes),
						"changes", stats.changes, "bytes", stats.bytes)
				} else {
					if err := a.checkKeys(ctx, kv, &stats); err != nil {
						return err
					}
					full := a.assignedBytes()
					a.log.Info(fmt.Sprintf("resync: %d changes, %d bytes (full relist would be %d bytes)", stats.changes, stats.bytes, full),
						"from", from, "changes", stats.changes, "bytes", stats.bytes, "fullBytes", full)
				}
				seen = nil
				continue
			}
			if initial {
				stats.changes++
				stats.bytes += len(e.Value())
			}
			ns, name, put := a.applyEntry(ctx, e)
			a.revs.note(e.Revision())
			if initial && put {
				seen[podKey(ns, name)] = true
			}
		}
	}
}

// checkKeys completes a resumed watch: a keys-only listing (no values) of
// the node's assignments is compared with the local pods. Pods no longer
// listed are removed (their delete markers may be gone from the stream);
// listed pods whose revision differs from the local one are fetched.
func (a *Agent) checkKeys(ctx context.Context, kv jetstream.KeyValue, stats *resyncStats) error {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lw, err := kv.Watch(lctx, messaging.AssignmentFilter(a.cfg.NodeName), jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("list %s keys: %w", messaging.BucketAssignments, err)
	}
	defer lw.Stop()
	listed := map[string]uint64{} // by assignment key
	keep := map[string]bool{}     // by pod key
	for done := false; !done; {
		select {
		case <-lctx.Done():
			return fmt.Errorf("list %s keys: %w", messaging.BucketAssignments, lctx.Err())
		case e, ok := <-lw.Updates():
			if !ok {
				return fmt.Errorf("list %s keys: watcher closed", messaging.BucketAssignments)
			}
			if e == nil {
				done = true
				continue
			}
			_, ns, name, err := messaging.ParseAssignmentKey(e.Key())
			if err != nil {
				continue
			}
			listed[e.Key()] = e.Revision()
			keep[podKey(ns, name)] = true
		}
	}
	a.removeAllBut(keep)
	for key, rev := range listed {
		_, ns, name, _ := messaging.ParseAssignmentKey(key)
		if w := a.worker(ns, name); w != nil && w.revision() == rev {
			continue
		}
		e, err := kv.Get(lctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			a.removePod(ns, name)
			continue
		}
		if err != nil {
			return fmt.Errorf("get %s: %w", key, err)
		}
		stats.changes++
		stats.bytes += len(e.Value())
		a.applyEntry(ctx, e)
	}
	return nil
}

// assignedBytes estimates what a full relist of the node's assignments
// would receive: the encoded size of every assigned pod.
func (a *Agent) assignedBytes() int {
	a.mu.Lock()
	ws := make([]*podWorker, 0, len(a.workers))
	for _, w := range a.workers {
		ws = append(ws, w)
	}
	a.mu.Unlock()
	n := 0
	for _, w := range ws {
		if raw, err := json.Marshal(w.pod()); err == nil {
			n += len(raw)
		}
	}
	return n
}

// applyEntry applies one assignment change; put is true when the pod is
// assigned.
func (a *Agent) applyEntry(ctx context.Context, e jetstream.KeyValueEntry) (ns, name string, put bool) {
	_, ns, name, err := messaging.ParseAssignmentKey(e.Key())
	if err != nil {
		a.log.Warn("bad assignment key", "key", e.Key(), "err", err)
		return "", "", false
	}
	if e.Operation() != jetstream.KeyValuePut {
		a.removePod(ns, name)
		return ns, name, false
	}
	var pod manifests.Pod
	if err := json.Unmarshal(e.Value(), &pod); err != nil {
		a.log.Warn("bad assignment", "key", e.Key(), "err", err)
		return ns, name, false
	}
	if pod.Namespace == "" {
		pod.Namespace = ns
	}
	if pod.Name == "" {
		pod.Name = name
	}
	a.upsert(ctx, &pod, e.Revision())
	return ns, name, true
}

// revisionStore remembers the last applied assignments revision, written
// behind to the state database.
type revisionStore struct {
	db *state.DB

	mu      sync.Mutex
	rev     uint64
	written uint64
}

func newRevisionStore(db *state.DB) (*revisionStore, error) {
	raw, err := db.Meta(metaAssignmentsRevision)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", metaAssignmentsRevision, err)
	}
	s := &revisionStore{db: db}
	if len(raw) == 8 {
		s.rev = binary.BigEndian.Uint64(raw)
		s.written = s.rev
	}
	return s, nil
}

func (s *revisionStore) applied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

func (s *revisionStore) note(rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev = max(s.rev, rev)
}

// flush writes the revision when it changed since the last write.
func (s *revisionStore) flush() error {
	s.mu.Lock()
	rev, written := s.rev, s.written
	s.mu.Unlock()
	if rev == written {
		return nil
	}
	if err := s.db.SetMeta(metaAssignmentsRevision, binary.BigEndian.AppendUint64(nil, rev)); err != nil {
		return fmt.Errorf("store %s: %w", metaAssignmentsRevision, err)
	}
	s.mu.Lock()
	s.written = rev
	s.mu.Unlock()
	return nil
}

// run writes the revision behind every revisionFlushInterval and once more
// when ctx is done.
func (s *revisionStore) run(ctx context.Context, log interface{ Warn(string, ...any) }) {
	t := time.NewTicker(revisionFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := s.flush(); err != nil {
				log.Warn("assignments revision", "err", err)
			}
			return
		case <-t.C:
			if err := s.flush(); err != nil {
				log.Warn("assignments revision", "err", err)
			}
		}
	}
}
