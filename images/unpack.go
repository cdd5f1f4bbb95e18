package images

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// unpack makes sure image hex (whose blobs are all cached) is unpacked and
// returns its metadata. Concurrent calls for one image share one unpack; the
// result appears atomically (built in a temporary directory, then renamed).
func (s *Store) unpack(ctx context.Context, hexd string) (*imageMeta, error) {
	v, err, _ := s.unpacks.Do(hexd, func() (any, error) {
		img, meta, err := s.cachedImage(hexd)
		if err != nil {
			return nil, err
		}
		dir := s.unpackedPath(hexd)
		if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
			return meta, nil
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("unpack sha256:%s: image config: %w", hexd, err)
		}
		cfg, err := json.MarshalIndent(cf, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("unpack sha256:%s: encode image config: %w", hexd, err)
		}
		tmp, err := os.MkdirTemp(s.tmpDir(), "unpack-"+hexd[:12]+"-")
		if err != nil {
			return nil, fmt.Errorf("unpack sha256:%s: %w", hexd, err)
		}
		defer os.RemoveAll(tmp)
		rootfs := filepath.Join(tmp, "rootfs")
		if err := os.Mkdir(rootfs, 0o755); err != nil {
			return nil, fmt.Errorf("unpack sha256:%s: %w", hexd, err)
		}
		rc := mutate.Extract(img)
		err = extractTar(ctx, rc, rootfs)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("unpack sha256:%s: %w", hexd, err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "config.json"), cfg, 0o644); err != nil {
			return nil, fmt.Errorf("unpack sha256:%s: %w", hexd, err)
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			return nil, fmt.Errorf("unpack sha256:%s: %w", hexd, err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			if _, serr := os.Stat(filepath.Join(dir, "config.json")); serr == nil {
				return meta, nil // unpacked meanwhile by someone else
			}
			return nil, fmt.Errorf("unpack sha256:%s: %w", hexd, err)
		}
		return meta, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*imageMeta), nil
}

// extractTar writes the entries of a flattened image tar (as produced by
// mutate.Extract: upper layers first) below dir. Every file system operation
// goes through an os.Root, so neither ".." nor symbolic links can make it
// write outside dir; such an entry fails the extraction. Modes, symbolic
// links, hard links and (when running as root) ownership are kept; device
// nodes and FIFOs are skipped.
func extractTar(ctx context.Context, r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	chown := os.Geteuid() == 0
	type dirAttr struct {
		name  string
		mode  fs.FileMode
		mtime time.Time
	}
	var dirs []dirAttr
	var links []*tar.Header
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layers: %w", err)
		}
		name, err := cleanEntryName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			if hdr.Typeflag == tar.TypeDir {
				dirs = append(dirs, dirAttr{".", hdr.FileInfo().Mode(), hdr.ModTime})
			}
			continue
		}
		hdr.Name = name
		mode := hdr.FileInfo().Mode()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
			if chown {
				if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
					return fmt.Errorf("extract %s: %w", name, err)
				}
			}
			dirs = append(dirs, dirAttr{name, mode, hdr.ModTime})
			continue
		case tar.TypeReg, tar.TypeRegA, tar.TypeSymlink, tar.TypeLink:
		default:
			continue // devices, FIFOs, unknown types
		}
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
		}
		if fi, err := root.Lstat(name); err == nil {
			if fi.IsDir() {
				continue // an upper layer made it a directory
			}
			if err := root.Remove(name); err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeLink:
			links = append(links, hdr)
			continue
		case tar.TypeSymlink:
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
			if chown {
				if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
					return fmt.Errorf("extract %s: %w", name, err)
				}
			}
			continue
		}
		f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("extract %s: %w", name, err)
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("extract %s: %w", name, err)
		}
		if err := setAttrs(root, name, hdr, mode, chown); err != nil {
			return err
		}
	}
	// mutate.Extract ends the archive before it reports an error (a path
	// escaping the root, a layer not matching its digest): read it to the end.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("read layers: %w", err)
	}
	// Hard links last: with upper layers first, a target may come later.
	for _, hdr := range links {
		target, err := cleanEntryName(hdr.Linkname)
		if err != nil || target == "." {
			return fmt.Errorf("extract %s: hard link to %q: outside the image", hdr.Name, hdr.Linkname)
		}
		if _, err := root.Lstat(target); errors.Is(err, fs.ErrNotExist) {
			// The target was deleted by an upper layer (or skipped, as a
			// device): mutate.Extract no longer has its content.
			continue
		}
		if err := root.Link(target, hdr.Name); err != nil {
			return fmt.Errorf("extract %s: hard link to %s: %w", hdr.Name, target, err)
		}
	}
	// Directory modes last, so read-only directories can still be filled.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := root.Chmod(d.name, d.mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return fmt.Errorf("extract %s: %w", d.name, err)
		}
		if err := root.Chtimes(d.name, d.mtime, d.mtime); err != nil {
			return fmt.Errorf("extract %s: %w", d.name, err)
		}
	}
	return nil
}

// setAttrs sets ownership, mode (after chown, which clears set-id bits) and
// modification time of an extracted regular file.
func setAttrs(root *os.Root, name string, hdr *tar.Header, mode fs.FileMode, chown bool) error {
	if chown {
		if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("extract %s: %w", name, err)
		}
	}
	if err := root.Chmod(name, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return fmt.Errorf("extract %s: %w", name, err)
	}
	if err := root.Chtimes(name, hdr.ModTime, hdr.ModTime); err != nil {
		return fmt.Errorf("extract %s: %w", name, err)
	}
	return nil
}

// cleanEntryName turns a tar entry name into a clean relative path, refusing
// names that climb out of the archive root.
func cleanEntryName(n string) (string, error) {
	c := path.Clean("/" + strings.TrimPrefix(n, "./"))
	if strings.Contains(n, "\x00") {
		return "", fmt.Errorf("tar entry %q: invalid name", n)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("tar entry %q: path escapes the image root", n)
		}
	}
	if c == "/" {
		return ".", nil
	}
	return c[1:], nil
}
