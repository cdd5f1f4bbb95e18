package wasm

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// BenchmarkCreateStartExit measures one container's whole life: create
// (module compiled once, then reused), start, run to exit 0, remove.
func BenchmarkCreateStartExit(b *testing.B) {
	ctx := context.Background()
	r, err := New(ctx, Options{CacheDir: filepath.Join(b.TempDir(), "cache")})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(ctx)
	logDir := b.TempDir()
	sb, err := r.RunPodSandbox(ctx, runtime.PodSandboxConfig{Name: "bench", LogDirectory: logDir})
	if err != nil {
		b.Fatal(err)
	}
	cfg := runtime.ContainerConfig{
		Name: "exit", Image: testmodules.Path(b, "exit"), Args: []string{"0"},
		LogPath: filepath.Join(logDir, "exit.log"), MemoryLimitBytes: 16 << 20,
	}
	// Warm the compiled-module cache.
	warm, err := r.CreateContainer(ctx, sb, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id, err := r.CreateContainer(ctx, sb, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.StartContainer(ctx, id); err != nil {
			b.Fatal(err)
		}
		st := waitExited(b, r, id)
		if st.ExitCode != 0 {
			b.Fatalf("exit code %d: %s %s", st.ExitCode, st.Reason, st.Message)
		}
		if err := r.RemoveContainer(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_ = r.RemoveContainer(ctx, warm)
}

// waitExited waits for the container's goroutine to end, without polling
// delays that would dominate the measurement.
func waitExited(b *testing.B, r *Runtime, id string) runtime.ContainerStatus {
	c, err := r.container(id)
	if err != nil {
		b.Fatal(err)
	}
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.Fatal("container did not exit")
	}
	return c.status()
}
