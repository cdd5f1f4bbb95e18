package oci

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
)

// eventually polls cond until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *Runtime) sparePid() int {
	r.shimMu.Lock()
	defer r.shimMu.Unlock()
	if r.spare == nil {
		return 0
	}
	return r.spare.cmd.Process.Pid
}

// TestSpareShim: after a start the runtime keeps a spare shim, the next
// container runs under it, and Close ends it.
func TestSpareShim(t *testing.T) {
	h := newHarness(t)
	if pid := h.r.sparePid(); pid != 0 {
		t.Fatalf("spare shim %d before any container started", pid)
	}
	first := h.start(h.r, h.busybox("first", "exec sleep 3600"))
	h.wait(h.r, first, runtime.StateRunning, 5*time.Second)
	var spare int
	eventually(t, 5*time.Second, "spare shim", func() bool { spare = h.r.sparePid(); return spare != 0 })

	second := h.start(h.r, h.busybox("second", "echo hello; exec sleep 3600"))
	h.wait(h.r, second, runtime.StateRunning, 5*time.Second)
	var started startedRecord
	if ok, err := readJSON(filepath.Join(h.r.root, containersDir, second, startedFile), &started); !ok || err != nil {
		t.Fatalf("started record: %v %v", ok, err)
	}
	if started.ShimPid != spare {
		t.Fatalf("second container's shim is %d, want the spare %d", started.ShimPid, spare)
	}
	eventually(t, 5*time.Second, "log of the container started by the spare", func() bool {
		return h.log(filepath.Join(h.logs, "second.log")) != ""
	})
	if got := h.log(filepath.Join(h.logs, "second.log")); !strings.Contains(got, "hello") {
		t.Fatalf("log of the second container: %q", got)
	}
	if _, err := os.Stat(filepath.Join(h.r.root, containersDir, second, shimLogFile)); err != nil {
		t.Fatalf("the spare shim did not open its container's shim.log: %v", err)
	}

	eventually(t, 5*time.Second, "new spare shim", func() bool { spare = h.r.sparePid(); return spare != 0 })
	if err := h.r.Close(h.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "spare shim exit after Close", func() bool {
		return syscall.Kill(spare, 0) != nil
	})
	if pid := h.r.sparePid(); pid != 0 {
		t.Fatalf("spare shim %d after Close", pid)
	}
	// The containers keep running.
	h.wait(h.r, first, runtime.StateRunning, time.Second)
}

// TestTornRecords: container.json and started.json are not synced; one
// torn by a power cut reads as never written and does not keep the runtime
// from recovering.
func TestTornRecords(t *testing.T) {
	h := newHarness(t)
	id, err := h.r.CreateContainer(h.ctx, h.sb, h.busybox("torn", "exec sleep 3600"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := h.r.container(id)
	if err != nil {
		t.Fatal(err)
	}
	rec := c.rec
	rec.StartRequested = true
	if err := writeJSON(filepath.Join(c.dir, containerFile), rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, startedFile), []byte(`{"pid": 12`), 0o600); err != nil {
		t.Fatal(err)
	}
	r2, err := New(h.ctx, Options{Root: h.r.root})
	if err != nil {
		t.Fatalf("New over a torn started.json: %v", err)
	}
	st, err := r2.ContainerStatus(h.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != runtime.StateExited || st.Reason != reasonStartError {
		t.Fatalf("container with a torn started.json: %+v", st)
	}

	// A torn container.json: the container is forgotten.
	if err := os.WriteFile(filepath.Join(c.dir, containerFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r3, err := New(h.ctx, Options{Root: h.r.root})
	if err != nil {
		t.Fatalf("New over a torn container.json: %v", err)
	}
	if _, err := r3.ContainerStatus(h.ctx, id); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("container with a torn container.json: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(c.dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state directory of a torn container: %v", err)
	}
	// The first runtime's view is stale now: what it would remove of the
	// container is done here, so that its cleanup removes the sandbox.
	if err := unmount(filepath.Join(c.rec.Bundle, "rootfs")); err != nil {
		t.Fatal(err)
	}
	h.r.mu.Lock()
	delete(h.r.containers, id)
	h.r.mu.Unlock()
}
