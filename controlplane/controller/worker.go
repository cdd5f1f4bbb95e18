package controller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// ErrRetry, returned (possibly wrapped) by a sync, asks for the key to be
// retried with backoff without logging it as a failure: the object is
// waiting for something (e.g. a pod that fits no node yet).
var ErrRetry = errors.New("retry later")

// SyncFunc reconciles the object under key.
type SyncFunc func(ctx context.Context, key string) error

// RunWorkers runs n workers that take keys from q and sync them, until ctx
// is done. A key whose sync fails is queued again with backoff; one that
// succeeds has its backoff forgotten. It returns when every worker is done.
// The syncs are measured (docs/metrics.md) under the name of syncKey's
// package ("daemonset"); RunNamedWorkers names them.
func RunWorkers(ctx context.Context, q *Queue, n int, syncKey SyncFunc) {
	RunNamedWorkers(ctx, controllerName(syncKey), q, n, syncKey)
}

// RunNamedWorkers is RunWorkers with the controller's name in the metrics.
func RunNamedWorkers(ctx context.Context, controller string, q *Queue, n int, syncKey SyncFunc) {
	m := newLoopMetrics(controller)
	defer trackQueue(q, controller)()
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for processNext(ctx, q, syncKey, m) {
			}
		}()
	}
	wg.Wait()
}

func processNext(ctx context.Context, q *Queue, sync SyncFunc, m loopMetrics) bool {
	key, ok := q.Get(ctx)
	if !ok {
		return false
	}
	defer q.Done(key)
	start := time.Now()
	err := sync(ctx, key)
	m.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		if errors.Is(err, ErrRetry) {
			m.retries.Inc()
			q.AddRateLimited(key)
			return true
		}
		m.errors.Inc()
		slog.WarnContext(ctx, "sync failed, will retry", "key", key, "retries", q.NumRequeues(key), "err", err)
		q.AddRateLimited(key)
		return true
	}
	q.Forget(key)
	return true
}
