// Package natstest starts what tests of the other packages need: an
// in-process nats-server with JetStream on a random port, its data in the
// test's temporary directory, a connection, and the project's buckets. All
// of it stops at the end of the test.
package natstest

import (
	"context"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgeorch/edgeorch/messaging"
)

// Env is a running server with a connection and the buckets opened.
type Env struct {
	Server  *server.Server
	URL     string
	Conn    *nats.Conn
	JS      jetstream.JetStream
	Buckets *messaging.Buckets
}

// Start starts the server and connects as name.
func Start(t testing.TB, name string) *Env {
	t.Helper()
	return start(t, name, false)
}

// StartSynced is Start with JetStream syncing every write to disk, as the
// control plane runs by default (for benchmarks of the write path).
func StartSynced(t testing.TB, name string) *Env {
	t.Helper()
	return start(t, name, true)
}

func start(t testing.TB, name string, syncAlways bool) *Env {
	t.Helper()
	ns, err := messaging.StartServer(messaging.ServerConfig{DataDir: t.TempDir(), Port: -1, SyncAlways: syncAlways})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	ctx := context.Background()
	nc, err := messaging.Connect(ctx, ns.ClientURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Server: ns, URL: ns.ClientURL(), Conn: nc, JS: js, Buckets: b}
}
