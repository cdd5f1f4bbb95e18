package images

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// GC removes the images whose manifest digests ("sha256:<hex>") are not in
// keep, the references to them, and every blob no remaining image uses. It
// returns the bytes freed on disk. Pulls wait while GC runs.
func (s *Store) GC(ctx context.Context, keep []string) (int64, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()

	kept := map[string]bool{}
	for _, d := range keep {
		kept[strings.TrimPrefix(d, "sha256:")] = true
	}
	used := map[string]bool{}
	changed := false // the index is rewritten only when GC changed it (SD-card wear)
	var freed int64
	var firstErr error
	note := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for hexd, m := range s.idx.Images {
		if kept[hexd] {
			for _, b := range m.Blobs {
				used[b] = true
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			note(err)
			break
		}
		n, err := removeAll(s.unpackedPath(hexd))
		freed += n
		if err != nil {
			note(fmt.Errorf("gc: remove image sha256:%s: %w", hexd, err))
			for _, b := range m.Blobs {
				used[b] = true
			}
			continue
		}
		delete(s.idx.Images, hexd)
		changed = true
		for ref, d := range s.idx.Refs {
			if d == "sha256:"+hexd {
				delete(s.idx.Refs, ref)
			}
		}
	}
	// Unpacked directories the index does not know (an interrupted pull).
	if entries, err := os.ReadDir(filepath.Join(s.dir, "unpacked")); err == nil {
		for _, e := range entries {
			if _, ok := s.idx.Images[e.Name()]; !ok {
				n, err := removeAll(filepath.Join(s.dir, "unpacked", e.Name()))
				freed += n
				note(err)
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, "blobs", "sha256"))
	if err != nil {
		note(fmt.Errorf("gc: %w", err))
	}
	for _, e := range entries {
		if used[e.Name()] {
			continue
		}
		p := s.blobPath(e.Name())
		if fi, err := os.Lstat(p); err == nil {
			if err := os.Remove(p); err != nil {
				note(fmt.Errorf("gc: remove blob sha256:%s: %w", e.Name(), err))
				continue
			}
			freed += fi.Size()
		}
	}
	// Partial downloads nobody resumed for a day (pulls wait while GC runs).
	n, err := s.partials().GC(PartialMaxAge)
	freed += n
	note(err)
	if changed {
		note(s.saveLocked())
	}
	return freed, firstErr
}

// removeAll removes dir and returns the bytes of the regular files it held.
func removeAll(dir string) (int64, error) {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	// Read-only directories inside a rootfs do not stop root, but they do
	// stop anyone else: make them writable first.
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return n, err
	}
	return n, nil
}
