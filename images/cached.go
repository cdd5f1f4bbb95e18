package images

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// cachedImage is an image whose manifest, config and layers are all in the
// blob cache.
type cachedImage struct {
	s        *Store
	manifest *v1.Manifest
	raw      []byte
	config   []byte
}

func (c *cachedImage) MediaType() (types.MediaType, error) {
	if c.manifest.MediaType != "" {
		return c.manifest.MediaType, nil
	}
	return types.OCIManifestSchema1, nil
}

func (c *cachedImage) RawManifest() ([]byte, error)   { return c.raw, nil }
func (c *cachedImage) RawConfigFile() ([]byte, error) { return c.config, nil }

func (c *cachedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range c.manifest.Layers {
		if d.Digest == h {
			return &cachedLayer{path: c.s.blobPath(h.Hex), desc: d}, nil
		}
	}
	if c.manifest.Config.Digest == h {
		return &cachedLayer{path: c.s.blobPath(h.Hex), desc: c.manifest.Config}, nil
	}
	return nil, fmt.Errorf("layer %s is not in the manifest", h)
}

type cachedLayer struct {
	path string
	desc v1.Descriptor
}

func (l *cachedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *cachedLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *cachedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *cachedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// cachedImage builds the image with manifest digest hex from the cache and
// its metadata (blobs and their total size).
func (s *Store) cachedImage(hexd string) (v1.Image, *imageMeta, error) {
	raw, err := s.readBlob(hexd)
	if err != nil {
		return nil, nil, fmt.Errorf("image sha256:%s: %w", hexd, err)
	}
	m, err := parseManifest(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("image sha256:%s: %w", hexd, err)
	}
	config, err := s.readBlob(m.Config.Digest.Hex)
	if err != nil {
		return nil, nil, fmt.Errorf("image sha256:%s: config: %w", hexd, err)
	}
	meta := &imageMeta{Size: int64(len(raw)) + int64(len(config)), Blobs: []string{hexd, m.Config.Digest.Hex}}
	for _, l := range m.Layers {
		n, err := s.blobSize(l.Digest.Hex)
		if err != nil {
			return nil, nil, fmt.Errorf("image sha256:%s: layer %s: %w", hexd, l.Digest, err)
		}
		meta.Size += n
		meta.Blobs = append(meta.Blobs, l.Digest.Hex)
	}
	img, err := partial.CompressedToImage(&cachedImage{s: s, manifest: m, raw: raw, config: config})
	if err != nil {
		return nil, nil, fmt.Errorf("image sha256:%s: %w", hexd, err)
	}
	return img, meta, nil
}

// manifestKind is the part of a manifest or index that tells them apart.
type manifestKind struct {
	MediaType types.MediaType `json:"mediaType"`
	Manifests json.RawMessage `json:"manifests"`
	Layers    json.RawMessage `json:"layers"`
}

// isIndex reports whether raw is an image index (manifest list).
func isIndex(raw []byte) (bool, error) {
	var k manifestKind
	if err := json.Unmarshal(raw, &k); err != nil {
		return false, fmt.Errorf("not an image manifest (a wasm module?): %w", err)
	}
	if k.MediaType.IsIndex() {
		return true, nil
	}
	return k.MediaType == "" && k.Manifests != nil && k.Layers == nil, nil
}

// parseManifest parses an OCI or Docker schema 2 image manifest.
func parseManifest(raw []byte) (*v1.Manifest, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("not an image manifest (a wasm module?): %w", err)
	}
	if m.MediaType != "" && !m.MediaType.IsImage() {
		return nil, fmt.Errorf("unsupported manifest media type %s", m.MediaType)
	}
	if m.Config.Digest.Algorithm != "sha256" || !hexDigest.MatchString(m.Config.Digest.Hex) {
		return nil, fmt.Errorf("manifest has no sha256 config digest")
	}
	for _, l := range m.Layers {
		if l.Digest.Algorithm != "sha256" || !hexDigest.MatchString(l.Digest.Hex) {
			return nil, fmt.Errorf("layer %q is not a sha256 digest", l.Digest)
		}
	}
	return m, nil
}

// pickPlatform returns the digest (hex) of the linux/GOARCH image of an index.
func pickPlatform(raw []byte) (string, error) {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("parse image index: %w", err)
	}
	var candidates []v1.Descriptor
	for _, d := range idx.Manifests {
		if d.MediaType != "" && !d.MediaType.IsImage() {
			continue
		}
		if d.Platform == nil {
			if len(idx.Manifests) == 1 {
				candidates = append(candidates, d)
			}
			continue
		}
		if d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			candidates = append(candidates, d)
		}
	}
	if len(candidates) == 0 {
		return "", fmt.Errorf("%w: the image index has no linux/%s image", ErrNotFound, runtime.GOARCH)
	}
	d := candidates[0].Digest
	if d.Algorithm != "sha256" || !hexDigest.MatchString(d.Hex) {
		return "", fmt.Errorf("image index entry %q is not a sha256 digest", d)
	}
	return d.Hex, nil
}
