package wasm

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// A module file is hashed again only when it changed: the same file gives
// the same compiled module, and another module written over the path (a
// rename, or a rewrite in place) gives its own.
func TestModuleCacheRereadsChangedFiles(t *testing.T) {
	r := newRuntime(t)
	t.Cleanup(func() { r.Close(context.Background()) })
	ctx := context.Background()
	exitWasm, err := os.ReadFile(testmodules.Path(t, "exit"))
	if err != nil {
		t.Fatal(err)
	}
	envWasm, err := os.ReadFile(testmodules.Path(t, "env"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(path, exitWasm, 0o644); err != nil {
		t.Fatal(err)
	}
	acquire := func() *compiled {
		t.Helper()
		m, err := r.modules.acquire(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		r.modules.release(ctx, m)
		return m
	}
	first := acquire()
	if again := acquire(); again != first {
		t.Fatal("the unchanged file gave another module")
	}

	// Renamed over the path.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, envWasm, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	second := acquire()
	if second == first || second.digest == first.digest {
		t.Fatalf("a module renamed over the path gave the old one (%s)", second.digest)
	}

	// Rewritten in place.
	if err := os.WriteFile(path, exitWasm, 0o644); err != nil {
		t.Fatal(err)
	}
	if third := acquire(); third.digest != first.digest {
		t.Fatalf("a module rewritten in place gave %s, want %s", third.digest, first.digest)
	}

	// Not a module any more: refused, as before.
	if err := os.WriteFile(path, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.modules.acquire(ctx, path); err == nil {
		t.Fatal("a file that is no longer a module was accepted")
	}
}
