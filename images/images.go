// Package images pulls OCI container images (from a registry or from the
// control plane's object store), keeps their blobs in a content-addressed
// cache on disk shared between images, and unpacks each image once per
// manifest digest into a directory holding rootfs/ and config.json.
//
// Layout of the store directory:
//
//	blobs/sha256/<hex>          manifests, configs and (compressed) layers
//	unpacked/<hex>/rootfs       the flattened file system of image <hex>
//	unpacked/<hex>/config.json  its OCI/Docker image config (v1.ConfigFile)
//	refs.json                   reference → manifest digest, image metadata
//	partial/<hex>, <hex>.json   interrupted downloads and their progress (see Partials)
package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Errors returned by Pull, wrapped with the reference and the cause.
var (
	// ErrNotFound: no such image or tag (or not present with policy Never).
	ErrNotFound = errors.New("image not found")
	// ErrUnreachable: the registry cannot be reached.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrUnauthorized: the registry refused the credentials (or their absence).
	ErrUnauthorized = errors.New("unauthorized")
)

// PullPolicy says when Pull contacts the registry.
type PullPolicy string

// Pull policies (as in a pod's imagePullPolicy).
const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// Source is another place images can come from, tried before the registry:
// the control plane's object store. Resolve returns the manifest digest
// ("sha256:<hex>") of ref, or an error matching ErrNotFound when the source
// does not hold ref. Fetch writes the blob with that digest to w.
type Source interface {
	Resolve(ctx context.Context, ref string) (digest string, err error)
	Fetch(ctx context.Context, digest string, w io.Writer) error
}

// PullOptions tune one Pull.
type PullOptions struct {
	// Policy: Always, IfNotPresent or Never. Empty means Always for the tag
	// "latest" (or no tag) and IfNotPresent otherwise.
	Policy PullPolicy
	// DockerConfigs are .dockerconfigjson documents (pull secrets).
	DockerConfigs [][]byte
	// Source, when set, is tried first for refs it knows.
	Source Source
	// Insecure allows plain HTTP (automatic for localhost/127.0.0.1).
	Insecure bool
	// OnResume, when set, is told of each blob whose download continued
	// a partial one (see Partials).
	OnResume ResumeFunc
}

// Image is an image present in the store.
type Image struct {
	Ref    string // the reference as pulled
	Digest string // manifest digest, "sha256:<hex>"
	Dir    string // Dir/rootfs and Dir/config.json; never modified
	Size   int64  // bytes of the image's blobs (manifest, config, compressed layers)
}

// imageMeta is what the index keeps per unpacked image.
type imageMeta struct {
	Size     int64     `json:"size"`
	Blobs    []string  `json:"blobs"` // hex digests: manifest, config, layers
	LastUsed time.Time `json:"lastUsed"`
}

type index struct {
	Refs   map[string]string     `json:"refs"`   // ref → "sha256:<hex>"
	Images map[string]*imageMeta `json:"images"` // hex → meta
}

// Store is an image store on disk. It is safe for concurrent use.
type Store struct {
	dir string

	// gcMu: pulls hold it shared while they add blobs and unpack; GC holds
	// it exclusively.
	gcMu sync.RWMutex

	mu  sync.Mutex // guards idx and refs.json
	idx index

	blobs   singleflight.Group // blob downloads by hex digest
	unpacks singleflight.Group // unpacks by manifest hex digest

	// retryDelay is the first backoff between tries of a pull.
	retryDelay time.Duration
}

// Open opens (creating it if needed) the image store in dir.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "blobs", "sha256"), filepath.Join(dir, "unpacked"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	s := &Store{dir: dir, retryDelay: 200 * time.Millisecond}
	s.idx = index{Refs: map[string]string{}, Images: map[string]*imageMeta{}}
	data, err := os.ReadFile(s.indexPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("open image store: %w", err)
	default:
		if err := json.Unmarshal(data, &s.idx); err != nil {
			return nil, fmt.Errorf("open image store: %s: %w", s.indexPath(), err)
		}
		if s.idx.Refs == nil {
			s.idx.Refs = map[string]string{}
		}
		if s.idx.Images == nil {
			s.idx.Images = map[string]*imageMeta{}
		}
	}
	// Leftovers of interrupted downloads and unpacks.
	if err := os.RemoveAll(filepath.Join(dir, "tmp")); err != nil {
		return nil, fmt.Errorf("open image store: clean temporary files: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	return s, nil
}

func (s *Store) indexPath() string              { return filepath.Join(s.dir, "refs.json") }
func (s *Store) blobPath(hex string) string     { return filepath.Join(s.dir, "blobs", "sha256", hex) }
func (s *Store) unpackedPath(hex string) string { return filepath.Join(s.dir, "unpacked", hex) }
func (s *Store) tmpDir() string                 { return filepath.Join(s.dir, "tmp") }

// saveLocked writes the index atomically. s.mu must be held.
func (s *Store) saveLocked() error {
	data, err := json.MarshalIndent(&s.idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image index: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, "refs-*.json")
	if err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write image index: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write image index: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.indexPath()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write image index: %w", err)
	}
	return nil
}

// lookup returns the image ref (canonical key) points at when it is unpacked.
func (s *Store) lookup(key, ref string) (Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.idx.Refs[key]
	if !ok {
		return Image{}, false
	}
	return s.imageLocked(ref, d)
}

// imageLocked returns the unpacked image with digest d. s.mu must be held.
func (s *Store) imageLocked(ref, d string) (Image, bool) {
	hex := strings.TrimPrefix(d, "sha256:")
	m, ok := s.idx.Images[hex]
	if !ok {
		return Image{}, false
	}
	dir := s.unpackedPath(hex)
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return Image{}, false
	}
	return Image{Ref: ref, Digest: "sha256:" + hex, Dir: dir, Size: m.Size}, true
}

// record stores ref → digest and the image's metadata.
func (s *Store) record(key, hex string, meta *imageMeta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := *meta // meta may be shared by concurrent pulls (singleflight)
	m.LastUsed = time.Now().UTC()
	s.idx.Images[hex] = &m
	if key != "" {
		s.idx.Refs[key] = "sha256:" + hex
	}
	return s.saveLocked()
}

// List returns the images in the store, one per reference (images that no
// reference points at any more are listed with an empty Ref), sorted.
func (s *Store) List() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Image
	seen := map[string]bool{}
	for ref, d := range s.idx.Refs {
		if img, ok := s.imageLocked(ref, d); ok {
			out = append(out, img)
			seen[strings.TrimPrefix(d, "sha256:")] = true
		}
	}
	for hex := range s.idx.Images {
		if !seen[hex] {
			if img, ok := s.imageLocked("", "sha256:"+hex); ok {
				out = append(out, img)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Ref != out[j].Ref {
			return out[i].Ref < out[j].Ref
		}
		return out[i].Digest < out[j].Digest
	})
	return out
}
