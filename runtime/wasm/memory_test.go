package wasm

import (
	"context"
	"fmt"
	"path/filepath"
	goruntime "runtime"
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
