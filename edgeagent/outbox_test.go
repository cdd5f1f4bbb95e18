package edgeagent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/state"
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
