package edgeagent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// byteProxy forwards loopback TCP connections to target, counts the bytes
// sent from the server to the client, and drops every connection once the
// count reaches cutAfter (0: never).
type byteProxy struct {
	ln       net.Listener
	target   string
	cutAfter int64

	mu    sync.Mutex
	down  int64
	conns []net.Conn
}

func newByteProxy(t *testing.T, target string, cutAfter int64) *byteProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &byteProxy{ln: ln, target: target, cutAfter: cutAfter}
	t.Cleanup(func() { ln.Close(); p.drop() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go p.down1(c, u)
		}
	}()
	return p
}

func (p *byteProxy) down1(c, u net.Conn) {
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
			if _, werr := c.Write(buf[:n]); werr != nil || cut {
				p.drop()
				return
			}
		}
		if err != nil {
			c.Close()
			return
		}
	}
}

func (p *byteProxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *byteProxy) bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

// apiVia is the agent's API over a connection through p that does not
// reconnect: a cut fails the fetch, as a dead link does.
func apiVia(t *testing.T, p *byteProxy) API {
	t.Helper()
	nc, err := nats.Connect("nats://"+p.ln.Addr().String(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return newAPI(nc)
}

// A module fetch cut halfway leaves a partial download under the data
// dir; the module cache of a restarted agent continues it, receives about
// the missing part only, and logs the resume.
func TestModuleCacheResumesAfterCutAndRestart(t *testing.T) {
	ctx := context.Background()
	env := natstest.Start(t, "cp")
	u, err := url.Parse(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4<<20)
	rand.Read(data)
	copy(data, "\x00asm\x01\x00\x00\x00")
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	meta := jetstream.ObjectMeta{Name: messaging.ModuleDigestName(digest), Opts: &jetstream.ObjectMetaOptions{ChunkSize: 32 << 10}}
	if _, err := env.Buckets.Modules.Put(ctx, meta, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}

	dataDir := t.TempDir()
	modDir := filepath.Join(dataDir, "modules", "sha256")
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p1 := newByteProxy(t, u.Host, int64(len(data)/2))
	m1 := newModuleCache(modDir, apiVia(t, p1))
	if _, err := m1.ensure(ctx, digest); err == nil {
		t.Fatal("fetch over a cut link succeeded")
	}
	partial := filepath.Join(dataDir, "modules", "partial", digest)
	fi, err := os.Stat(partial)
	if err != nil || fi.Size() == 0 {
		t.Fatalf("no partial download under the data dir: %v", err)
	}
	offset := fi.Size()

	// A new agent (new cache, new connection) over the same data dir.
	logs := &lockedBuffer{}
	p2 := newByteProxy(t, u.Host, 0)
	m2 := newModuleCache(modDir, apiVia(t, p2))
	m2.setLogger(slog.New(slog.NewTextHandler(logs, nil)))
	path, err := m2.ensure(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("cached module differs")
	}
	rest := int64(len(data)) - offset
	if got := p2.bytes(); got < rest || got > rest+rest/8 {
		t.Errorf("restarted agent received %d bytes on the link, want about %d", got, rest)
	}
	if want := fmt.Sprintf("resumed sha256:%s at %d of %d", digest, offset, len(data)); !strings.Contains(logs.String(), want) {
		t.Errorf("logs lack %q:\n%s", want, logs)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Errorf("partial download left: %v", err)
	}
}
