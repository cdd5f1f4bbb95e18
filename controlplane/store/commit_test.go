package store

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging/natstest"
)

// Concurrent creates and compare-and-swap updates through the group
// committer: every caller gets its own answer (conflicts included), the
// revisions returned are those stored, and writes were batched.
func TestGroupCommit(t *testing.T) {
	env := natstest.StartSynced(t, "store-commit")
	s := New(env.Buckets.Objects, WithJetStream(env.JS))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const writers, each = 64, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				name := fmt.Sprintf("w%d-%d", w, i)
				obj, err := s.Create(ctx, configMap("default", name, nil, nil))
				if err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					return
				}
				cm := obj.(*manifests.ConfigMap)
				stale := cm.ResourceVersion
				cm.Data = map[string]string{"v": "1"}
				upd, err := s.Update(ctx, cm)
				if err != nil {
					errs <- fmt.Errorf("update %s: %w", name, err)
					return
				}
				// The stored revision is the one returned.
				got, err := s.Get(ctx, "configmaps", "default", name)
				if err != nil {
					errs <- err
					return
				}
				if got.GetObjectMeta().ResourceVersion != upd.GetObjectMeta().ResourceVersion || got.(*manifests.ConfigMap).Data["v"] != "1" {
					errs <- fmt.Errorf("%s: stored %s %v, update returned %s", name, got.GetObjectMeta().ResourceVersion, got.(*manifests.ConfigMap).Data, upd.GetObjectMeta().ResourceVersion)
					return
				}
				// A write on the old revision loses, alone or in a batch.
				cm.ResourceVersion = stale
				if _, err := s.Update(ctx, cm); client.CodeOf(err) != client.CodeConflict {
					errs <- fmt.Errorf("stale update of %s: %v, want Conflict", name, err)
					return
				}
				// A second create of the name is refused.
				if _, err := s.Create(ctx, configMap("default", name, nil, nil)); client.CodeOf(err) != client.CodeExists {
					errs <- fmt.Errorf("second create of %s: %v, want AlreadyExists", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	items, _, err := s.List(ctx, "configmaps", "default", manifests.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != writers*each {
		t.Fatalf("%d configmaps stored, want %d", len(items), writers*each)
	}
	if s.gc.off.Load() {
		t.Fatal("the server refused atomic batches: group commit is off")
	}
	if n := s.gc.batches.Load(); n == 0 {
		t.Fatalf("no write was batched")
	} else {
		t.Logf("%d batches, %d writes in them", n, s.gc.batched.Load())
	}
}

// A key deleted and created again (its last entry a delete marker) is
// created through the fallback when its batch is refused.
func TestGroupCommitCreateOverDeleted(t *testing.T) {
	env := natstest.Start(t, "store-commit-deleted")
	s := New(env.Buckets.Objects, WithJetStream(env.JS))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 20 {
		if _, err := s.Create(ctx, configMap("default", "d"+strconv.Itoa(i), nil, nil)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delete(ctx, "configmaps", "default", "d"+strconv.Itoa(i), 0); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 20 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := s.Create(ctx, configMap("default", "d"+strconv.Itoa(i), nil, nil)); err != nil {
				t.Error(err)
				failed.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := s.Create(ctx, configMap("default", "n"+strconv.Itoa(i), nil, nil)); err != nil {
				t.Error(err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	items, _, err := s.List(ctx, "configmaps", "default", manifests.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 40 || failed.Load() != 0 {
		t.Fatalf("%d stored, %d failed; want 40 and 0", len(items), failed.Load())
	}
}

// BenchmarkConcurrentCreatesSynced: 32 goroutines creating ConfigMaps,
// JetStream syncing every write, with and without group commit.
func BenchmarkConcurrentCreatesSynced(b *testing.B) {
	for _, group := range []bool{false, true} {
		b.Run(fmt.Sprintf("group=%v", group), func(b *testing.B) {
			env := natstest.StartSynced(b, "store-bench")
			s := New(env.Buckets.Objects)
			if group {
				s = New(env.Buckets.Objects, WithJetStream(env.JS))
			}
			ctx := context.Background()
			var n atomic.Int64
			b.SetParallelism(128) // x GOMAXPROCS goroutines, as many as the API and controllers write with at scale
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Create(ctx, configMap("default", fmt.Sprintf("c%d", n.Add(1)), nil, nil)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
			if s.gc != nil && s.gc.batches.Load() > 0 {
				b.ReportMetric(float64(s.gc.batched.Load())/float64(s.gc.batches.Load()), "writes/batch")
				b.ReportMetric(float64(s.gc.batched.Load())/float64(b.N), "batched-fraction")
			}
		})
	}
}

// A batch with one stale compare-and-swap is refused whole by the server;
// each write is then retried on its own: the stale one gets its conflict,
// the others are stored.
func TestBatchRefusedFallsBack(t *testing.T) {
	env := natstest.Start(t, "store-commit-refused")
	s := New(env.Buckets.Objects, WithJetStream(env.JS))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv := env.Buckets.Objects
	var batch []*writeReq
	for i := range 10 {
		key := fmt.Sprintf("k.%d", i)
		rev, err := kv.Put(ctx, key, []byte("v0"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			rev-- // stale
		}
		batch = append(batch, &writeReq{key: key, data: []byte("v1"), rev: rev, done: make(chan writeResult, 1)})
	}
	batch = append(batch, &writeReq{key: "k.new", data: []byte("v1"), create: true, done: make(chan writeResult, 1)})
	s.gc.commit(batch)
	if s.gc.batches.Load() != 0 {
		t.Fatal("a batch with a stale write was stored")
	}
	for i, r := range batch {
		res := <-r.done
		if i == 5 {
			if !isWrongLastSequence(res.err) {
				t.Fatalf("stale write: %v, want wrong last sequence", res.err)
			}
			continue
		}
		if res.err != nil {
			t.Fatalf("%s: %v", r.key, res.err)
		}
		e, err := kv.Get(ctx, r.key)
		if err != nil || string(e.Value()) != "v1" || e.Revision() != res.rev {
			t.Fatalf("%s: stored %v (err %v), returned revision %d", r.key, e, err, res.rev)
		}
	}
	// The same batch without the stale write is stored as one batch.
	var ok []*writeReq
	for i := range 10 {
		e, err := kv.Get(ctx, fmt.Sprintf("k.%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ok = append(ok, &writeReq{key: e.Key(), data: []byte("v2"), rev: e.Revision(), done: make(chan writeResult, 1)})
	}
	s.gc.commit(ok)
	if s.gc.batches.Load() != 1 {
		t.Fatalf("%d batches stored, want 1", s.gc.batches.Load())
	}
	for _, r := range ok {
		res := <-r.done
		e, err := kv.Get(ctx, r.key)
		if res.err != nil || err != nil || string(e.Value()) != "v2" || e.Revision() != res.rev {
			t.Fatalf("%s: %v / %v, stored revision %d, returned %d", r.key, res.err, err, e.Revision(), res.rev)
		}
	}
	// Creates, one over a deleted key (its last entry a delete marker):
	// the batch is refused, the fallback creates them all.
	if _, err := kv.Put(ctx, "k.gone", []byte("v0")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "k.gone"); err != nil {
		t.Fatal(err)
	}
	var creates []*writeReq
	for i := range 9 {
		creates = append(creates, &writeReq{key: fmt.Sprintf("c.%d", i), data: []byte("v"), create: true, done: make(chan writeResult, 1)})
	}
	creates = append(creates, &writeReq{key: "k.gone", data: []byte("again"), create: true, done: make(chan writeResult, 1)})
	s.gc.commit(creates)
	for _, r := range creates {
		if res := <-r.done; res.err != nil {
			t.Fatalf("create %s: %v", r.key, res.err)
		}
	}
	if e, err := kv.Get(ctx, "k.gone"); err != nil || string(e.Value()) != "again" {
		t.Fatalf("k.gone: %v %v", e, err)
	}
}
