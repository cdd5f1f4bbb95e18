package oci

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/runtimetest"
)

func TestMain(m *testing.M) {
	MaybeRunShim()
	os.Exit(m.Run())
}

// newTestRuntime returns a runtime on a fresh root whose sandboxes are
// removed when the test ends.
func newTestRuntime(t testing.TB) *Runtime {
	t.Helper()
	requireHost(t)
	root := t.TempDir()
	r, err := New(context.Background(), Options{Root: root})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { cleanupRuntime(t, r) })
	return r
}

// cleanupRuntime removes every sandbox and container of r.
func cleanupRuntime(t testing.TB, r *Runtime) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r.mu.Lock()
	var ids []string
	for id := range r.sandboxes {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	for _, id := range ids {
		if err := r.RemovePodSandbox(ctx, id); err != nil {
			t.Errorf("cleanup: remove sandbox %s: %v", id, err)
		}
	}
}

func TestConformance(t *testing.T) {
	requireHost(t)
	imgs := makeImages(t)
	runtimetest.Run(t, func(t *testing.T) runtime.Runtime { return newTestRuntime(t) }, runtimetest.Images{
		ExitCode:     imgs.exit,
		Env:          imgs.env,
		SleepForever: imgs.sleep,
		BusyLoop:     imgs.busy,
		Missing:      imgs.missing,
	})
}

var _ runtime.NetNSer = (*Runtime)(nil)
