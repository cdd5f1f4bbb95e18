package messaging

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestStartServerConnectAndBuckets(t *testing.T) {
	dir := t.TempDir()
	ns, err := StartServer(ServerConfig{DataDir: dir, Port: -1, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	if jc := ns.JetStreamConfig(); jc == nil || !jc.SyncAlways || jc.StoreDir != filepath.Join(dir, "jetstream") {
		t.Fatalf("JetStream config %+v, want sync always in %s/jetstream", jc, dir)
	}
	if got := ns.ClientURL(); !strings.HasPrefix(got, "nats://127.0.0.1:") {
		t.Fatalf("client URL %s, want 127.0.0.1 by default", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := Connect(ctx, ns.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if nc.MaxPayload() != MaxPayload {
		t.Fatalf("max payload %d, want %d", nc.MaxPayload(), MaxPayload)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenBuckets(ctx, js, BucketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Objects.Put(ctx, ObjectKey("pods", "default", "a.b"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	st, err := b.Objects.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 1 {
		t.Fatalf("objects history %d, want 1", st.History())
	}
	// Opening again finds the same buckets.
	b2, err := OpenBuckets(ctx, js, BucketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Objects.Get(ctx, ObjectKey("pods", "default", "a.b")); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	nc.Close()
	ns.Shutdown()
	ns.WaitForShutdown()

	// Restart on the same directory: the data survived.
	ns, err = StartServer(ServerConfig{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err = Connect(ctx, ns.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	b, err = OpenBuckets(ctx, js, BucketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := b.Objects.Get(ctx, ObjectKey("pods", "default", "a.b"))
	if err != nil || string(e.Value()) != "x" {
		t.Fatalf("after restart: %v", err)
	}
	if _, err := b.Modules.PutBytes(ctx, ModuleDigestName("00"), []byte("m")); err != nil {
		t.Fatal(err)
	}
}

func TestStartServerNeedsDataDir(t *testing.T) {
	if _, err := StartServer(ServerConfig{Port: -1}); err == nil {
		t.Fatal("want error without data dir")
	}
}

func TestConnectGivesUpWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Connect(ctx, "nats://127.0.0.1:1", "test"); err == nil {
		t.Fatal("want error when nothing listens")
	}
}
