package edgeagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgeorch/edgeorch/client"
)

// moduleAPI serves one module and counts fetches.
type moduleAPI struct {
	fakeAPI
	data    []byte
	fetches int
}

func (m *moduleAPI) FetchModule(_ context.Context, digest string, w io.Writer) error {
	m.fetches++
	sum := sha256.Sum256(m.data)
	if hex.EncodeToString(sum[:]) != digest {
		return client.Errorf(client.CodeNotFound, "module sha256:%s not found", digest)
	}
	_, err := w.Write(m.data)
	return err
}

func TestModuleCacheFetchesVerifiesAndRepairs(t *testing.T) {
	data := []byte("\x00asm\x01\x00\x00\x00 module")
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	api := &moduleAPI{data: data}
	dir := t.TempDir()
	m := newModuleCache(dir, api)
	ctx := context.Background()

	path, err := m.ensure(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(data) || path != filepath.Join(dir, digest+".wasm") {
		t.Fatalf("cached %s = %q", path, got)
	}
	if _, err := m.ensure(ctx, digest); err != nil || api.fetches != 1 {
		t.Fatalf("second ensure: err %v, %d fetches", err, api.fetches)
	}

	// A new cache over a corrupted file fetches it again.
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	m2 := newModuleCache(dir, api)
	if _, err := m2.ensure(ctx, digest); err != nil || api.fetches != 2 {
		t.Fatalf("repair: err %v, %d fetches", err, api.fetches)
	}
	if got, _ := os.ReadFile(path); string(got) != string(data) {
		t.Fatalf("repaired file %q", got)
	}

	// A digest the store lacks is an error and leaves no partial file.
	if _, err := m2.ensure(ctx, "00"+digest[2:]); !client.IsNotFound(err) {
		t.Fatalf("missing module: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("files left: %v", entries)
	}
}
