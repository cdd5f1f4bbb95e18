package messaging_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// nextMsg waits for the next message of sub.
func nextMsg(t *testing.T, sub *nats.Subscription) *nats.Msg {
	t.Helper()
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("notification on %s: %v", sub.Subject, err)
	}
	return m
}

// checkNotification checks that m announces op (put when "") of key at rev
// with value.
func checkNotification(t *testing.T, m *nats.Msg, key string, rev uint64, op, value string) {
	t.Helper()
	got, err := messaging.ParseAssignmentNotifySubject(m.Subject)
	if err != nil || got != key {
		t.Fatalf("notification subject %s: key %q (%v), want %q", m.Subject, got, err, key)
	}
	if seq := m.Header.Get(messaging.HeaderSequence); seq != strconv.FormatUint(rev, 10) {
		t.Errorf("%s: %s %q, want revision %d", m.Subject, messaging.HeaderSequence, seq, rev)
	}
	if o := m.Header.Get(messaging.HeaderKVOperation); o != op {
		t.Errorf("%s: %s %q, want %q", m.Subject, messaging.HeaderKVOperation, o, op)
	}
	if string(m.Data) != value {
		t.Errorf("%s: value %q, want %q", m.Subject, m.Data, value)
	}
}

// Every change of a node's assignments is republished, value and revision
// included, on that node's notification subject and no other node's.
func TestAssignmentChangesRepublished(t *testing.T) {
	env := natstest.Start(t, "republish")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := env.Conn.SubscribeSync(messaging.AssignmentNotifyFilter("node-a.x"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := env.Conn.SubscribeSync(messaging.AssignmentNotifyFilter("node-b"))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	kv := env.Buckets.Assignments
	key := messaging.AssignmentKey("node-a.x", "default", "web.1")
	rev, err := kv.Put(ctx, key, []byte(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	checkNotification(t, nextMsg(t, sub), key, rev, "", `{"v":1}`)
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	checkNotification(t, nextMsg(t, sub), key, rev+1, "DEL", "")
	if _, err := kv.Put(ctx, key, []byte(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	checkNotification(t, nextMsg(t, sub), key, rev+2, "", `{"v":2}`)
	if err := kv.Purge(ctx, key); err != nil {
		t.Fatal(err)
	}
	checkNotification(t, nextMsg(t, sub), key, rev+3, "PURGE", "")
	if m, err := other.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("node-b was notified of %s", m.Subject)
	}
}

// A data directory whose assignments bucket predates notifications is
// upgraded in place: its assignments stay and changes are republished.
func TestOpenBucketsAddsRePublishToExistingBucket(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := func() (*nats.Conn, jetstream.JetStream, func()) {
		ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: dir, Port: -1})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := messaging.Connect(ctx, ns.ClientURL(), "upgrade")
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js, func() { nc.Close(); ns.Shutdown(); ns.WaitForShutdown() }
	}
	// The bucket as earlier versions created it.
	_, js, stop := start()
	old, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: messaging.BucketAssignments, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	key := messaging.AssignmentKey("n1", "default", "p")
	if _, err := old.Put(ctx, key, []byte("before")); err != nil {
		t.Fatal(err)
	}
	stop()

	nc, js, stop := start()
	defer stop()
	b, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{})
	if err != nil {
		t.Fatalf("open buckets of an older data dir: %v", err)
	}
	s, err := js.Stream(ctx, messaging.KVStream(messaging.BucketAssignments))
	if err != nil {
		t.Fatal(err)
	}
	if rp := s.CachedInfo().Config.RePublish; rp == nil || *rp != *messaging.AssignmentsRePublish() {
		t.Fatalf("republish %+v, want %+v", rp, messaging.AssignmentsRePublish())
	}
	if e, err := b.Assignments.Get(ctx, key); err != nil || string(e.Value()) != "before" {
		t.Fatalf("assignment after the upgrade: %v", err)
	}
	sub, err := nc.SubscribeSync(messaging.AssignmentNotifyFilter("n1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	rev, err := b.Assignments.Put(ctx, key, []byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	checkNotification(t, nextMsg(t, sub), key, rev, "", "after")
	// Opening once more changes nothing.
	if _, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestParseAssignmentNotifySubject(t *testing.T) {
	key := messaging.AssignmentKey("n.1", "", "p")
	if got, err := messaging.ParseAssignmentNotifySubject(messaging.AssignmentNotifySubject(key)); err != nil || got != key {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	for _, bad := range []string{"", "edge.asg.v1", "edge.asg.v1.", "edge.asg.v1.n.p", "edge.watch.v1.n.ns.p", "edge.asg.v1.n.ns.p.x"} {
		if _, err := messaging.ParseAssignmentNotifySubject(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
