package edgeagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// moduleCache keeps verified wasm modules at <dir>/<sha256 hex>.wasm.
type moduleCache struct {
	dir string
	api API

	mu       sync.Mutex
	verified map[string]bool
	fetching map[string]*sync.Mutex
}

func newModuleCache(dir string, api API) *moduleCache {
	return &moduleCache{dir: dir, api: api, verified: map[string]bool{}, fetching: map[string]*sync.Mutex{}}
}

func (m *moduleCache) path(digest string) string { return filepath.Join(m.dir, digest+".wasm") }

// ensure returns the path of the module with digest, fetching it from the
// control plane when it is missing or corrupt.
func (m *moduleCache) ensure(ctx context.Context, digest string) (string, error) {
	m.mu.Lock()
	if m.verified[digest] {
		m.mu.Unlock()
		return m.path(digest), nil
	}
	lock := m.fetching[digest]
	if lock == nil {
		lock = &sync.Mutex{}
		m.fetching[digest] = lock
	}
	m.mu.Unlock()
	lock.Lock()
	defer lock.Unlock()

	path := m.path(digest)
	ok, err := fileHasDigest(path, digest)
	if err != nil {
		return "", err
	}
	if !ok {
		if err := m.fetch(ctx, digest, path); err != nil {
			return "", err
		}
	}
	m.mu.Lock()
	m.verified[digest] = true
	m.mu.Unlock()
	return path, nil
}

func (m *moduleCache) fetch(ctx context.Context, digest, path string) error {
	tmp, err := os.CreateTemp(m.dir, digest+".*.partial")
	if err != nil {
		return fmt.Errorf("fetch module sha256:%s: %w", digest, err)
	}
	defer os.Remove(tmp.Name())
	if err := m.api.FetchModule(ctx, digest, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("fetch module sha256:%s: sync: %w", digest, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fetch module sha256:%s: %w", digest, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("fetch module sha256:%s: %w", digest, err)
	}
	return nil
}

// fileHasDigest reports whether path exists with the given sha256; a file
// with other content is removed.
func fileHasDigest(path, digest string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("verify module %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("verify module %s: %w", path, err)
	}
	if hex.EncodeToString(h.Sum(nil)) == digest {
		return true, nil
	}
	os.Remove(path)
	return false, nil
}
