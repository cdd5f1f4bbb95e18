package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/nats-io/nats.go"
)

// tunnelPair is two connected tunnel ends on their own connections.
func tunnelPair(t *testing.T) (a, b *client.Tunnel) {
	t.Helper()
	env := natstest.Start(t, "tunnels")
	nb, err := nats.Connect(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nb.Close)
	if a, err = client.NewTunnel(env.Conn, "test.a"); err != nil {
		t.Fatal(err)
	}
	if b, err = client.NewTunnel(nb, "test.b"); err != nil {
		t.Fatal(err)
	}
	a.SetPeer("test.b")
	b.SetPeer("test.a")
	env.Conn.Flush()
	nb.Flush()
	return a, b
}

// endless yields bytes forever and counts them.
type endless struct{ n atomic.Int64 }

func (e *endless) Read(p []byte) (int, error) {
	e.n.Add(int64(len(p)))
	return len(p), nil
}

// gate blocks writes until it is opened, then counts them.
type gate struct {
	open    chan struct{}
	entered chan struct{}
	once    sync.Once
	n       atomic.Int64
}

func (g *gate) Write(p []byte) (int, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.open
	g.n.Add(int64(len(p)))
	return len(p), nil
}

// TestTunnelWindowBoundsSlowReader: a reader that does not read holds the
// sender back after one window; nothing piles up in between.
func TestTunnelWindowBoundsSlowReader(t *testing.T) {
	a, b := tunnelPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := &endless{}
	dst := &gate{open: make(chan struct{}), entered: make(chan struct{})}
	go a.Run(ctx, src, io.Discard)
	go b.Run(ctx, strings.NewReader(""), dst)
	select {
	case <-dst.entered:
	case <-ctx.Done():
		t.Fatal("no data reached the reader")
	}
	// Watch the sender for a while: it reads at most one window and the
	// chunk waiting for a credit.
	bound := int64(client.TunnelWindow+1) * client.TunnelChunk
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n := src.n.Load(); n > bound {
			t.Fatalf("the sender read %d bytes for a reader that took none; the window allows %d", n, bound)
		}
	}
	close(dst.open)
	for deadline := time.Now().Add(10 * time.Second); dst.n.Load() < 10*bound; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the reader woke up, only %d bytes went through", dst.n.Load())
		}
	}
}

// TestTunnelHalfCloseAndErrors: each direction ends on its own; an error
// at one end reaches the other with its code.
func TestTunnelHalfCloseAndErrors(t *testing.T) {
	a, b := tunnelPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var toA, toB bytes.Buffer
	errs := make(chan error, 2)
	big := bytes.Repeat([]byte("0123456789"), 100_000)
	go func() { errs <- a.Run(ctx, bytes.NewReader(big), &toA) }()
	go func() { errs <- b.Run(ctx, strings.NewReader("world"), &toB) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if toA.String() != "world" || !bytes.Equal(toB.Bytes(), big) {
		t.Fatalf("a got %q, b got %d bytes", toA.String(), toB.Len())
	}

	a, b = tunnelPair(t)
	refuse := writerFunc(func([]byte) (int, error) {
		return 0, client.Errorf(client.CodeForbidden, "/x: permission denied")
	})
	go func() { errs <- b.Run(ctx, strings.NewReader(""), refuse) }()
	err := a.Run(ctx, strings.NewReader("data"), io.Discard)
	if client.CodeOf(err) != client.CodeForbidden || err.Error() != "/x: permission denied" {
		t.Fatalf("a: %v, want the peer's Forbidden", err)
	}
	if err := <-errs; client.CodeOf(err) != client.CodeForbidden {
		t.Fatalf("b: %v", err)
	}

	// A silent peer ends the session after the timeout.
	a, _ = tunnelPair(t)
	a.Keepalive, a.Timeout = 20*time.Millisecond, 200*time.Millisecond
	pr, _ := io.Pipe()
	err = a.Run(ctx, pr, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no word from the other end") {
		t.Fatalf("silent peer: %v", err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the silent peer was noticed only at the test's deadline")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
