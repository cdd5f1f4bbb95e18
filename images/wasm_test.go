package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/images/imagetest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
)

// testModule is a valid (empty) WebAssembly module with a custom section
// named after tag, so that tests get distinct modules.
func testModule(tag string) []byte {
	m := []byte("\x00asm\x01\x00\x00\x00")
	body := append([]byte{byte(len(tag))}, tag...)
	m = append(m, 0, byte(len(body)))
	return append(m, body...)
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestIsRegistryRef(t *testing.T) {
	for ref, want := range map[string]bool{
		"127.0.0.1:5000/acme/hello:v1":                  true,
		"ghcr.io/x/y@sha256:" + strings.Repeat("a", 64): true,
		"localhost/hello:v1":                            true,
		"registry:5000/hello":                           true,
		"hello:v1":                                      false,
		"acme/hello:v1":                                 false,
		"hello":                                         false,
	} {
		if got := IsRegistryRef(ref); got != want {
			t.Errorf("IsRegistryRef(%q) = %v, want %v", ref, got, want)
		}
	}
}

func TestPullWasmFromPrivateRegistry(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{User: "alice", Password: "s3cret"})
	mod := testModule("v1")
	ref := reg.Push(t, "acme/hello:v1", imagetest.WasmArtifact(t, mod, ""))
	s := openStore(t, t.TempDir())
	auth := PullOptions{DockerConfigs: [][]byte{imagetest.DockerConfig(reg.Host, "alice", "s3cret")}}

	if _, err := s.PullWasm(ctx, ref, PullOptions{}); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), ref) {
		t.Fatalf("anonymous pull: %v, want ErrUnauthorized naming the ref", err)
	}
	if _, err := s.PullWasm(ctx, ref, PullOptions{Policy: PullNever}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pull Never of an absent module: %v, want ErrNotFound", err)
	}
	m, err := s.PullWasm(ctx, ref, auth)
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest != sha(mod) || m.Ref != ref || m.Size != int64(len(mod)) {
		t.Fatalf("module %+v, want digest %s", m, sha(mod))
	}
	if got, err := os.ReadFile(m.Path); err != nil || !bytes.Equal(got, mod) {
		t.Fatalf("module file %s: %q, %v", m.Path, got, err)
	}

	// IfNotPresent and Never use the store; Always asks the registry.
	n := reg.Requests()
	for _, p := range []PullPolicy{PullIfNotPresent, PullNever} {
		again, err := s.PullWasm(ctx, ref, PullOptions{Policy: p})
		if err != nil || again != m {
			t.Fatalf("pull %s: %+v, %v", p, again, err)
		}
	}
	if reg.Requests() != n {
		t.Fatalf("pulls of a present module made %d requests", reg.Requests()-n)
	}
	auth.Policy = PullAlways
	if _, err := s.PullWasm(ctx, ref, auth); err != nil || reg.Requests() == n {
		t.Fatalf("pull Always: %v, %d requests", err, reg.Requests()-n)
	}

	// A new version under the same tag replaces the module it names.
	mod2 := testModule("v2")
	reg.Push(t, "acme/hello:v1", imagetest.WasmArtifact(t, mod2, imagetest.WasmLayerMediaType))
	m2, err := s.PullWasm(ctx, ref, auth)
	if err != nil || m2.Digest != sha(mod2) {
		t.Fatalf("pull of the new version: %+v, %v", m2, err)
	}
	if m3, err := s.PullWasm(ctx, ref, PullOptions{Policy: PullNever}); err != nil || m3.Digest != sha(mod2) {
		t.Fatalf("pull Never after the update: %+v, %v", m3, err)
	}

	// A corrupted module file is detected and fetched again.
	if err := os.WriteFile(m2.Path, []byte("\x00asm garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, s.dir)
	m4, err := s2.PullWasm(ctx, ref, PullOptions{DockerConfigs: auth.DockerConfigs})
	if err != nil || m4.Digest != sha(mod2) {
		t.Fatalf("repair: %+v, %v", m4, err)
	}
	if got, _ := os.ReadFile(m4.Path); !bytes.Equal(got, mod2) {
		t.Fatalf("repaired module %q", got)
	}
}

func TestPullWasmByDigestAndMediaTypes(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	s := openStore(t, t.TempDir())

	mod := testModule("alt")
	art := imagetest.WasmArtifact(t, mod, "application/wasm")
	ref := reg.Push(t, "alt/mod:v1", art)
	byDigest := strings.TrimSuffix(ref, ":v1") + "@" + digestOf(t, art)
	m, err := s.PullWasm(ctx, byDigest, PullOptions{})
	if err != nil || m.Digest != sha(mod) {
		t.Fatalf("pull by digest: %+v, %v", m, err)
	}
	if again, err := s.PullWasm(ctx, byDigest, PullOptions{Policy: PullNever}); err != nil || again.Digest != m.Digest {
		t.Fatalf("pull Never by digest: %+v, %v", again, err)
	}

	// An index with a wasi/wasm entry among others.
	modIdx := testModule("index")
	wasmArt := imagetest.WasmArtifact(t, modIdx, "")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: testImage(t), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: wasmArt, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "wasip1", Architecture: "wasm"}}},
	)
	idxRef := reg.PushIndex(t, "multi/mod:v1", idx)
	if m, err := s.PullWasm(ctx, idxRef, PullOptions{}); err != nil || m.Digest != sha(modIdx) {
		t.Fatalf("pull from an index: %+v, %v", m, err)
	}

	// Not wasm: a container image, a wasm layer that is no module.
	img := reg.Push(t, "container/app:v1", testImage(t))
	if _, err := s.PullWasm(ctx, img, PullOptions{}); !errors.Is(err, ErrNotWasm) || !strings.Contains(err.Error(), img) {
		t.Errorf("pull of a container image: %v, want ErrNotWasm", err)
	}
	fake := reg.Push(t, "fake/mod:v1", imagetest.WasmArtifact(t, []byte("#!/bin/sh\necho not wasm\n"), ""))
	if _, err := s.PullWasm(ctx, fake, PullOptions{}); !errors.Is(err, ErrNotWasm) {
		t.Errorf("pull of a non-module: %v, want ErrNotWasm", err)
	}
	two, err := mutate.AppendLayers(imagetest.WasmArtifact(t, testModule("a"), ""), static.NewLayer(testModule("b"), imagetest.WasmLayerMediaType))
	if err != nil {
		t.Fatal(err)
	}
	twoRef := reg.Push(t, "two/mod:v1", two)
	if _, err := s.PullWasm(ctx, twoRef, PullOptions{}); !errors.Is(err, ErrNotWasm) {
		t.Errorf("pull of an artifact with two modules: %v, want ErrNotWasm", err)
	}

	// Missing tag or repository, unreachable registry.
	for _, ref := range []string{reg.Host + "/alt/mod:v2", reg.Host + "/nope/mod:v1"} {
		if _, err := s.PullWasm(ctx, ref, PullOptions{}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), ref) {
			t.Errorf("pull %s: %v, want ErrNotFound naming the ref", ref, err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String() + "/mod:v1"
	l.Close()
	if _, err := s.PullWasm(ctx, closed, PullOptions{}); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), closed) {
		t.Errorf("pull from a closed port: %v, want ErrUnreachable", err)
	}
	if _, err := s.PullWasm(ctx, ref, PullOptions{Policy: "Sometimes"}); err == nil {
		t.Error("unknown policy accepted")
	}
}

func TestPullWasmRetriesAndGC(t *testing.T) {
	ctx := context.Background()
	reg := imagetest.NewRegistry(t, imagetest.RegistryOptions{})
	s := openStore(t, t.TempDir())
	modA, modB := testModule("a"), testModule("b")
	refA := reg.Push(t, "gc/a:v1", imagetest.WasmArtifact(t, modA, ""))
	refB := reg.Push(t, "gc/b:v1", imagetest.WasmArtifact(t, modB, ""))
	img := reg.Push(t, "gc/img:v1", testImage(t))

	reg.FailNext(2, http.StatusServiceUnavailable)
	a, err := s.PullWasm(ctx, refA, PullOptions{})
	if err != nil {
		t.Fatalf("pull through transient errors: %v", err)
	}
	b, err := s.PullWasm(ctx, refB, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ci, err := s.Pull(ctx, img, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Keeping module A and the image: B goes, with its blobs.
	freed, err := s.GC(ctx, []string{a.Digest, ci.Digest})
	if err != nil || freed < int64(len(modB)) {
		t.Fatalf("gc: freed %d, %v", freed, err)
	}
	if _, err := os.Stat(b.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("module B survived gc: %v", err)
	}
	if _, err := s.PullWasm(ctx, refB, PullOptions{Policy: PullNever}); !errors.Is(err, ErrNotFound) {
		t.Errorf("pull Never of a collected module: %v", err)
	}
	n := reg.Requests()
	if got, err := s.PullWasm(ctx, refA, PullOptions{Policy: PullNever}); err != nil || got.Digest != a.Digest {
		t.Errorf("kept module: %+v, %v", got, err)
	}
	if _, err := s.Pull(ctx, img, PullOptions{Policy: PullNever}); err != nil {
		t.Errorf("kept image: %v", err)
	}
	if reg.Requests() != n {
		t.Errorf("pulls after gc made %d requests", reg.Requests()-n)
	}
	// Modules are not listed as container images.
	if l := s.List(); len(l) != 1 || l[0].Digest != ci.Digest {
		t.Errorf("list %+v", l)
	}

	// A store reopened keeps what it knows; GC with nothing kept empties it.
	s2 := openStore(t, s.dir)
	if _, err := s2.PullWasm(ctx, refA, PullOptions{Policy: PullNever}); err != nil {
		t.Errorf("reopened store: %v", err)
	}
	if _, err := s2.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, "blobs", "sha256"))
	if err != nil || len(entries) != 0 {
		t.Errorf("blobs left after gc: %v, %v", entries, err)
	}
}
