package testmodules

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The module is not deleted first: other test binaries may be using it.
func TestPathGivesModule(t *testing.T) {
	p := Path(t, "exit")
	if !filepath.IsAbs(p) {
		t.Fatalf("path %q is not absolute", p)
	}
	if want := filepath.Join(Root(t), "wasm", "build", "exit.wasm"); p != want {
		t.Fatalf("path = %q, want %q", p, want)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read module: %v", err)
	}
	if !bytes.HasPrefix(data, []byte("\x00asm")) {
		t.Fatalf("%s is not a wasm module: % x", p, data[:min(8, len(data))])
	}
}

func TestPathUnknownModuleFails(t *testing.T) {
	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		Path(ft, "no-such-module")
	}()
	if !ft.failed {
		t.Fatal("Path of an unknown module did not fail the test")
	}
}

// fakeTB records Fatalf instead of stopping the real test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	panic("fatal")
}
func (f *fakeTB) Fatal(args ...any) {
	f.failed = true
	panic("fatal")
}
