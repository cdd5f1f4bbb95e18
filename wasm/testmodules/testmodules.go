// Package testmodules gives tests the paths of the WebAssembly test modules
// built from wasm/src, building them with make when they are missing.
package testmodules

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// buildMu serialises make runs within one test binary.
var buildMu sync.Mutex

// Root returns the repository root, found from this source file's location.
func Root(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("testmodules: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Path returns the absolute path of wasm/build/<name>.wasm, building it from
// wasm/src/<name>.c with make if it is missing or older than its source. It fails the test when the
// module cannot be built (for example when clang is missing).
func Path(tb testing.TB, name string) string {
	tb.Helper()
	root := Root(tb)
	rel := filepath.Join("wasm", "build", name+".wasm")
	abs := filepath.Join(root, rel)
	buildMu.Lock()
	defer buildMu.Unlock()
	src, err := os.Stat(filepath.Join(root, "wasm", "src", name+".c"))
	if err != nil {
		tb.Fatalf("testmodules: no source for module %q: %v", name, err)
	}
	if out, err := os.Stat(abs); err == nil && !out.ModTime().Before(src.ModTime()) {
		return abs
	}
	cc := os.Getenv("WASM_CC")
	if cc == "" {
		cc = "clang"
	}
	if _, err := exec.LookPath(cc); err != nil {
		tb.Fatalf("testmodules: %s is needed to build wasm test modules (run `make deps`): %v", cc, err)
	}
	cmd := exec.Command("make", "-C", root, rel)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("testmodules: make %s: %v\n%s", rel, err, out)
	}
	if _, err := os.Stat(abs); err != nil {
		tb.Fatalf("testmodules: make %s did not produce the module: %v", rel, err)
	}
	return abs
}
