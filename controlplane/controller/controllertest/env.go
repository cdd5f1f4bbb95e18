// Package controllertest starts what controller tests need: an in-process
// NATS server with JetStream, the buckets and a store over them.
package controllertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Env is a running server with its buckets and store.
type Env struct {
	URL     string
	NC      *nats.Conn
	JS      jetstream.JetStream
	Buckets *messaging.Buckets
	Store   *store.Store
}

// Start starts a server on a random port with its data in t.TempDir(); it
// is stopped when the test ends.
func Start(t testing.TB) *Env {
	t.Helper()
	srv, err := messaging.StartServer(messaging.ServerConfig{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := messaging.Connect(ctx, srv.ClientURL(), "controllertest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := messaging.OpenBuckets(ctx, js, messaging.BucketOptions{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	return &Env{URL: srv.ClientURL(), NC: nc, JS: js, Buckets: b, Store: store.New(b.Objects, store.WithJetStream(js))}
}

// Eventually polls f every 10ms until it returns nil, failing the test
// with f's last error after timeout.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		<-tick.C
	}
}

// QuietLogs discards slog output until the test or benchmark ends: a
// warning written while `go test -bench` has printed a benchmark's name but
// not its figures splits the result line that make bench reads.
func QuietLogs(t testing.TB) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	t.Cleanup(func() { slog.SetDefault(prev) })
}
