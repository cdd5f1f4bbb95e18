package controller

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestSlowStartBatch(t *testing.T) {
	var calls atomic.Int32
	n, err := SlowStartBatch(10, 1, func() error {
		if calls.Add(1) == 4 {
			return errors.New("quota exceeded")
		}
		return nil
	})
	// Batches of 1, 2 and 4: the third batch fails, the rest is skipped.
	if err == nil || n != 6 || calls.Load() != 7 {
		t.Errorf("SlowStartBatch = %d, %v after %d calls; want 6, error, 7 calls", n, err, calls.Load())
	}
	calls.Store(0)
	n, err = SlowStartBatch(5, 1, func() error { calls.Add(1); return nil })
	if err != nil || n != 5 || calls.Load() != 5 {
		t.Errorf("SlowStartBatch = %d, %v after %d calls", n, err, calls.Load())
	}
}

func TestSlowStartBatchMax(t *testing.T) {
	// Batches of 1, 2, 4, 8, then 16 at most: the 40th call fails in the
	// batch of calls 32..47, after which nothing more is called (without
	// the bound that batch would be 32..63).
	var calls atomic.Int32
	n, err := SlowStartBatchMax(100, 1, 16, func() error {
		if calls.Add(1) == 40 {
			return errors.New("quota exceeded")
		}
		return nil
	})
	if err == nil || n != 46 || calls.Load() != 47 {
		t.Errorf("SlowStartBatchMax = %d, %v after %d calls; want 46, error, 47 calls", n, err, calls.Load())
	}
}
