package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit. nats-server's file store syncs every message to disk on
// its own (sync_interval: always, the default here): writes from many
// goroutines wait for each other's fsync, one after another, so the bucket
// takes only as many writes per second as the disk takes syncs. An atomic
// batch (nats-server 2.12+, a stream with allow_atomic) is stored with one
// sync. When many writes are in flight, the committer gathers the creates
// and compare-and-swap updates that arrive and stores them as one batch, each
// message carrying its own expected last revision: the batch is stored
// whole or not at all. When the server refuses a batch (one of its writes
// lost a compare-and-swap, say), each write of it is retried on its own so
// that each caller gets its own answer. A lone write goes straight to the
// bucket, so a store that is not busy answers as fast as before.

// maxBatch bounds the writes of one batch (the server allows 1,000
// messages; a pod is a few KiB and a batch must stay well below the
// connection's pending limit).
const maxBatch = 128

// batchAfter is the number of writes in flight from which further writes
// wait for a batch. An atomic batch costs more than one write (the server
// stages it in a file store of its own, synced, before storing it, 15–20 ms
// on this machine under load), so batching pays only when many writes queue.
const batchAfter = 16

// minBatch is the fewest writes sent as a batch; fewer go on their own.
const minBatch = 8

// commitTimeout bounds the wait for a batch's acknowledgement.
const commitTimeout = 30 * time.Second

type writeReq struct {
	key  string
	data []byte
	rev  uint64 // the expected last revision; 0 with create
	// create is a kv.Create: a key whose last entry is a delete marker is
	// created over it (that write does not batch: the batch's check wants
	// no message at all).
	create bool
	done   chan writeResult
}

type writeResult struct {
	rev uint64
	err error
}

type committer struct {
	kv     jetstream.KeyValue
	nc     *nats.Conn
	prefix string // "$KV.<bucket>."
	off    atomic.Bool
	// batches and batched count the batches stored and their writes.
	batches, batched atomic.Int64

	inflight atomic.Int64 // writes sent on their own, not yet answered

	mu      sync.Mutex
	queue   []*writeReq
	running bool
}

func newCommitter(kv jetstream.KeyValue, js jetstream.JetStream) *committer {
	return &committer{kv: kv, nc: js.Conn(), prefix: "$KV." + kv.Bucket() + "."}
}

func (s *Store) kvCreate(ctx context.Context, key string, data []byte) (uint64, error) {
	if s.gc == nil {
		return s.kv.Create(ctx, key, data)
	}
	return s.gc.write(ctx, &writeReq{key: key, data: data, create: true})
}

func (s *Store) kvUpdate(ctx context.Context, key string, data []byte, rev uint64) (uint64, error) {
	if s.gc == nil {
		return s.kv.Update(ctx, key, data, rev)
	}
	return s.gc.write(ctx, &writeReq{key: key, data: data, rev: rev})
}

// write stores req and returns its revision: on its own while fewer than
// batchAfter writes are in flight, else through the next batch.
func (c *committer) write(ctx context.Context, req *writeReq) (uint64, error) {
	if c.off.Load() || c.inflight.Load() < batchAfter {
		c.inflight.Add(1)
		defer c.inflight.Add(-1)
		if req.create {
			return c.kv.Create(ctx, req.key, req.data)
		}
		return c.kv.Update(ctx, req.key, req.data, req.rev)
	}
	req.done = make(chan writeResult, 1)
	c.mu.Lock()
	c.queue = append(c.queue, req)
	if !c.running {
		c.running = true
		go c.run()
	}
	c.mu.Unlock()
	select {
	case r := <-req.done:
		return r.rev, r.err
	case <-ctx.Done():
		// The write may still be stored, as with a write whose
		// acknowledgement did not come in time.
		return 0, fmt.Errorf("write %s: %w", req.key, ctx.Err())
	}
}

// run commits batches until the queue is empty.
func (c *committer) run() {
	for {
		c.mu.Lock()
		batch, rest := takeBatch(c.queue)
		c.queue = rest
		if len(batch) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.commit(batch)
	}
}

// takeBatch takes from queue, in order, up to maxBatch writes of distinct
// keys; a second write of a key waits for the next batch, and so do the
// writes queued after it (a key's writes keep their order).
func takeBatch(queue []*writeReq) (batch, rest []*writeReq) {
	seen := make(map[string]bool, min(len(queue), maxBatch))
	n := 0
	for n < len(queue) && n < maxBatch && !seen[queue[n].key] {
		seen[queue[n].key] = true
		n++
	}
	return queue[:n:n], append([]*writeReq(nil), queue[n:]...)
}

func (c *committer) commit(batch []*writeReq) {
	if len(batch) < minBatch || c.off.Load() {
		c.each(batch)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	first, err := c.publishBatch(ctx, batch)
	if err == nil {
		c.batches.Add(1)
		c.batched.Add(int64(len(batch)))
		for i, r := range batch {
			r.done <- writeResult{rev: first + uint64(i)}
		}
		return
	}
	var refused *batchRefused
	if !errors.As(err, &refused) {
		// No answer: whether the batch was stored is not known.
		for _, r := range batch {
			r.done <- writeResult{err: fmt.Errorf("write %s: %w", r.key, err)}
		}
		return
	}
	if refused.code == jsErrAtomicPublishDisabled {
		c.off.Store(true)
	}
	c.each(batch)
}

// each writes every request on its own, concurrently.
func (c *committer) each(batch []*writeReq) {
	var wg sync.WaitGroup
	for _, r := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
			defer cancel()
			var rev uint64
			var err error
			if r.create {
				rev, err = c.kv.Create(ctx, r.key, r.data)
			} else {
				rev, err = c.kv.Update(ctx, r.key, r.data, r.rev)
			}
			r.done <- writeResult{rev: rev, err: err}
		}()
	}
	wg.Wait()
}

// jsErrAtomicPublishDisabled is the server's error code when the stream
// does not allow atomic batches.
const jsErrAtomicPublishDisabled = 10174

type batchRefused struct {
	code        int
	description string
}

func (e *batchRefused) Error() string {
	return fmt.Sprintf("batch refused: %s (error %d)", e.description, e.code)
}

var batchSeq atomic.Uint64

// publishBatch stores batch as one atomic batch and returns the revision
// of its first write (the others follow it).
func (c *committer) publishBatch(ctx context.Context, batch []*writeReq) (uint64, error) {
	id := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(batchSeq.Add(1), 36)
	var reply *nats.Msg
	for i, r := range batch {
		m := nats.NewMsg(c.prefix + r.key)
		m.Data = r.data
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(r.rev, 10))
		if i < len(batch)-1 {
			if err := c.nc.PublishMsg(m); err != nil {
				return 0, fmt.Errorf("publish batch: %w", err)
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		var err error
		if reply, err = c.nc.RequestMsgWithContext(ctx, m); err != nil {
			return 0, fmt.Errorf("commit batch of %d: %w", len(batch), err)
		}
	}
	var ack struct {
		Seq   uint64 `json:"seq"`
		Count int    `json:"count"`
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		return 0, &batchRefused{description: fmt.Sprintf("unreadable acknowledgement %q", reply.Data)}
	}
	if ack.Error != nil {
		return 0, &batchRefused{code: ack.Error.ErrCode, description: ack.Error.Description}
	}
	if ack.Count != len(batch) || ack.Seq < uint64(len(batch)) {
		return 0, fmt.Errorf("commit batch of %d: acknowledged %d writes up to %d", len(batch), ack.Count, ack.Seq)
	}
	return ack.Seq - uint64(len(batch)) + 1, nil
}
