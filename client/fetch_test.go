package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/images"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// cutProxy forwards one loopback TCP link to target, counts the bytes it
// carries from the server to the client, and cuts every connection once
// that count passes cutAfter (0: never).
type cutProxy struct {
	ln       net.Listener
	target   string
	cutAfter int64

	mu    sync.Mutex
	down  int64 // bytes server → client
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string, cutAfter int64) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, cutAfter: cutAfter}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *cutProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go func() { io.Copy(u, c); u.Close() }()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := u.Read(buf)
				if n > 0 {
					p.mu.Lock()
					if p.cutAfter > 0 && p.down+int64(n) > p.cutAfter {
						n = int(p.cutAfter - p.down)
					}
					p.down += int64(n)
					cut := p.cutAfter > 0 && p.down >= p.cutAfter
					p.mu.Unlock()
					if _, err := c.Write(buf[:n]); err != nil || cut {
						p.cut()
						return
					}
				}
				if err != nil {
					c.Close()
					return
				}
			}
		}()
	}
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

// putChunked stores data as a blob of the module store in small chunks and
// returns its hex digest.
func putChunked(t *testing.T, store jetstream.ObjectStore, data []byte, chunk uint32) string {
	t.Helper()
	sum := sha256.Sum256(data)
	hexd := hex.EncodeToString(sum[:])
	meta := jetstream.ObjectMeta{Name: messaging.ModuleDigestName(hexd), Opts: &jetstream.ObjectMetaOptions{ChunkSize: chunk}}
	if _, err := store.Put(context.Background(), meta, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return hexd
}

// connectVia connects through the proxy, with no reconnection: a cut ends
// the fetch, as a dead link does.
func connectVia(t *testing.T, p *cutProxy) *client.Client {
	t.Helper()
	nc, err := nats.Connect(p.url(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return client.New(nc)
}

func serverAddr(t *testing.T, env *natstest.Env) string {
	t.Helper()
	u, err := url.Parse(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// fetchBlob fetches blob hexd of cl into dst through parts, as the image
// store does.
func fetchBlob(ctx context.Context, parts *images.Partials, cl *client.Client, hexd, dst string) (images.FetchStats, error) {
	return parts.Fetch(ctx, hexd, -1, func(ctx context.Context, off int64, tok string) (io.ReadCloser, int64, error) {
		return cl.OpenBlobAt(ctx, "sha256:"+hexd, off, tok)
	}, dst)
}

// A 16 MiB blob in 32 KiB chunks, cut at about half: the second fetch, on a
// new connection, receives about the missing half, and the blob verifies.
func TestFetchBlobResumesAfterCut(t *testing.T) {
	ctx := context.Background()
	env := natstest.Start(t, "test")
	const size = 16 << 20
	data := make([]byte, size)
	rand.Read(data)
	hexd := putChunked(t, env.Buckets.Modules, data, 32<<10)
	parts, err := images.OpenPartials(filepath.Join(t.TempDir(), "partial"))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "blob")

	p1 := newCutProxy(t, serverAddr(t, env), size/2)
	if _, err := fetchBlob(ctx, parts, connectVia(t, p1), hexd, dst); err == nil {
		t.Fatal("fetch over a cut link succeeded")
	}
	offset := parts.Offset(hexd)
	if offset <= 0 || offset > size/2 {
		t.Fatalf("partial download holds %d bytes after a cut at %d", offset, size/2)
	}

	p2 := newCutProxy(t, serverAddr(t, env), 0)
	stats, err := fetchBlob(ctx, parts, connectVia(t, p2), hexd, dst)
	if err != nil {
		t.Fatal(err)
	}
	got := p2.bytes()
	rest := int64(size) - offset
	if !stats.Resumed || stats.Offset != offset || stats.Transferred != rest {
		t.Errorf("second fetch: %+v, want resumed at %d", stats, offset)
	}
	// Received on the link: the rest plus protocol overhead, not the blob.
	if got < rest || got > rest+rest/16 {
		t.Errorf("second fetch received %d bytes on the link, want about %d", got, rest)
	}
	t.Logf("object store: %d-byte blob (32 KiB chunks) cut after %d link bytes, %d on disk; the resumed fetch received %d bytes on the link (%d of blob)",
		size, p1.bytes(), offset, got, rest)
	if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("fetched blob differs: %v", err)
	}
}

// A corrupted partial download is found by the digest at the end, removed,
// and the next fetch starts over.
func TestFetchBlobCorruptPartialDetected(t *testing.T) {
	ctx := context.Background()
	env := natstest.Start(t, "test")
	data := make([]byte, 2<<20)
	rand.Read(data)
	hexd := putChunked(t, env.Buckets.Modules, data, 16<<10)
	dir := filepath.Join(t.TempDir(), "partial")
	parts, err := images.OpenPartials(dir)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "blob")
	p1 := newCutProxy(t, serverAddr(t, env), 1<<20)
	if _, err := fetchBlob(ctx, parts, connectVia(t, p1), hexd, dst); err == nil {
		t.Fatal("fetch over a cut link succeeded")
	}
	if parts.Offset(hexd) == 0 {
		t.Fatal("nothing kept")
	}
	f, err := os.OpenFile(filepath.Join(dir, hexd), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{^data[100]}, 100)
	f.Close()

	cl := client.New(env.Conn)
	stats, err := fetchBlob(ctx, parts, cl, hexd, dst)
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") || !stats.Resumed {
		t.Fatalf("corrupt partial: %+v, %v", stats, err)
	}
	if _, err := os.Stat(filepath.Join(dir, hexd)); !os.IsNotExist(err) {
		t.Errorf("corrupt partial kept: %v", err)
	}
	if stats, err := fetchBlob(ctx, parts, cl, hexd, dst); err != nil || stats.Resumed {
		t.Fatalf("fetch after the mismatch: %+v, %v", stats, err)
	}
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) {
		t.Error("fetched blob differs")
	}
}

// Reading from a token continues exactly there, inside a chunk too; a token
// of a replaced object, or none, starts over at 0.
func TestOpenBlobAtToken(t *testing.T) {
	ctx := context.Background()
	env := natstest.Start(t, "test")
	cl := client.New(env.Conn)
	data := make([]byte, 100_000)
	rand.Read(data)
	hexd := putChunked(t, env.Buckets.Modules, data, 4096)

	rc, start, err := cl.OpenBlobAt(ctx, hexd, 0, "")
	if err != nil || start != 0 {
		t.Fatalf("open: %d, %v", start, err)
	}
	head := make([]byte, 10_000)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	tok := rc.(interface{ Token() string }).Token()
	rc.Close()
	if !bytes.Equal(head, data[:10_000]) || tok == "" {
		t.Fatalf("head differs or no token (%q)", tok)
	}
	for _, off := range []int64{8192, 10_000, 50_001, int64(len(data))} {
		rc, start, err := cl.OpenBlobAt(ctx, hexd, off, tok)
		if err != nil || start != off {
			t.Fatalf("open at %d: start %d, %v", off, start, err)
		}
		rest, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(rest, data[off:]) {
			t.Fatalf("from %d: %d bytes, %v", off, len(rest), err)
		}
	}
	// Before the token's chunk end, or without a token: from 0.
	for _, c := range []struct {
		off int64
		tok string
	}{{4000, tok}, {10_000, ""}, {10_000, "bogus"}} {
		rc, start, err := cl.OpenBlobAt(ctx, hexd, c.off, c.tok)
		if err != nil || start != 0 {
			t.Fatalf("open at %d with %q: start %d, %v", c.off, c.tok, start, err)
		}
		rc.Close()
	}
	// The object replaced (a new NUID): the old token starts over.
	if _, err := env.Buckets.Modules.PutBytes(ctx, messaging.ModuleDigestName(hexd), data); err != nil {
		t.Fatal(err)
	}
	rc, start, err = cl.OpenBlobAt(ctx, hexd, 10_000, tok)
	if err != nil || start != 0 {
		t.Fatalf("replaced object: start %d, %v", start, err)
	}
	if all, err := io.ReadAll(rc); err != nil || !bytes.Equal(all, data) {
		t.Fatalf("replaced object: %d bytes, %v", len(all), err)
	}
	rc.Close()
	if _, _, err := cl.OpenBlobAt(ctx, "sha256:"+strings.Repeat("c", 64), 0, ""); !client.IsNotFound(err) {
		t.Errorf("absent blob: %v", err)
	}
}
