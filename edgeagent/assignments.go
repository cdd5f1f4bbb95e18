package edgeagent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	errReconnected = errors.New("reconnected: resync")
	// errNotifyLost: a notification was dropped (slow consumer).
	errNotifyLost = errors.New("assignment notifications lost: resync")
	// errNotifyDenied: the node's credentials refuse the notification
	// subject (issued before notifications existed).
	errNotifyDenied = errors.New("assignment notifications refused by the node's credentials")
)

// DefaultAssignmentsCheckInterval is the default of
// Config.AssignmentsCheckInterval: how often, give or take a fifth, an
// agent that follows its assignments by notification compares the keys
// and revisions of its assignments with what it runs, in case a
// notification was lost without a sign.
const DefaultAssignmentsCheckInterval = 5 * time.Minute

// notifyBuffer is how many notifications may wait for the agent; one more
// and nats.go drops it (a slow consumer), which ends in a resync. Small:
// it is allocated whole for each agent (a simulated fleet runs thousands).
const notifyBuffer = 256

// metaAssignmentsRevision is the state meta key of the last assignments
// bucket revision the agent applied.
const metaAssignmentsRevision = "assignmentsRevision"

// revisionFlushInterval is how often the applied revision is written
// behind to the state: a crash loses at most that much progress, which the
// next resync fetches again.
const revisionFlushInterval = time.Second

// watchAssignments follows the node's assignments. By default
// (followOnce) it subscribes to their core NATS notifications (the
// assignments stream republishes every change on
// messaging.AssignmentNotifyFilter), then resyncs from the last applied
// revision, then applies each notification; a reconnection or a dropped
// notification starts over with a new subscription and a resync. If the
// node's credentials refuse the notification subject (issued by an older
// control plane), it falls back to a KV watch (watchOnce), one JetStream
// consumer for as long as the agent runs.
func (a *Agent) watchAssignments(ctx context.Context, js jetstream.JetStream) {
	sig := a.watchNotifyErrors()
	defer sig.restore()
	delay := 250 * time.Millisecond
	useWatch := false
	for {
		var err error
		if useWatch {
			err = a.watchOnce(ctx, js)
		} else {
			err = a.followOnce(ctx, js, sig)
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, errNotifyDenied):
			a.log.Warn("assignment notifications refused by the node's credentials (issued by an older control plane): following assignments with a KV watch instead; re-join the node for new credentials",
				"subject", messaging.AssignmentNotifyFilter(a.cfg.NodeName))
			useWatch = true
			delay = 250 * time.Millisecond
			continue
		case errors.Is(err, errReconnected), errors.Is(err, errNotifyLost):
			if errors.Is(err, errNotifyLost) {
				a.log.Info("assignment notifications dropped: resync")
			}
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

// notifySignals turns the connection's asynchronous errors about the
// notification subscription into signals: lost (a slow consumer dropped
// a notification) and denied (a permissions violation).
type notifySignals struct {
	nc     *nats.Conn
	prev   nats.ErrHandler
	sub    atomic.Pointer[nats.Subscription]
	lost   chan struct{}
	denied chan struct{}
}

// watchNotifyErrors chains a handler in front of the connection's
// asynchronous error handler; restore puts the previous one back.
func (a *Agent) watchNotifyErrors() *notifySignals {
	s := &notifySignals{nc: a.nc, prev: a.nc.ErrorHandler(), lost: make(chan struct{}, 1), denied: make(chan struct{}, 1)}
	violation := strings.ToLower(`Subscription to "` + messaging.AssignmentNotifyFilter(a.cfg.NodeName) + `"`)
	a.nc.SetErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		switch {
		case errors.Is(err, nats.ErrSlowConsumer) && sub != nil && sub == s.sub.Load():
			signal(s.lost)
		case errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), violation):
			signal(s.denied)
		}
		if s.prev != nil {
			s.prev(nc, sub, err)
		}
	})
	return s
}

func (s *notifySignals) restore() { s.nc.SetErrorHandler(s.prev) }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// followOnce is one notification session: subscribe, resync, then apply
// notifications until the connection comes back from a cut, a
// notification is lost or the subscription is refused. The subscription
// comes first so that no change falls between the resync and the first
// notification; notifications the resync already covered are skipped by
// revision. Every AssignmentsCheckInterval (jittered) a keys-only check
// catches anything lost without a sign.
func (a *Agent) followOnce(ctx context.Context, js jetstream.JetStream, sig *notifySignals) error {
	reconnected := a.conn.connected()
	kv, err := js.KeyValue(ctx, messaging.BucketAssignments)
	if err != nil {
		return fmt.Errorf("open %s: %w", messaging.BucketAssignments, err)
	}
	select { // a loss of the previous subscription is moot now
	case <-sig.lost:
	default:
	}
	msgs := make(chan *nats.Msg, notifyBuffer)
	subject := messaging.AssignmentNotifyFilter(a.cfg.NodeName)
	sub, err := a.nc.ChanSubscribe(subject, msgs)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	sig.sub.Store(sub)
	defer func() {
		sig.sub.CompareAndSwap(sub, nil)
		sub.Unsubscribe()
	}()
	// The server has the subscription once the flush returns: every
	// change stored from now on is also notified.
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	err = a.nc.FlushWithContext(fctx)
	fcancel()
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	floor, err := a.resync(ctx, kv, reconnected)
	if err != nil {
		return err
	}
	check := time.NewTimer(jitter(a.assignmentsCheckInterval()))
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reconnected:
			return errReconnected
		case <-sig.lost:
			return errNotifyLost
		case <-sig.denied:
			return errNotifyDenied
		case <-check.C:
			if n, err := sub.Dropped(); err == nil && n > 0 {
				return errNotifyLost
			}
			stats := a.startStats()
			top, err := a.checkKeys(ctx, kv, &stats)
			if err != nil {
				return err
			}
			floor = max(floor, top)
			if stats.changes > 0 {
				received, msgs := stats.received(a)
				a.log.Info(fmt.Sprintf("assignments check: %d changes, %d bytes received", stats.changes, received),
					"changes", stats.changes, "bytes", received, "messages", msgs, "valueBytes", stats.bytes)
			}
			check.Reset(jitter(a.assignmentsCheckInterval()))
		case m := <-msgs:
			a.applyNotification(ctx, m, floor)
		}
	}
}

func (a *Agent) assignmentsCheckInterval() time.Duration {
	if a.cfg.AssignmentsCheckInterval > 0 {
		return a.cfg.AssignmentsCheckInterval
	}
	return DefaultAssignmentsCheckInterval
}

// jitter returns d give or take a fifth, so that a fleet started together
// does not check all at once.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(2*d/5+1)
}

// resync brings the node's assignments up to date: a watch resumed after
// the last applied revision (every assignment on a fresh agent) read up to
// the end of the stream and stopped, which deletes its consumer, then, for
// a delta, a keys-only check. It returns the revision up to which the
// watch saw every change of the node: a notification at or below it is
// already applied.
func (a *Agent) resync(ctx context.Context, kv jetstream.KeyValue, reconnected <-chan struct{}) (uint64, error) {
	stats := a.startStats()
	from := a.revs.applied()
	var opts []jetstream.WatchOpt
	if from > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(from+1))
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.Watch(wctx, messaging.AssignmentFilter(a.cfg.NodeName), opts...)
	if err != nil {
		return 0, fmt.Errorf("watch %s: %w", messaging.BucketAssignments, err)
	}
	defer w.Stop()
	seen := map[string]bool{}
	floor := from
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-reconnected:
			return 0, errReconnected
		case e, ok := <-w.Updates():
			if !ok {
				return 0, errors.New("resync: watcher closed")
			}
			if e == nil {
				done = true
				continue
			}
			stats.changes++
			stats.bytes += len(e.Value())
			ns, name, put := a.applyEntry(ctx, e)
			a.revs.note(e.Revision())
			floor = max(floor, e.Revision())
			if put {
				seen[podKey(ns, name)] = true
			}
		}
	}
	if err := w.Stop(); err != nil {
		return 0, fmt.Errorf("stop %s watch: %w", messaging.BucketAssignments, err)
	}
	if from == 0 {
		a.removeAllBut(seen)
		a.logFullRelist(stats)
		return floor, nil
	}
	top, err := a.checkKeys(ctx, kv, &stats)
	if err != nil {
		return 0, err
	}
	a.logDeltaResync(from, stats)
	return max(floor, top), nil
}

// logFullRelist logs a resync that read every assignment of the node.
func (a *Agent) logFullRelist(stats resyncStats) {
	received, msgs := stats.received(a)
	a.log.Info(fmt.Sprintf("resync: full relist, %d assignments, %d bytes received", stats.changes, received),
		"changes", stats.changes, "bytes", received, "messages", msgs, "valueBytes", stats.bytes)
}

// logDeltaResync logs a resync resumed after revision from. The line
// starts "resync: N changes, B bytes" (parsed by tests).
func (a *Agent) logDeltaResync(from uint64, stats resyncStats) {
	received, msgs := stats.received(a)
	a.log.Info(fmt.Sprintf("resync: %d changes, %d bytes received (%d of them assignment values; %d assignments listed)",
		stats.changes, received, stats.bytes, stats.listed),
		"from", from, "changes", stats.changes, "bytes", received, "messages", msgs, "valueBytes", stats.bytes, "assignments", stats.listed)
}

// applyNotification applies one republished assignment change unless
// what the agent has is as new: its revision is at or below floor, or the
// pod's worker already holds it or a later one.
func (a *Agent) applyNotification(ctx context.Context, m *nats.Msg, floor uint64) {
	key, err := messaging.ParseAssignmentNotifySubject(m.Subject)
	if err != nil {
		a.log.Warn("bad assignment notification", "err", err)
		return
	}
	rev, err := strconv.ParseUint(m.Header.Get(messaging.HeaderSequence), 10, 64)
	if err != nil {
		a.log.Warn("bad assignment notification", "subject", m.Subject, "err", fmt.Errorf("header %s: %w", messaging.HeaderSequence, err))
		return
	}
	if rev <= floor {
		return
	}
	_, ns, name, _ := messaging.ParseAssignmentKey(key)
	if w := a.worker(ns, name); w != nil && w.revision() >= rev {
		return
	}
	op := m.Header.Get(messaging.HeaderKVOperation)
	a.applyChange(ctx, key, op == "", m.Data, rev)
	a.revs.note(rev)
}

// resyncStats counts what one resync received.
type resyncStats struct {
	changes int // assignments fetched (values and delete markers)
	bytes   int // the sum of the assignment values fetched
	listed  int // keys listed by the keys-only check
	// inBytes and inMsgs are the connection's received byte and message
	// counts when the resync started (nats.Statistics).
	inBytes, inMsgs uint64
}

// startStats starts counting a resync: what the agent's connection
// receives from now on.
func (a *Agent) startStats() resyncStats {
	st := a.nc.Stats()
	return resyncStats{inBytes: st.InBytes, inMsgs: st.InMsgs}
}

// received is what the agent's connection received since startStats: a
// measurement, not an estimate, of the message bytes (headers and
// payloads) of the resync's watches, JetStream API replies (consumer
// creation and deletion) and gets. Its error: it also counts whatever
// else arrived on the connection meanwhile (lease acknowledgements,
// status replies, notifications, fetches of pod workers), and it does not
// count the protocol framing nats.go does not report (each message's
// MSG/HMSG line with its subject and reply subject, PING/PONG): see
// docs/offline.md for the figures.
func (s resyncStats) received(a *Agent) (bytes, msgs uint64) {
	st := a.nc.Stats()
	return st.InBytes - s.inBytes, st.InMsgs - s.inMsgs
}

// watchOnce keeps a KV watcher on the node's assignments (the fallback
// for credentials that refuse notifications): resumed after the last
// applied revision, completed by a keys-only check, then live.
func (a *Agent) watchOnce(ctx context.Context, js jetstream.JetStream) error {
	reconnected := a.conn.connected()
	kv, err := js.KeyValue(ctx, messaging.BucketAssignments)
	if err != nil {
		return fmt.Errorf("open %s: %w", messaging.BucketAssignments, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stats := a.startStats()
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
					a.logFullRelist(stats)
				} else {
					if _, err := a.checkKeys(ctx, kv, &stats); err != nil {
						return err
					}
					a.logDeltaResync(from, stats)
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
// listed pods whose revision differs from the local one are fetched. It
// returns the highest revision listed.
func (a *Agent) checkKeys(ctx context.Context, kv jetstream.KeyValue, stats *resyncStats) (uint64, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lw, err := kv.Watch(lctx, messaging.AssignmentFilter(a.cfg.NodeName), jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return 0, fmt.Errorf("list %s keys: %w", messaging.BucketAssignments, err)
	}
	defer lw.Stop()
	var top uint64
	listed := map[string]uint64{} // by assignment key
	keep := map[string]bool{}     // by pod key
	for done := false; !done; {
		select {
		case <-lctx.Done():
			return 0, fmt.Errorf("list %s keys: %w", messaging.BucketAssignments, lctx.Err())
		case e, ok := <-lw.Updates():
			if !ok {
				return 0, fmt.Errorf("list %s keys: watcher closed", messaging.BucketAssignments)
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
			stats.listed++
			top = max(top, e.Revision())
			keep[podKey(ns, name)] = true
		}
	}
	lw.Stop() // its consumer is deleted before the gets
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
			return 0, fmt.Errorf("get %s: %w", key, err)
		}
		stats.changes++
		stats.bytes += len(e.Value())
		a.applyEntry(ctx, e)
	}
	return top, nil
}

// applyEntry applies one assignment change; put is true when the pod is
// assigned.
func (a *Agent) applyEntry(ctx context.Context, e jetstream.KeyValueEntry) (ns, name string, put bool) {
	return a.applyChange(ctx, e.Key(), e.Operation() == jetstream.KeyValuePut, e.Value(), e.Revision())
}

// applyChange applies the put (value) or the delete of assignment key at
// revision rev; put is true when the pod is assigned.
func (a *Agent) applyChange(ctx context.Context, key string, isPut bool, value []byte, rev uint64) (ns, name string, put bool) {
	_, ns, name, err := messaging.ParseAssignmentKey(key)
	if err != nil {
		a.log.Warn("bad assignment key", "key", key, "err", err)
		return "", "", false
	}
	if !isPut {
		a.removePod(ns, name)
		return ns, name, false
	}
	var pod manifests.Pod
	if err := json.Unmarshal(value, &pod); err != nil {
		a.log.Warn("bad assignment", "key", key, "err", err)
		return ns, name, false
	}
	if pod.Namespace == "" {
		pod.Namespace = ns
	}
	if pod.Name == "" {
		pod.Name = name
	}
	a.upsert(ctx, &pod, rev)
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
