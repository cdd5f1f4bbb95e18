package wasm

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

func TestLinearMemoryGrowKeepsContents(t *testing.T) {
	l := &memoryLimiter{limit: 4 * pageSize}
	m := l.Allocate(pageSize, 16*pageSize)
	buf := m.Reallocate(pageSize)
	if len(buf) != pageSize {
		t.Fatalf("first allocation: %d bytes, want %d", len(buf), pageSize)
	}
	for i := range buf {
		buf[i] = byte(i % 251)
	}
	for _, size := range []uint64{2 * pageSize, 3 * pageSize, 4 * pageSize} {
		buf = m.Reallocate(size)
		if uint64(len(buf)) != size {
			t.Fatalf("grow to %d: %d bytes", size, len(buf))
		}
		for i := 0; i < pageSize; i++ {
			if buf[i] != byte(i%251) {
				t.Fatalf("grow to %d: byte %d is %d, want %d", size, i, buf[i], i%251)
			}
		}
		for i := pageSize; i < len(buf); i++ {
			if buf[i] != 0 {
				t.Fatalf("grow to %d: new byte %d is %d, want 0", size, i, buf[i])
			}
		}
		if got := l.size.Load(); got != size {
			t.Fatalf("limiter size %d, want %d", got, size)
		}
	}
	if m.Reallocate(5*pageSize) != nil {
		t.Fatal("growth past the limit succeeded")
	}
	if !l.refused.Load() {
		t.Fatal("growth past the limit not recorded")
	}
	m.Free()
}

// TestLinearMemoryOffHeap: modules' linear memories do not live in the Go
// heap (memory_linux.go), so they do not raise the collector's target.
func TestLinearMemoryOffHeap(t *testing.T) {
	if goruntime.GOOS != "linux" {
		t.Skip("linear memory is in the Go heap on " + goruntime.GOOS)
	}
	ctx := context.Background()
	r, err := New(ctx, Options{CacheDir: filepath.Join(t.TempDir(), "cache")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	logDir := t.TempDir()
	heap := func() uint64 {
		var ms goruntime.MemStats
		goruntime.GC()
		goruntime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	start := func(i int) string {
		sb, err := r.RunPodSandbox(ctx, runtime.PodSandboxConfig{Name: fmt.Sprint("p", i), LogDirectory: logDir})
		if err != nil {
			t.Fatal(err)
		}
		id, err := r.CreateContainer(ctx, sb, runtime.ContainerConfig{
			Name: "c", Image: testmodules.Path(t, "sleep"), LogPath: fmt.Sprintf("%s/%d.log", logDir, i), MemoryLimitBytes: 8 << 20,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	start(0) // compiles the module
	const n = 20
	var ids []string
	before := heap()
	for i := 1; i <= n; i++ {
		ids = append(ids, start(i))
	}
	for _, id := range ids {
		for {
			c, err := r.container(id)
			if err != nil {
				t.Fatal(err)
			}
			if c.stats().MemoryBytes > 0 {
				break // instantiated: its linear memory exists
			}
			goruntime.Gosched()
		}
	}
	// The sleep module's memory is 2 pages (128 KiB): in the heap, n of them
	// would add 2.5 MiB.
	grown := int64(heap()) - int64(before)
	if per := grown / n; per >= pageSize {
		t.Fatalf("Go heap grew by %d bytes per running module: its linear memory is in the heap", per)
	}
}

// TestDefaultMemoryLimit runs the memory bomb without a limit under a
// runtime default of 8 MiB, and with its own limit of 24 MiB: the default
// caps the first only, and the OOMKilled message says which limit it was.
func TestDefaultMemoryLimit(t *testing.T) {
	if _, err := New(context.Background(), Options{DefaultMemoryLimitBytes: -1}); !errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), "default memory limit -1") {
		t.Fatalf("negative default: %v", err)
	}
	f := newFixtureWith(t, Options{DefaultMemoryLimitBytes: 8 << 20})
	allocated := func(id string) int {
		t.Helper()
		text := f.logs(id)
		var n int
		i := strings.Index(text, "allocated ")
		if i < 0 {
			t.Fatalf("bomb log: %q", text)
		}
		if _, err := fmt.Sscanf(text[i:], "allocated %d MiB", &n); err != nil {
			t.Fatalf("bomb log %q: %v", text, err)
		}
		return n
	}
	unlimited := f.start(runtime.ContainerConfig{Name: "unlimited", Image: testmodules.Path(t, "membomb")})
	st := f.wait(unlimited, exited)
	if st.Reason != runtime.ReasonOOMKilled || st.ExitCode != 137 || !strings.Contains(st.Message, "the node's default limit of 8 MiB") {
		t.Fatalf("bomb without a limit: %+v, want OOMKilled 137 naming the default", st)
	}
	if n := allocated(unlimited); n < 1 || n >= 8 {
		t.Fatalf("bomb without a limit allocated %d MiB under a default of 8 MiB", n)
	}
	own := f.start(runtime.ContainerConfig{Name: "own", Image: testmodules.Path(t, "membomb"), MemoryLimitBytes: 24 << 20})
	st = f.wait(own, exited)
	if st.Reason != runtime.ReasonOOMKilled || strings.Contains(st.Message, "default") {
		t.Fatalf("bomb with its own limit: %+v", st)
	}
	if n := allocated(own); n < 16 || n >= 24 {
		t.Fatalf("bomb with a limit of 24 MiB allocated %d MiB (the default must not apply)", n)
	}
	// Below the module's initial memory, the message names the default too.
	tiny := newFixtureWith(t, Options{DefaultMemoryLimitBytes: 1})
	id := tiny.start(runtime.ContainerConfig{Name: "tiny", Image: testmodules.Path(t, "hello")})
	if st := tiny.wait(id, exited); st.Reason != runtime.ReasonOOMKilled || !strings.Contains(st.Message, "default limit of 65536 bytes") {
		t.Fatalf("below initial memory: %+v", st)
	}
}
