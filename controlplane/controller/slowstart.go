package controller

import (
	"errors"
	"sync"
)

// SlowStartBatch calls fn count times, in batches growing from initial
// and doubling while every call succeeds (Kubernetes' slowStartBatch), so
// that a failing create (quota, invalid template) fails once, not count
// times. It returns the number of successful calls and the errors of the
// batch that failed.
func SlowStartBatch(count, initial int, fn func() error) (int, error) {
	return SlowStartBatchMax(count, initial, 0, fn)
}

// SlowStartBatchMax is SlowStartBatch with batches of at most maxBatch
// calls (0: no bound), which bounds the calls in flight, and so the memory
// they hold, when count is large (a DaemonSet over 10,000 nodes).
func SlowStartBatchMax(count, initial, maxBatch int, fn func() error) (int, error) {
	remaining := count
	successes := 0
	limit := func(n int) int {
		if maxBatch > 0 {
			n = min(n, maxBatch)
		}
		return min(n, remaining)
	}
	for batch := limit(initial); batch > 0; batch = limit(2 * batch) {
		errs := make([]error, batch)
		var wg sync.WaitGroup
		for i := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = fn()
			}()
		}
		wg.Wait()
		failed := 0
		for _, err := range errs {
			if err != nil {
				failed++
			}
		}
		successes += batch - failed
		if failed > 0 {
			return successes, errors.Join(errs...)
		}
		remaining -= batch
	}
	return successes, nil
}
