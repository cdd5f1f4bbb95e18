package edgeagent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// statusQueue sends pod statuses to the control plane: the latest status
// per pod wins, failed sends are retried.
type statusQueue struct {
	api API
	log *slog.Logger

	mu      sync.Mutex
	pending map[string]*manifests.Pod // by namespace/name
	kick    chan struct{}
}

// maxStatusRetry bounds the wait between attempts to send statuses.
const maxStatusRetry = 5 * time.Second

func newStatusQueue(api API, log *slog.Logger) *statusQueue {
	return &statusQueue{api: api, log: log, pending: map[string]*manifests.Pod{}, kick: make(chan struct{}, 1)}
}

// put queues a status, replacing any unsent one of the same pod.
func (q *statusQueue) put(pod *manifests.Pod) {
	q.mu.Lock()
	q.pending[podKey(pod.Namespace, pod.Name)] = pod
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
	if p := q.pending[key]; p != nil && p.UID == uid {
		delete(q.pending, key)
	}
}

func (q *statusQueue) run(ctx context.Context) {
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
		switch {
		case q.flush(ctx):
			retry = 0
		case retry == 0:
			retry = 250 * time.Millisecond
		case byTimer:
			retry = min(2*retry, maxStatusRetry)
		}
	}
}

// flush sends every pending status; false when some must be retried.
func (q *statusQueue) flush(ctx context.Context) bool {
	q.mu.Lock()
	batch := q.pending
	q.pending = map[string]*manifests.Pod{}
	q.mu.Unlock()
	ok := true
	for key, pod := range batch {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := q.api.UpdateStatus(cctx, pod)
		cancel()
		if err == nil || client.IsNotFound(err) {
			continue
		}
		if client.IsInvalid(err) {
			// Retrying cannot help; the next status change is sent anew.
			q.log.Warn("pod status rejected", "pod", key, "err", err)
			continue
		}
		ok = false
		q.log.Debug("send pod status", "pod", key, "err", err)
		q.mu.Lock()
		if _, newer := q.pending[key]; !newer {
			q.pending[key] = pod
		}
		q.mu.Unlock()
	}
	return ok
}
