package controller

import (
	"context"
	"sync"
	"testing"
	"time"
)

func get(t *testing.T, q *Queue, within time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	k, ok := q.Get(ctx)
	if !ok {
		t.Fatalf("Get: no key within %v", within)
	}
	return k
}

func TestQueueDeduplicates(t *testing.T) {
	q := NewQueue(0, 0)
	q.Add("a")
	q.Add("b")
	q.Add("a")
	if q.Len() != 2 {
		t.Fatalf("Len = %d, want 2", q.Len())
	}
	if k := get(t, q, time.Second); k != "a" {
		t.Fatalf("first = %q", k)
	}
	// Added while processing: not handed out again until Done.
	q.Add("a")
	if k := get(t, q, time.Second); k != "b" {
		t.Fatalf("second = %q", k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if k, ok := q.Get(ctx); ok {
		t.Fatalf("got %q while a is still processing", k)
	}
	cancel()
	q.Done("a")
	if k := get(t, q, time.Second); k != "a" {
		t.Fatalf("after Done = %q", k)
	}
	q.Done("a")
	q.Done("b")
	if q.Len() != 0 {
		t.Fatalf("Len = %d, want 0", q.Len())
	}
}

func TestQueueBackoff(t *testing.T) {
	q := NewQueue(10*time.Millisecond, 40*time.Millisecond)
	want := []time.Duration{10, 20, 40, 40}
	for i, w := range want {
		if d := q.delay(i); d != w*time.Millisecond {
			t.Errorf("delay(%d) = %v, want %v", i, d, w*time.Millisecond)
		}
	}
	start := time.Now()
	q.AddRateLimited("k")
	q.AddRateLimited("k")
	if n := q.NumRequeues("k"); n != 2 {
		t.Fatalf("NumRequeues = %d", n)
	}
	if k := get(t, q, time.Second); k != "k" || time.Since(start) < 10*time.Millisecond {
		t.Fatalf("got %q after %v", k, time.Since(start))
	}
	q.Done("k")
	q.Forget("k")
	if n := q.NumRequeues("k"); n != 0 {
		t.Fatalf("NumRequeues after Forget = %d", n)
	}
}

func TestQueueConcurrentWorkers(t *testing.T) {
	q := NewQueue(0, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	inFlight := map[string]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k, ok := q.Get(ctx)
				if !ok {
					return
				}
				mu.Lock()
				if inFlight[k] {
					t.Errorf("key %s handed to two workers", k)
				}
				inFlight[k] = true
				seen[k]++
				mu.Unlock()
				time.Sleep(time.Millisecond) // simulated work
				mu.Lock()
				inFlight[k] = false
				mu.Unlock()
				q.Done(k)
			}
		}()
	}
	keys := []string{"a", "b", "c", "d", "e", "f"}
	for range 20 {
		for _, k := range keys {
			q.Add(k)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == len(keys) && q.Len() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d keys processed", n)
		}
		time.Sleep(time.Millisecond)
	}
	q.ShutDown()
	wg.Wait()
	q.Add("late")
	if q.Len() != 0 {
		t.Fatalf("add after shutdown queued")
	}
}
