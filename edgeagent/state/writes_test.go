package state

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// lastTxID is the id of the last committed write transaction: a read
// transaction sees it as its own id; each write transaction adds one.
func lastTxID(t *testing.T, d *DB) int {
	t.Helper()
	var id int
	if err := d.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestConcurrentPodWritesBatched: pod workers writing at the same time
// share bbolt transactions (one commit and fsync for many writes), each
// write returning only once it is committed.
func TestConcurrentPodWritesBatched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const n = 50
	tx0 := lastTxID(t, d)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			p := &Pod{Pod: testPod(fmt.Sprintf("p%02d", i), fmt.Sprintf("uid-%02d", i)), Revision: uint64(i + 1)}
			if err := d.PutPod(p); err != nil {
				errs <- err
				return
			}
			// Committed once PutPod returns: a read sees it.
			var found bool
			d.db.View(func(tx *bolt.Tx) error {
				found = tx.Bucket(bucketPods).Get([]byte(p.Key())) != nil
				return nil
			})
			if !found {
				errs <- fmt.Errorf("pod %s not readable after PutPod returned", p.Key())
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	txs := lastTxID(t, d) - tx0
	t.Logf("%d concurrent pod writes: %d bbolt write transactions", n, txs)
	if txs < 1 || txs > n/5 {
		t.Errorf("%d concurrent pod writes took %d write transactions, want 1 to %d (coalesced)", n, txs, n/5)
	}
	pods, err := d.Pods()
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != n {
		t.Fatalf("%d pods stored, want %d", len(pods), n)
	}
}

// TestNothingToSaveWritesNothing: an outbox save with nothing to put or
// delete does not open a write transaction.
func TestNothingToSaveWritesNothing(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tx0 := lastTxID(t, d)
	for range 10 {
		if err := d.SaveStatuses(nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Statuses(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pods(); err != nil {
		t.Fatal(err)
	}
	if n := lastTxID(t, d) - tx0; n != 0 {
		t.Errorf("%d write transactions for empty saves and reads, want none", n)
	}
	if err := d.SaveStatuses([]OutboxEntry{{Key: "default/a", Seq: 1, Pod: []byte(`{}`)}}, nil); err != nil {
		t.Fatal(err)
	}
	if n := lastTxID(t, d) - tx0; n != 1 {
		t.Errorf("%d write transactions for one save, want one", n)
	}
}
