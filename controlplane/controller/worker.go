package controller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
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
func RunWorkers(ctx context.Context, q *Queue, n int, syncKey SyncFunc) {
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for processNext(ctx, q, syncKey) {
			}
		}()
	}
	wg.Wait()
}

func processNext(ctx context.Context, q *Queue, sync SyncFunc) bool {
	key, ok := q.Get(ctx)
	if !ok {
		return false
	}
	defer q.Done(key)
	if err := sync(ctx, key); err != nil {
		if ctx.Err() != nil {
			return false
		}
		if errors.Is(err, ErrRetry) {
			q.AddRateLimited(key)
			return true
		}
		slog.WarnContext(ctx, "sync failed, will retry", "key", key, "retries", q.NumRequeues(key), "err", err)
		q.AddRateLimited(key)
		return true
	}
	q.Forget(key)
	return true
}
