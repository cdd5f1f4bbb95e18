package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of the layer holding a WebAssembly module in an OCI artifact
// (wasm-to-oci, the CNCF TAG Runtime "wasm OCI artifact" layout), and of its
// config (any config media type is accepted).
const (
	WasmLayerMediaType  types.MediaType = "application/vnd.wasm.content.layer.v1+wasm"
	WasmConfigMediaType types.MediaType = "application/vnd.wasm.config.v0+json"
	// wasmLayerMediaTypeAlt is also used by some tools for the module layer.
	wasmLayerMediaTypeAlt types.MediaType = "application/wasm"
)

// ErrNotWasm: the reference names something other than a wasm module artifact.
var ErrNotWasm = errors.New("not a wasm module artifact")

// maxWasmModule bounds the size of a module pulled from a registry.
const maxWasmModule = 512 << 20

// wasmMagic starts every WebAssembly binary module.
var wasmMagic = []byte("\x00asm")

// WasmModule is a WebAssembly module present in the store.
type WasmModule struct {
	Ref    string // the reference as pulled
	Digest string // digest of the module bytes, "sha256:<hex>"
	Path   string // the module file (in the blob cache); never modified
	Size   int64  // bytes of the module
}

// IsRegistryRef reports whether an image reference names a registry host:
// its first path component contains "." or ":" or is "localhost"
// ("127.0.0.1:5000/acme/hello:v1", "ghcr.io/x/y@sha256:..."), as opposed to
// a bare name ("hello:v1") resolved elsewhere (the control plane's store).
func IsRegistryRef(ref string) bool {
	first, _, ok := strings.Cut(ref, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// wasmKey is the index key of a wasm reference: kept apart from container
// image references, which point at manifests rather than modules.
func wasmKey(r name.Reference) string { return "wasm:" + r.Name() }

// PullWasm makes the wasm module artifact ref present (per opts.Policy) and
// returns it. The manifest and the module are kept in the blob cache; the
// index records the module under its own digest, so GC keeps it while that
// digest is in keep. opts.Source is not used: modules in the control plane
// are resolved by the agent through its module store.
func (s *Store) PullWasm(ctx context.Context, ref string, opts PullOptions) (WasmModule, error) {
	r, err := parseRef(ref, opts.Insecure)
	if err != nil {
		return WasmModule{}, fmt.Errorf("pull wasm module %s: invalid reference: %w", ref, err)
	}
	key := wasmKey(r)
	policy, err := effectivePolicy(opts.Policy, r)
	if err != nil {
		return WasmModule{}, fmt.Errorf("pull wasm module %s: %w", ref, err)
	}
	if policy != PullAlways {
		if m, ok := s.wasmPresent(ref, key); ok {
			return m, nil
		}
		if policy == PullNever {
			return WasmModule{}, fmt.Errorf("wasm module %s not present with pull policy Never: %w", ref, ErrNotFound)
		}
	}

	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	auth, err := authFor(r.Context().RegistryStr(), opts.DockerConfigs)
	if err != nil {
		return WasmModule{}, fmt.Errorf("pull wasm module %s: %w", ref, err)
	}
	delay := s.retryDelay
	for try := 1; ; try++ {
		m, err := s.pullWasmOnce(ctx, r, ref, key, auth, opts.OnResume)
		if err == nil {
			return m, nil
		}
		kind := classify(err)
		if kind != ErrUnreachable || try == pullTries || ctx.Err() != nil {
			if kind != nil && ctx.Err() == nil && !errors.Is(err, kind) {
				return WasmModule{}, fmt.Errorf("pull wasm module %s: %w: %v", ref, kind, err)
			}
			return WasmModule{}, fmt.Errorf("pull wasm module %s: %w", ref, err)
		}
		select {
		case <-ctx.Done():
			return WasmModule{}, fmt.Errorf("pull wasm module %s: %w: %v", ref, kind, err)
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// wasmPresent returns the module key points at when its file is intact.
func (s *Store) wasmPresent(ref, key string) (WasmModule, bool) {
	s.mu.Lock()
	d, ok := s.idx.Refs[key]
	var m *imageMeta
	if ok {
		m, ok = s.idx.Images[strings.TrimPrefix(d, "sha256:")]
	}
	s.mu.Unlock()
	if !ok {
		return WasmModule{}, false
	}
	hexd := strings.TrimPrefix(d, "sha256:")
	if err := s.verifyModule(hexd); err != nil {
		return WasmModule{}, false
	}
	s.touch(key, Image{Digest: d})
	return WasmModule{Ref: ref, Digest: d, Path: s.blobPath(hexd), Size: m.Size}, true
}

func (s *Store) pullWasmOnce(ctx context.Context, r name.Reference, ref, key string, auth authn.Authenticator, onResume ResumeFunc) (WasmModule, error) {
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithRetryBackoff(remote.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Steps: 1}),
		remote.WithUserAgent("edgeorch-agent"),
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return WasmModule{}, err
	}
	raw, mdigest := desc.Manifest, desc.Digest
	if desc.MediaType.IsIndex() {
		d, err := pickWasmManifest(raw)
		if err != nil {
			return WasmModule{}, err
		}
		md, err := remote.Get(r.Context().Digest(d.String()), ropts...)
		if err != nil {
			return WasmModule{}, err
		}
		raw, mdigest = md.Manifest, md.Digest
	}
	layer, err := wasmLayer(raw)
	if err != nil {
		return WasmModule{}, err
	}
	if mdigest.Algorithm != "sha256" {
		return WasmModule{}, fmt.Errorf("%w: manifest digest %s is not sha256", ErrNotWasm, mdigest)
	}
	if got, err := s.putBlobBytes(raw); err != nil {
		return WasmModule{}, err
	} else if got != mdigest.Hex {
		return WasmModule{}, fmt.Errorf("manifest digest mismatch: want %s, got sha256:%s", mdigest, got)
	}
	hexd := layer.Digest.Hex
	if err := s.verifyModule(hexd); err != nil {
		if errors.Is(err, ErrNotWasm) {
			return WasmModule{}, err
		}
		if errors.Is(err, errCorrupt) {
			os.Remove(s.blobPath(hexd)) // fetched again below
		}
		// The blob as stored (modules are not compressed), resumable; its
		// size is the manifest's (wasmLayer bounds it by maxWasmModule).
		size := layer.Size
		if size <= 0 {
			size = -1
		}
		open := registryOpenAt(r.Context(), auth, layer.Digest, size)
		err = s.ensureBlobAt(ctx, hexd, size, func(ctx context.Context, offset int64, token string) (io.ReadCloser, int64, error) {
			rc, start, err := open(ctx, offset, token)
			if err != nil {
				return nil, 0, err
			}
			return limitedReadCloser{io.LimitReader(rc, maxWasmModule+1-start), rc}, start, nil
		}, onResume)
		if err != nil {
			return WasmModule{}, fmt.Errorf("fetch module %s: %w", layer.Digest, err)
		}
		if err := s.verifyModule(hexd); err != nil {
			return WasmModule{}, err
		}
	}
	size, err := s.blobSize(hexd)
	if err != nil {
		return WasmModule{}, err
	}
	if err := s.recordWasm(key, hexd, mdigest.Hex, size); err != nil {
		return WasmModule{}, err
	}
	return WasmModule{Ref: ref, Digest: "sha256:" + hexd, Path: s.blobPath(hexd), Size: size}, nil
}

// recordWasm stores key → module digest; the module's entry holds its
// blobs (every manifest seen for it, and the module), so GC keeps them
// while the module digest is kept.
func (s *Store) recordWasm(key, hexd, manifestHex string, size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &imageMeta{Blobs: []string{hexd}}
	if old, ok := s.idx.Images[hexd]; ok {
		m.Blobs = slices.Clone(old.Blobs)
	}
	if !slices.Contains(m.Blobs, manifestHex) {
		m.Blobs = append(m.Blobs, manifestHex)
	}
	m.Size, m.LastUsed = size, time.Now().UTC()
	s.idx.Images[hexd] = m
	s.idx.Refs[key] = "sha256:" + hexd
	return s.saveLocked()
}

// wasmLayer returns the module layer of a wasm artifact manifest.
func wasmLayer(raw []byte) (v1.Descriptor, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("%w: parse manifest: %v", ErrNotWasm, err)
	}
	var found []v1.Descriptor
	var kinds []string
	for _, l := range m.Layers {
		if l.MediaType == WasmLayerMediaType || l.MediaType == wasmLayerMediaTypeAlt {
			found = append(found, l)
		}
		kinds = append(kinds, string(l.MediaType))
	}
	if len(found) != 1 {
		return v1.Descriptor{}, fmt.Errorf("%w: want one layer of media type %s, the manifest has layers %v (a container image?)", ErrNotWasm, WasmLayerMediaType, kinds)
	}
	l := found[0]
	if l.Digest.Algorithm != "sha256" || !hexDigest.MatchString(l.Digest.Hex) {
		return v1.Descriptor{}, fmt.Errorf("%w: module layer %q is not a sha256 digest", ErrNotWasm, l.Digest)
	}
	if l.Size > maxWasmModule {
		return v1.Descriptor{}, fmt.Errorf("%w: module of %d bytes is larger than %d", ErrNotWasm, l.Size, maxWasmModule)
	}
	return l, nil
}

// pickWasmManifest returns the manifest of an index to pull a module from:
// the one for architecture "wasm" (platform wasi/wasm or wasip1/wasm), or
// the only one.
func pickWasmManifest(raw []byte) (v1.Hash, error) {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("parse image index: %w", err)
	}
	for _, d := range idx.Manifests {
		if d.Platform != nil && d.Platform.Architecture == "wasm" {
			return d.Digest, nil
		}
	}
	if len(idx.Manifests) == 1 {
		return idx.Manifests[0].Digest, nil
	}
	return v1.Hash{}, fmt.Errorf("%w: the index has no wasm manifest", ErrNotWasm)
}

// errCorrupt: a cached blob does not have its digest.
var errCorrupt = errors.New("digest mismatch")

// verifyModule checks that blob hex is present, has that digest and starts
// with the WebAssembly magic.
func (s *Store) verifyModule(hexd string) error {
	f, err := os.Open(s.blobPath(hexd))
	if err != nil {
		return fmt.Errorf("module sha256:%s: %w", hexd, err)
	}
	defer f.Close()
	h := sha256.New()
	var head bytes.Buffer
	if _, err := io.Copy(io.MultiWriter(h, &limitedBuffer{b: &head, n: len(wasmMagic)}), f); err != nil {
		return fmt.Errorf("verify module sha256:%s: %w", hexd, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexd {
		return fmt.Errorf("module sha256:%s: %w (got sha256:%s)", hexd, errCorrupt, got)
	}
	if !bytes.Equal(head.Bytes(), wasmMagic) {
		return fmt.Errorf("%w: sha256:%s does not start with the WebAssembly magic \\0asm", ErrNotWasm, hexd)
	}
	return nil
}

// limitedBuffer keeps the first n bytes written to it.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if rest := l.n - l.b.Len(); rest > 0 {
		l.b.Write(p[:min(rest, len(p))])
	}
	return len(p), nil
}

// limitedReadCloser reads at most a bound of bytes of a blob (beyond it the
// digest cannot match).
type limitedReadCloser struct {
	io.Reader
	io.Closer
}
