package images

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/images/imagetest"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// cutRegistry is an in-process registry whose blob downloads can be cut:
// the body of the first blob GET that goes past cutAfter bytes is aborted
// there (and, with downAfterCut, every later request fails with 503). It
// counts the body bytes of blob GETs and records their Range headers.
type cutRegistry struct {
	t    *testing.T
	srv  *httptest.Server
	host string

	mu           sync.Mutex
	cutAfter     int64
	downAfterCut bool
	down         bool
	blobBytes    int64
	ranges       []string
}

func newCutRegistry(t *testing.T) *cutRegistry {
	c := &cutRegistry{t: t}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c.mu.Lock()
		down := c.down
		blobGet := req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:")
		if blobGet && !down {
			c.ranges = append(c.ranges, req.Header.Get("Range"))
		}
		c.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if blobGet {
			w = &cutWriter{ResponseWriter: w, c: c}
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(c.srv.Close)
	c.host = strings.TrimPrefix(c.srv.URL, "http://")
	return c
}

// cutWriter counts a blob body and aborts it at the registry's cut.
type cutWriter struct {
	http.ResponseWriter
	c *cutRegistry
}

func (w *cutWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	cut := false
	if w.c.cutAfter > 0 && w.c.blobBytes+int64(len(p)) >= w.c.cutAfter {
		p = p[:w.c.cutAfter-w.c.blobBytes]
		w.c.cutAfter, w.c.down, cut = 0, w.c.downAfterCut, true
	}
	w.c.blobBytes += int64(len(p))
	w.c.mu.Unlock()
	n, err := w.ResponseWriter.Write(p)
	if cut {
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler) // the connection drops mid-body
	}
	return n, err
}

func (c *cutRegistry) push(t *testing.T, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(c.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	return ref.String()
}

func (c *cutRegistry) stats() (int64, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blobBytes, append([]string(nil), c.ranges...)
}

func (c *cutRegistry) reset(cutAfter int64, downAfterCut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blobBytes, c.ranges, c.cutAfter, c.downAfterCut, c.down = 0, nil, cutAfter, downAfterCut, false
}

// bigImage has one layer of about size incompressible bytes.
func bigImage(t *testing.T, size int) (v1.Image, v1.Hash, int64) {
	t.Helper()
	body := make([]byte, size)
	if _, err := rand.Read(body); err != nil {
		t.Fatal(err)
	}
	l := imagetest.Layer(t, imagetest.File{Name: "big", Body: string(body)})
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	n, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	return imagetest.Image(t, v1.Config{Entrypoint: []string{"/big"}}, l), d, n
}

// A layer download cut halfway continues with a Range request on the next
// try of the same Pull: the registry serves the layer about once, not 1.5x.
func TestPullResumesCutLayerWithRange(t *testing.T) {
	ctx := context.Background()
	reg := newCutRegistry(t)
	img, ld, size := bigImage(t, 16<<20)
	ref := reg.push(t, "big:v1", img)
	reg.reset(size/2, false)

	s := openStore(t, t.TempDir())
	var resumedAt []int64
	got, err := s.Pull(ctx, ref, PullOptions{OnResume: func(d string, off, sz int64) {
		if d == ld.String() && sz == size {
			resumedAt = append(resumedAt, off)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, img) {
		t.Fatalf("pulled %s", got.Digest)
	}
	served, ranges := reg.stats()
	if len(resumedAt) != 1 || resumedAt[0] <= 0 {
		t.Fatalf("resumed at %v, want one resume past 0 (ranges %q)", resumedAt, ranges)
	}
	want := fmt.Sprintf("bytes=%d-%d", resumedAt[0], size-1)
	found := false
	for _, r := range ranges {
		found = found || r == want
	}
	if !found {
		t.Errorf("blob GET ranges %q, want one %q", ranges, want)
	}
	// The layer, the config once, nothing twice.
	if served > size+size/16 {
		t.Errorf("registry served %d blob bytes for a %d-byte layer: the retry started over", served, size)
	}
	t.Logf("registry: %d-byte layer cut at %d; the resumed fetch transferred %d bytes; %d blob bytes served in all (%.2fx the layer)",
		size, resumedAt[0], size-resumedAt[0], served, float64(served)/float64(size))
	if _, err := os.Stat(filepath.Join(got.Dir, "rootfs", "big")); err != nil {
		t.Error(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.dir, "partial")); len(entries) != 0 {
		t.Errorf("partial downloads left: %v", entries)
	}
}

// A partial download left on disk by one Store (the pull failed: the link
// went down) is continued by a new Store over the same directory.
func TestPullResumesPartialAfterRestart(t *testing.T) {
	ctx := context.Background()
	reg := newCutRegistry(t)
	img, ld, size := bigImage(t, 4<<20)
	ref := reg.push(t, "big:v1", img)
	reg.reset(size/3, true)

	dir := t.TempDir()
	s1 := openStore(t, dir)
	if _, err := s1.Pull(ctx, ref, PullOptions{}); err == nil {
		t.Fatal("pull over a dead link succeeded")
	}
	fi, err := os.Stat(filepath.Join(dir, "partial", ld.Hex))
	if err != nil || fi.Size() == 0 {
		t.Fatalf("no partial download left: %v", err)
	}
	var st partialState
	if data, err := os.ReadFile(filepath.Join(dir, "partial", ld.Hex+".json")); err != nil || json.Unmarshal(data, &st) != nil || st.Written != fi.Size() {
		t.Fatalf("sidecar %+v (file %d bytes): %v", st, fi.Size(), err)
	}

	reg.reset(0, false)
	s2 := openStore(t, dir)
	var resumed int64
	if _, err := s2.Pull(ctx, ref, PullOptions{OnResume: func(d string, off, _ int64) {
		if d == ld.String() {
			resumed = off
		}
	}}); err != nil {
		t.Fatal(err)
	}
	served, ranges := reg.stats()
	if resumed != st.Written {
		t.Errorf("resumed at %d, want %d (ranges %q)", resumed, st.Written, ranges)
	}
	if rest := size - st.Written; served > rest+rest/8 || served < rest {
		t.Errorf("second store: %d blob bytes served, want about %d", served, rest)
	}
}

// GC removes partial downloads nobody resumed for a day and keeps fresh ones.
func TestGCRemovesStalePartials(t *testing.T) {
	s := openStore(t, t.TempDir())
	p := s.partials()
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, fresh := strings.Repeat("a", 64), strings.Repeat("b", 64)
	for _, h := range []string{old, fresh} {
		if err := os.WriteFile(p.path(h), []byte("part"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.writeState(h, partialState{Written: 4}); err != nil {
			t.Fatal(err)
		}
	}
	// Backdate the old one: file times and sidecar.
	when := time.Now().Add(-PartialMaxAge - time.Hour)
	data, _ := json.Marshal(partialState{Written: 4, Updated: when})
	if err := os.WriteFile(p.sidecar(old), data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.path(old), p.sidecar(old)} {
		if err := os.Chtimes(f, when, when); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GC(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.path(old)); !os.IsNotExist(err) {
		t.Errorf("stale partial kept: %v", err)
	}
	if _, err := os.Stat(p.sidecar(old)); !os.IsNotExist(err) {
		t.Errorf("stale sidecar kept: %v", err)
	}
	if got := p.Offset(fresh); got != 4 {
		t.Errorf("fresh partial: offset %d, want 4", got)
	}
}

// A corrupted partial download is caught by the digest at the end, removed,
// and the next fetch starts over and succeeds.
func TestPartialsCorruptPrefixDetected(t *testing.T) {
	ctx := context.Background()
	data := make([]byte, 3<<20)
	rand.Read(data)
	hexd := sha256Hex(data)
	p, err := OpenPartials(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "blob")
	cutAt := int64(2 << 20)
	open := func(cut int64) OpenAt {
		return func(_ context.Context, off int64, _ string) (io.ReadCloser, int64, error) {
			var r io.Reader = strings.NewReader(string(data[off:]))
			if cut > 0 {
				r = io.MultiReader(io.LimitReader(r, cut-off), errReader{io.ErrUnexpectedEOF})
			}
			return io.NopCloser(r), off, nil
		}
	}
	if _, err := p.Fetch(ctx, hexd, int64(len(data)), open(cutAt), dst); err == nil {
		t.Fatal("cut fetch succeeded")
	}
	if got := p.Offset(hexd); got != cutAt {
		t.Fatalf("partial holds %d bytes, want %d", got, cutAt)
	}
	f, err := os.OpenFile(p.path(hexd), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{^data[1000]}, 1000)
	f.Close()
	stats, err := p.Fetch(ctx, hexd, int64(len(data)), open(0), dst)
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") || !stats.Resumed {
		t.Fatalf("corrupt partial: stats %+v, err %v", stats, err)
	}
	if _, err := os.Stat(p.path(hexd)); !os.IsNotExist(err) {
		t.Errorf("corrupt partial kept: %v", err)
	}
	stats, err = p.Fetch(ctx, hexd, int64(len(data)), open(0), dst)
	if err != nil || stats.Resumed || stats.Transferred != int64(len(data)) {
		t.Fatalf("fetch after a mismatch: %+v, %v", stats, err)
	}
	if got, _ := os.ReadFile(dst); sha256Hex(got) != hexd {
		t.Error("blob differs")
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// The module layer of a wasm artifact cut halfway continues with a Range
// request on the next try.
func TestPullWasmResumesCutModule(t *testing.T) {
	ctx := context.Background()
	reg := newCutRegistry(t)
	module := make([]byte, 4<<20)
	rand.Read(module)
	copy(module, "\x00asm\x01\x00\x00\x00")
	ref := reg.push(t, "mod:v1", imagetest.WasmArtifact(t, module, ""))
	reg.reset(int64(len(module))/2, false)

	s := openStore(t, t.TempDir())
	var resumed int64
	m, err := s.PullWasm(ctx, ref, PullOptions{OnResume: func(_ string, off, _ int64) { resumed = off }})
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest != "sha256:"+sha256Hex(module) || resumed <= 0 {
		t.Fatalf("pulled %s, resumed at %d", m.Digest, resumed)
	}
	served, ranges := reg.stats()
	if size := int64(len(module)); served > size+size/16 {
		t.Errorf("registry served %d blob bytes for a %d-byte module (ranges %q)", served, size, ranges)
	}
	if got, _ := os.ReadFile(m.Path); sha256Hex(got) != sha256Hex(module) {
		t.Error("module differs")
	}
}
