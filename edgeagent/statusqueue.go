package edgeagent

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
)

// statusOutbox keeps the statuses that could not be sent across restarts
// (state.DB).
type statusOutbox interface {
	Statuses() ([]state.OutboxEntry, error)
	SaveStatuses(puts []state.OutboxEntry, deletes []string) error
}

// Bounds of the on-disk status outbox; beyond them the oldest statuses are
// dropped (the next status change of their pod is sent anew).
const (
	outboxMaxPods  = 1000
	outboxMaxBytes = 1 << 20
	// outboxWriteBehind is the least time between two outbox writes while
	// statuses cannot be sent: status churn offline is coalesced.
	outboxWriteBehind = time.Second
)

// statusQueue sends pod statuses to the control plane: the latest status
// per pod wins, failed sends are retried oldest first. While statuses
// cannot be sent they are also written behind to an outbox (when one is
// set), from which a restarted agent sends them.
type statusQueue struct {
	api API
	log *slog.Logger
	box statusOutbox // nil: memory only

	mu      sync.Mutex
	pending map[string]*queuedStatus // by namespace/name
	seq     uint64
	onDisk  map[string]uint64 // outbox entries by key: their seq
	dirty   bool              // pending differs from the outbox
	saved   time.Time         // last outbox write
	kick    chan struct{}
}

type queuedStatus struct {
	pod *manifests.Pod
	seq uint64
}

// maxStatusRetry bounds the wait between attempts to send statuses.
const maxStatusRetry = 5 * time.Second

func newStatusQueue(api API, log *slog.Logger) *statusQueue {
	return &statusQueue{api: api, log: log, pending: map[string]*queuedStatus{}, onDisk: map[string]uint64{}, kick: make(chan struct{}, 1)}
}

// withOutbox loads the statuses a previous run could not send and keeps
// unsent statuses in box from now on.
func (q *statusQueue) withOutbox(box statusOutbox) error {
	entries, err := box.Statuses()
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.box = box
	for _, e := range entries {
		var pod manifests.Pod
		if err := json.Unmarshal(e.Pod, &pod); err != nil {
			q.log.Warn("drop undecodable outbox status", "pod", e.Key, "err", err)
			q.onDisk[e.Key] = 0
			q.dirty = true
			continue
		}
		q.seq = max(q.seq, e.Seq)
		q.pending[e.Key] = &queuedStatus{pod: &pod, seq: e.Seq}
		q.onDisk[e.Key] = e.Seq
	}
	if len(entries) > 0 {
		q.log.Info("status outbox loaded", "statuses", len(entries))
	}
	return nil
}

// put queues a status, replacing any unsent one of the same pod.
func (q *statusQueue) put(pod *manifests.Pod) {
	q.mu.Lock()
	q.seq++
	q.pending[podKey(pod.Namespace, pod.Name)] = &queuedStatus{pod: pod, seq: q.seq}
	q.dirty = true
	q.mu.Unlock()
	q.poke()
}

// poke makes the queue try to send now.
func (q *statusQueue) poke() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// drop forgets the unsent status of a pod.
func (q *statusQueue) drop(namespace, name, uid string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := podKey(namespace, name)
	if p := q.pending[key]; p != nil && p.pod.UID == uid {
		delete(q.pending, key)
		q.dirty = true
	}
}

func (q *statusQueue) run(ctx context.Context) {
	defer q.save(true) // what could not be sent survives a restart
	retry := time.Duration(0)
	for {
		var t *time.Timer
		var wait <-chan time.Time
		if retry > 0 {
			t = time.NewTimer(retry)
			wait = t.C
		}
		byTimer := false
		select {
		case <-ctx.Done():
			return
		case <-q.kick:
		case <-wait:
			byTimer = true
		}
		if t != nil {
			t.Stop()
		}
		ok := q.flush(ctx)
		q.save(!ok && time.Since(q.saved) >= outboxWriteBehind)
		switch {
		case ok:
			retry = 0
		case retry == 0:
			retry = 250 * time.Millisecond
		case byTimer:
			retry = min(2*retry, maxStatusRetry)
		}
	}
}

// flush sends every pending status, oldest first; false when some must be
// retried.
func (q *statusQueue) flush(ctx context.Context) bool {
	q.mu.Lock()
	batch := make([]string, 0, len(q.pending))
	items := q.pending
	for key := range items {
		batch = append(batch, key)
	}
	q.pending = map[string]*queuedStatus{}
	q.mu.Unlock()
	slices.SortFunc(batch, func(a, b string) int { return cmp.Compare(items[a].seq, items[b].seq) })
	ok := true
	for _, key := range batch {
		it := items[key]
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := q.api.UpdateStatus(cctx, it.pod)
		cancel()
		if err == nil || client.IsNotFound(err) {
			q.sent()
			continue
		}
		if client.IsInvalid(err) {
			// Retrying cannot help; the next status change is sent anew.
			q.log.Warn("pod status rejected", "pod", key, "err", err)
			q.sent()
			continue
		}
		ok = false
		q.log.Debug("send pod status", "pod", key, "err", err)
		q.requeue(key, it)
	}
	return ok
}

// sent notes that a status left the queue: the outbox is behind.
func (q *statusQueue) sent() {
	q.mu.Lock()
	q.dirty = true
	q.mu.Unlock()
}

// requeue puts back an unsent status unless a newer one was queued.
func (q *statusQueue) requeue(key string, it *queuedStatus) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, newer := q.pending[key]; !newer {
		q.pending[key] = it
	}
}

// save brings the outbox in line with the pending statuses. Sent statuses
// are always removed from it; unsent ones are written only when write is
// set, so that status churn while offline is coalesced. Beyond the bounds
// the oldest statuses are dropped.
func (q *statusQueue) save(write bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.box == nil || !q.dirty {
		return
	}
	var deletes []string
	for key := range q.onDisk {
		if q.pending[key] == nil {
			deletes = append(deletes, key)
		}
	}
	if !write && len(deletes) == 0 {
		return
	}
	var puts []state.OutboxEntry
	if write {
		keys := make([]string, 0, len(q.pending))
		for key := range q.pending {
			keys = append(keys, key)
		}
		// Newest first, to keep the newest within the bounds.
		slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(q.pending[b].seq, q.pending[a].seq) })
		size := 0
		for i, key := range keys {
			it := q.pending[key]
			raw, err := json.Marshal(it.pod)
			if err != nil {
				q.log.Warn("encode pod status", "pod", key, "err", err)
				continue
			}
			if i >= outboxMaxPods || size+len(raw) > outboxMaxBytes {
				q.log.Warn("status outbox full: dropping oldest status", "pod", key,
					"maxPods", outboxMaxPods, "maxBytes", outboxMaxBytes)
				delete(q.pending, key)
				if _, ok := q.onDisk[key]; ok {
					deletes = append(deletes, key)
				}
				continue
			}
			size += len(raw)
			if q.onDisk[key] != it.seq {
				puts = append(puts, state.OutboxEntry{Key: key, Seq: it.seq, Pod: raw})
			}
		}
	}
	if err := q.box.SaveStatuses(puts, deletes); err != nil {
		q.log.Warn("status outbox", "err", err)
		return
	}
	for _, k := range deletes {
		delete(q.onDisk, k)
	}
	for _, e := range puts {
		q.onDisk[e.Key] = e.Seq
	}
	q.saved = time.Now()
	q.dirty = !write
}
