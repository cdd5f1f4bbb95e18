package edgeagent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

func openStateDB(t *testing.T, path string) *state.DB {
	t.Helper()
	db, err := state.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func outboxKeys(t *testing.T, db *state.DB) []string {
	t.Helper()
	entries, err := db.Statuses()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Key)
	}
	return out
}

// TestStatusOutboxSurvivesRestart: statuses that cannot be sent are kept
// on disk and sent, oldest first, by the next run.
func TestStatusOutboxSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	db := openStateDB(t, path)
	api := &statusAPI{down: true}
	q := newStatusQueue(api, log)
	if err := q.withOutbox(db); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.run(ctx); close(done) }()
	q.put(statusPod("a", "Pending"))
	q.put(statusPod("b", "Running"))
	q.put(statusPod("a", "Running"))
	eventually(t, 5*time.Second, func() error {
		if keys := outboxKeys(t, db); fmt.Sprint(keys) != "[default/b default/a]" {
			return fmt.Errorf("outbox %v", keys)
		}
		return nil
	})
	cancel()
	<-done
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openStateDB(t, path)
	defer db.Close()
	api2 := &statusAPI{}
	q2 := newStatusQueue(api2, log)
	if err := q2.withOutbox(db); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() { q2.run(ctx2); close(done2) }()
	defer func() { cancel2(); <-done2 }()
	q2.poke()
	eventually(t, 5*time.Second, func() error {
		if sent := api2.sentList(); fmt.Sprint(sent) != "[default/b Running default/a Running]" {
			return fmt.Errorf("sent %v", sent)
		}
		if keys := outboxKeys(t, db); len(keys) != 0 {
			return fmt.Errorf("outbox still holds %v", keys)
		}
		return nil
	})
}

// TestStatusOutboxBound: beyond outboxMaxPods the oldest statuses are
// dropped.
func TestStatusOutboxBound(t *testing.T) {
	db := openStateDB(t, filepath.Join(t.TempDir(), "agent.db"))
	defer db.Close()
	q := newStatusQueue(&statusAPI{down: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := q.withOutbox(db); err != nil {
		t.Fatal(err)
	}
	for i := range outboxMaxPods + 5 {
		q.put(statusPod(fmt.Sprintf("p%04d", i), "Running"))
	}
	q.save(true)
	keys := outboxKeys(t, db)
	if len(keys) != outboxMaxPods || keys[0] != "default/p0005" || keys[len(keys)-1] != fmt.Sprintf("default/p%04d", outboxMaxPods+4) {
		t.Fatalf("outbox holds %d statuses, %v ... %v", len(keys), keys[:1], keys[len(keys)-1:])
	}
	if len(q.pending) != outboxMaxPods {
		t.Fatalf("%d statuses pending, want %d", len(q.pending), outboxMaxPods)
	}
}

// boltTxID reads the id of the last write transaction committed to the
// bbolt file at path, from its two meta pages (the newer valid one), as
// it is on disk: every committed write transaction (Update, or one Batch
// of coalesced writes) increments it and rewrites a meta page, so its
// growth counts the writes the agent made to the card. The file is read
// without opening the database (bbolt holds an exclusive lock).
func boltTxID(t *testing.T, path string) uint64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	// Page header: id u64, flags u16, count u16, overflow u32 (16 bytes);
	// then the meta: magic u32, version u32, pageSize u32, flags u32,
	// root bucket (16), freelist u64, pgid u64, txid u64, checksum u64
	// (FNV-64a of what precedes it). Native (little-endian) byte order.
	const hdr, magic = 16, 0xED0CDAED
	meta := func(off int) (txid uint64, ok bool) {
		if off+hdr+64 > len(raw) {
			return 0, false
		}
		m := raw[off+hdr : off+hdr+64]
		if binary.LittleEndian.Uint32(m[0:4]) != magic {
			return 0, false
		}
		h := fnv.New64a()
		h.Write(m[:56])
		if h.Sum64() != binary.LittleEndian.Uint64(m[56:64]) {
			return 0, false // being rewritten
		}
		return binary.LittleEndian.Uint64(m[48:56]), true
	}
	t0, ok0 := meta(0)
	if !ok0 {
		t.Fatalf("%s: meta page 0 is not a valid bbolt meta page", path)
	}
	pageSize := int(binary.LittleEndian.Uint32(raw[hdr+8 : hdr+12]))
	if t1, ok1 := meta(pageSize); ok1 && t1 > t0 {
		return t1
	}
	return t0
}

// countingOutbox is the state database as the status queue's outbox,
// counting the outbox writes (SaveStatuses calls with something to write)
// and when they happened.
type countingOutbox struct {
	db *state.DB

	mu     sync.Mutex
	writes []time.Time
}

func (c *countingOutbox) Statuses() ([]state.OutboxEntry, error) { return c.db.Statuses() }

func (c *countingOutbox) SaveStatuses(puts []state.OutboxEntry, deletes []string) error {
	if len(puts) > 0 || len(deletes) > 0 {
		c.mu.Lock()
		c.writes = append(c.writes, time.Now())
		c.mu.Unlock()
	}
	return c.db.SaveStatuses(puts, deletes)
}

func (c *countingOutbox) writeTimes() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// runQueue runs q until the test ends or the returned stop is called.
func runQueue(t *testing.T, q *statusQueue) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// TestStatusOutboxNotWrittenOnline: while statuses go through, status
// churn never writes the outbox (nor anything else) to disk.
func TestStatusOutboxNotWrittenOnline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	db := openStateDB(t, path)
	defer db.Close()
	box := &countingOutbox{db: db}
	api := &statusAPI{}
	q := newStatusQueue(api, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := q.withOutbox(box); err != nil {
		t.Fatal(err)
	}
	tx0 := boltTxID(t, path)
	stop := runQueue(t, q)
	const pods, rounds = 20, 25
	for r := range rounds {
		for i := range pods {
			q.put(statusPod(fmt.Sprintf("p%02d", i), fmt.Sprintf("Phase%d", r)))
		}
		eventually(t, 10*time.Second, func() error { // each round sent before the next
			for _, s := range api.sentList() {
				if s == fmt.Sprintf("default/p%02d Phase%d", pods-1, r) {
					return nil
				}
			}
			return fmt.Errorf("round %d not sent", r)
		})
	}
	stop() // the shutdown save too
	t.Logf("%d statuses sent online: %d outbox writes, %d bbolt write transactions", len(api.sentList()), len(box.writeTimes()), boltTxID(t, path)-tx0)
	if n := len(box.writeTimes()); n != 0 {
		t.Errorf("%d outbox writes while every status was sent, want none", n)
	}
	if n := boltTxID(t, path) - tx0; n != 0 {
		t.Errorf("%d bbolt write transactions while every status was sent, want none", n)
	}
}

// TestStatusOutboxWriteBehindOffline: while statuses cannot be sent and
// pods change status every few milliseconds, the outbox is written at most
// once per outboxWriteBehind (plus once at shutdown), and it is written:
// what the queue holds reaches the disk.
func TestStatusOutboxWriteBehindOffline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	db := openStateDB(t, path)
	defer db.Close()
	box := &countingOutbox{db: db}
	api := &statusAPI{down: true}
	q := newStatusQueue(api, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := q.withOutbox(box); err != nil {
		t.Fatal(err)
	}
	tx0 := boltTxID(t, path)
	stop := runQueue(t, q)
	const pods = 10
	start := time.Now()
	changes := 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < 3500*time.Millisecond {
		<-tick.C // the churn's pace, not a synchronisation
		q.put(statusPod(fmt.Sprintf("p%02d", changes%pods), fmt.Sprintf("Phase%d", changes)))
		changes++
	}
	elapsed := time.Since(start)
	writes := box.writeTimes()
	stop()
	all := box.writeTimes()
	shutdownWrites := len(all) - len(writes)
	txs := boltTxID(t, path) - tx0
	t.Logf("offline for %v, %d status changes of %d pods: %d outbox writes, %d more at shutdown (%d bbolt write transactions in all)",
		elapsed.Round(time.Millisecond), changes, pods, len(writes), shutdownWrites, txs)
	if max := int(elapsed/outboxWriteBehind) + 1; len(writes) > max || len(writes) < 2 {
		t.Errorf("%d outbox writes in %v of status churn, want 2 to %d (at most one per %v)", len(writes), elapsed, max, outboxWriteBehind)
	}
	for i := 1; i < len(writes); i++ {
		if gap := writes[i].Sub(writes[i-1]); gap < outboxWriteBehind {
			t.Errorf("outbox writes %d and %d only %v apart, want at least %v", i-1, i, gap, outboxWriteBehind)
		}
	}
	if txs != uint64(len(all)) {
		t.Errorf("%d bbolt write transactions for %d outbox writes, want one each", txs, len(all))
	}
	if shutdownWrites > 1 {
		t.Errorf("%d outbox writes at shutdown, want at most one", shutdownWrites)
	}
	// The latest status of every pod is on disk.
	entries, err := db.Statuses()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != pods {
		t.Fatalf("outbox holds %d statuses, want %d", len(entries), pods)
	}
	for _, e := range entries {
		var p manifests.Pod
		if err := json.Unmarshal(e.Pod, &p); err != nil {
			t.Fatal(err)
		}
		last := changes - 1 - (changes-1-podIndex(t, p.Name)+pods)%pods
		if want := fmt.Sprintf("Phase%d", last); p.Status.Phase != want {
			t.Errorf("outbox holds %s %s, want its latest %s", p.Name, p.Status.Phase, want)
		}
	}
}

func podIndex(t *testing.T, name string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(name, "p%02d", &i); err != nil {
		t.Fatalf("pod name %q: %v", name, err)
	}
	return i
}

// TestStatusOutboxByteBound: beyond outboxMaxBytes of encoded statuses the
// oldest are dropped, with a warning, and the outbox on disk stays within
// the bound while more statuses come.
func TestStatusOutboxByteBound(t *testing.T) {
	db := openStateDB(t, filepath.Join(t.TempDir(), "agent.db"))
	defer db.Close()
	logs := &lockedBuffer{}
	q := newStatusQueue(&statusAPI{down: true}, slog.New(slog.NewTextHandler(logs, nil)))
	if err := q.withOutbox(db); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 8<<10) // an 8 KiB status message
	status := func(i int) *manifests.Pod {
		p := statusPod(fmt.Sprintf("p%04d", i), "Failed")
		p.Status.Message = big
		return p
	}
	const n = 300 // ~2.4 MiB, under the pod count bound
	for i := range n {
		q.put(status(i))
	}
	q.save(true)
	check := func(newest int) {
		t.Helper()
		entries, err := db.Statuses()
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, e := range entries {
			size += len(e.Pod)
		}
		t.Logf("outbox: %d statuses, %d bytes (bound %d)", len(entries), size, outboxMaxBytes)
		if size > outboxMaxBytes {
			t.Errorf("outbox holds %d bytes, over the %d bound", size, outboxMaxBytes)
		}
		// As many as fit: one more would exceed the bound.
		if per := size / len(entries); size+per <= outboxMaxBytes {
			t.Errorf("outbox holds %d bytes in %d statuses: room for more (%d bytes each)", size, len(entries), per)
		}
		// The newest kept, contiguous, the oldest dropped.
		for i, e := range entries {
			if want := fmt.Sprintf("default/p%04d", newest-len(entries)+1+i); e.Key != want {
				t.Fatalf("outbox entry %d is %s, want %s (the newest kept, oldest first)", i, e.Key, want)
			}
		}
		q.mu.Lock()
		pending := len(q.pending)
		q.mu.Unlock()
		if pending != len(entries) {
			t.Errorf("%d statuses pending, %d in the outbox: the dropped ones must leave the queue too", pending, len(entries))
		}
	}
	check(n - 1)
	if !strings.Contains(logs.String(), "status outbox full: dropping oldest status") {
		t.Errorf("no warning logged for the dropped statuses")
	}
	// More statuses: the bound holds, the oldest on disk are removed.
	for i := n; i < n+50; i++ {
		q.put(status(i))
	}
	q.save(true)
	check(n + 49)
}

// TestHeartbeatsDoNotWriteState: a connected agent whose pods run steadily
// renews its lease every heartbeat interval without writing its state
// database at all (no bbolt write transaction on the file), so heartbeats,
// and an idle online agent, cost the SD card nothing.
func TestHeartbeatsDoNotWriteState(t *testing.T) {
	cp := startControlPlane(t)
	dataDir := t.TempDir()
	path := filepath.Join(dataDir, "agent.db")
	startFakeAgent(t, cp.url, dataDir, io.Discard) // heartbeat every 200 ms
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := cp.buckets.Heartbeats.Watch(ctx, messaging.LeaseKey("node-1"), jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	heartbeats := func(n int) time.Duration {
		t.Helper()
		start := time.Now()
		for range n {
			select {
			case e := <-w.Updates():
				if e == nil {
					t.Fatal("heartbeat watch ended")
				}
			case <-ctx.Done():
				t.Fatalf("no heartbeat: %v", ctx.Err())
			}
		}
		return time.Since(start)
	}
	heartbeats(1) // registered, its lease renewed
	tx0 := boltTxID(t, path)
	for _, n := range []string{"a", "b"} {
		cp.assign(t, handlerPod(n, "fake", "fake://run"))
	}
	waitRunning(t, cp, "a", "b")
	// The counter sees the agent's writes: the pods' records and statuses
	// (written just after the status is sent).
	eventually(t, 10*time.Second, func() error {
		if boltTxID(t, path) == tx0 {
			return fmt.Errorf("no bbolt write transaction counted while two pods started")
		}
		return nil
	})
	// Wait for the writes behind (pod statuses, the assignments revision,
	// written every revisionFlushInterval) to settle: heartbeats spanning
	// two flush intervals in a row without a write.
	for quiet := false; !quiet; {
		tx := boltTxID(t, path)
		for took := time.Duration(0); took < 2*revisionFlushInterval; {
			took += heartbeats(1)
		}
		quiet = boltTxID(t, path) == tx
	}
	const n = 10
	tx1 := boltTxID(t, path)
	took := heartbeats(n)
	writes := boltTxID(t, path) - tx1
	t.Logf("%d heartbeats in %v with two pods running: %d bbolt write transactions", n, took.Round(time.Millisecond), writes)
	if writes != 0 {
		t.Errorf("%d bbolt write transactions during %d heartbeats of an idle agent, want none", writes, n)
	}
}
