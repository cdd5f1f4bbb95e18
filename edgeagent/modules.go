package edgeagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/edgeorch/edgeorch/images"
	"github.com/edgeorch/edgeorch/manifests"
)

// moduleCache keeps verified wasm modules at <dir>/<sha256 hex>.wasm. A
// module being fetched from the control plane is kept in ../partial (see
// images.Partials) until it is whole, so that a fetch cut by a bad link,
// or by a restart, continues where it stopped.
type moduleCache struct {
	dir string
	api API
	log atomic.Pointer[slog.Logger]

	gcOnce   sync.Once
	mu       sync.Mutex
	verified map[string]bool
	fetching map[string]*sync.Mutex
	// tags are the digests module references (name:tag) resolved to on
	// this node, for IfNotPresent: like the kubelet with an image whose
	// tag it has, the agent does not ask again for a tag it resolved
	// and whose module it holds.
	tags map[string]string
}

// moduleOpener is the resumable part of the control plane API
// (client.Client.OpenModuleAt).
type moduleOpener interface {
	OpenModuleAt(ctx context.Context, digest string, offset int64, token string) (io.ReadCloser, int64, error)
}

// OpenModuleAt opens a module of the control plane's store at an offset.
func (a *connAPI) OpenModuleAt(ctx context.Context, digest string, offset int64, token string) (io.ReadCloser, int64, error) {
	if err := a.offline(); err != nil {
		return nil, 0, err
	}
	return a.c.OpenModuleAt(ctx, digest, offset, token)
}

// partialDir holds the partial module downloads.
func (m *moduleCache) partialDir() string { return filepath.Join(filepath.Dir(m.dir), "partial") }

func (m *moduleCache) setLogger(l *slog.Logger) { m.log.Store(l) }

func (m *moduleCache) logger() *slog.Logger {
	if l := m.log.Load(); l != nil {
		return l
	}
	return slog.Default()
}

func newModuleCache(dir string, api API) *moduleCache {
	return &moduleCache{dir: dir, api: api, verified: map[string]bool{}, fetching: map[string]*sync.Mutex{}, tags: map[string]string{}}
}

func (m *moduleCache) path(digest string) string { return filepath.Join(m.dir, digest+".wasm") }

// present returns the digest ref resolved to on this node before, if its
// module is here and verified.
func (m *moduleCache) present(ref string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.tags[ref]
	return d, ok && m.verified[d]
}

// resolved records that ref resolved to digest.
func (m *moduleCache) resolved(ref, digest string) {
	m.mu.Lock()
	m.tags[ref] = digest
	m.mu.Unlock()
}

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

// fetch fetches the module into path, resumably when the API can.
func (m *moduleCache) fetch(ctx context.Context, digest, path string) error {
	op, ok := m.api.(moduleOpener)
	if !ok {
		return m.fetchWhole(ctx, digest, path)
	}
	parts, err := images.OpenPartials(m.partialDir())
	if err != nil {
		return fmt.Errorf("fetch module sha256:%s: %w", digest, err)
	}
	m.gcOnce.Do(func() {
		// Partial downloads nobody resumed for a day (no fetch runs yet).
		if _, err := parts.GC(images.PartialMaxAge); err != nil {
			m.logger().Warn("module cache: remove old partial downloads", "err", err)
		}
	})
	stats, err := parts.Fetch(ctx, digest, -1, func(ctx context.Context, offset int64, token string) (io.ReadCloser, int64, error) {
		return op.OpenModuleAt(ctx, digest, offset, token)
	}, path)
	if stats.Resumed {
		m.logger().Info(fmt.Sprintf("resumed sha256:%s at %d of %d", digest, stats.Offset, stats.Size),
			"module", "sha256:"+digest, "offset", stats.Offset, "size", stats.Size, "transferred", stats.Transferred, "err", err)
	}
	return err
}

// fetchWhole fetches the module in one go into a temporary file.
func (m *moduleCache) fetchWhole(ctx context.Context, digest, path string) error {
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

// registryModule pulls a wasm module published as an OCI artifact in the
// registry spec.Image names (images.IsRegistryRef), with the pod's pull
// secrets and pull policy, and returns the path of the verified module. The
// module digest is remembered, as for modules of the control plane.
func (w *podWorker) registryModule(ctx context.Context, pod *manifests.Pod, spec *manifests.Container, c *ctr) (string, error) {
	if w.a.imgs == nil {
		return "", errors.New("no image store on this node")
	}
	opts := images.PullOptions{Policy: images.PullPolicy(spec.ImagePullPolicy), DockerConfigs: w.pullSecrets(ctx, pod), OnResume: w.a.logResume}
	mod, err := w.a.imgs.PullWasm(ctx, spec.Image, opts)
	if errors.Is(err, images.ErrUnreachable) && c.digest != "" && c.image == spec.Image && opts.Policy != images.PullNever {
		// Edge autonomy: the module the container last ran, when the node
		// still has it.
		local, lerr := w.a.imgs.PullWasm(ctx, spec.Image, images.PullOptions{Policy: images.PullIfNotPresent})
		if lerr == nil && strings.TrimPrefix(local.Digest, "sha256:") == c.digest {
			w.a.log.Info("registry unreachable, using the local module", "pod", pod.Namespace+"/"+pod.Name, "image", spec.Image, "digest", local.Digest)
			mod, err = local, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("failed to pull wasm module %q: %w", spec.Image, err)
	}
	w.a.pulled.add(mod.Digest)
	if hex := strings.TrimPrefix(mod.Digest, "sha256:"); c.digest != hex {
		c.digest = hex
		w.dirty = true
	}
	return mod.Path, nil
}
