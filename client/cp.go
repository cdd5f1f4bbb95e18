package client

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Copy directions.
const (
	// CopyToPod extracts the tar stream the client sends at Path.
	CopyToPod = "to"
	// CopyFromPod sends Path as a tar stream.
	CopyFromPod = "from"
)

// CopyRequest asks the agent of a pod's node to copy files into or out of
// a container (messaging.NodeSubject(node, NodeVerbCopy)). The agent checks
// the pod, container and path, replies with a Response holding
// TunnelStarted or an error, then the tar stream flows through a Tunnel:
// from the client for CopyToPod (the agent ends its side once everything
// is written, or closes with the error), from the agent for CopyFromPod.
type CopyRequest struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container,omitempty"`
	// Path is the absolute path in the container.
	Path      string `json:"path"`
	Direction string `json:"direction"`
	Inbox     string `json:"inbox"`
}

// MaxCopyBytes bounds the file contents of one copy, both ways.
const MaxCopyBytes int64 = 256 << 20

// CopyToPod sends the tar stream tarStream to the container (see
// CopyRequest) and returns once the agent has written all of it.
func (c *Client) CopyToPod(ctx context.Context, node string, req CopyRequest, tarStream io.Reader) error {
	req.Direction = CopyToPod
	t, err := c.startTunnel(ctx, node, NodeVerbCopy, func(inbox string) any {
		req.Inbox = inbox
		return req
	})
	if err != nil {
		return err
	}
	if err := t.Run(ctx, tarStream, io.Discard); err != nil {
		return fmt.Errorf("copy to %s/%s:%s: %w", req.Namespace, req.Pod, req.Path, err)
	}
	return nil
}

// CopyFromPod writes the tar stream of req.Path in the container to w.
func (c *Client) CopyFromPod(ctx context.Context, node string, req CopyRequest, w io.Writer) error {
	req.Direction = CopyFromPod
	t, err := c.startTunnel(ctx, node, NodeVerbCopy, func(inbox string) any {
		req.Inbox = inbox
		return req
	})
	if err != nil {
		return err
	}
	if err := t.Run(ctx, strings.NewReader(""), w); err != nil {
		return fmt.Errorf("copy from %s/%s:%s: %w", req.Namespace, req.Pod, req.Path, err)
	}
	return nil
}

// ErrTooLarge is the error of a copy beyond its size limit.
var ErrTooLarge = errors.New("copy too large")

// WriteTar writes the file or directory tree rel (a slash-separated path
// inside root, "." for root itself) to w as a tar stream whose entries are
// named top, top/child, ... Symbolic links are stored as links, not
// followed; other special files are left out. The file contents may total
// at most limit bytes.
func WriteTar(w io.Writer, root *os.Root, rel, top string, limit int64) error {
	tw := tar.NewWriter(w)
	fsys := root.FS()
	var total int64
	err := fs.WalkDir(fsys, rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := root.Lstat(p)
		if err != nil {
			return err
		}
		name := top
		if p != rel {
			name = path.Join(top, strings.TrimPrefix(p, strings.TrimSuffix(rel, "/")+"/"))
			if rel == "." {
				name = path.Join(top, p)
			}
		}
		link := ""
		switch mode := info.Mode(); {
		case mode&fs.ModeSymlink != 0:
			if link, err = root.Readlink(p); err != nil {
				return err
			}
		case mode.IsDir(), mode.IsRegular():
		default:
			return nil // devices, sockets, pipes
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		h.Name, h.Uname, h.Gname = name, "", ""
		if info.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if link != "" && d.IsDir() {
			return fs.SkipDir // a link to a directory: not followed
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		if total += info.Size(); total > limit {
			return fmt.Errorf("%w: more than %d bytes (the limit)", ErrTooLarge, limit)
		}
		f, err := root.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, info.Size()); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ExtractOptions tune ExtractTar.
type ExtractOptions struct {
	// Limit bounds the file contents written, in bytes.
	Limit int64
	// AnyLinks keeps symbolic links whatever their target (a container's
	// root filesystem, where they resolve inside the container). Without
	// it, links that are absolute or lead out of the tree are skipped.
	AnyLinks bool
}

// ExtractTar writes the tar stream r under dir (a slash-separated path
// inside root, "." for root itself). When top is not empty, the first
// element of every entry name is replaced by top (a copy under a new
// name). Every path is resolved inside root: an entry or an existing
// symbolic link that leads out of it is an error. It returns the links
// and special files it skipped.
func ExtractTar(r io.Reader, root *os.Root, dir, top string, opts ExtractOptions) (skipped []string, err error) {
	tr := tar.NewReader(r)
	var total int64
	// Directory modes are set last: a read-only directory must first be
	// filled.
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := root.Chmod(dirs[i].path, dirs[i].mode); err != nil {
					return skipped, err
				}
			}
			return skipped, nil
		}
		if err != nil {
			return skipped, fmt.Errorf("read tar stream: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") || name == "." {
			return skipped, fmt.Errorf("tar entry %q: not a relative path inside the copy", h.Name)
		}
		if top != "" {
			_, rest, _ := strings.Cut(name, "/")
			name = path.Join(top, rest)
		}
		target := path.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(target, 0o755); err != nil {
				return skipped, err
			}
			dirs = append(dirs, dirMode{target, fs.FileMode(h.Mode) & fs.ModePerm})
		case tar.TypeReg:
			if total += h.Size; total > opts.Limit {
				return skipped, fmt.Errorf("%w: more than %d bytes (the limit)", ErrTooLarge, opts.Limit)
			}
			if err := root.MkdirAll(path.Dir(target), 0o755); err != nil {
				return skipped, err
			}
			if err := writeEntry(root, target, fs.FileMode(h.Mode)&fs.ModePerm, tr, h.Size); err != nil {
				return skipped, err
			}
			root.Chtimes(target, h.ModTime, h.ModTime)
		case tar.TypeSymlink:
			if !opts.AnyLinks {
				dest := path.Join(path.Dir(name), h.Linkname)
				if path.IsAbs(h.Linkname) || dest == ".." || strings.HasPrefix(dest, "../") {
					skipped = append(skipped, fmt.Sprintf("%s -> %s (leads out of the copy)", name, h.Linkname))
					continue
				}
			}
			if err := root.MkdirAll(path.Dir(target), 0o755); err != nil {
				return skipped, err
			}
			if err := root.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return skipped, err
			}
			if err := root.Symlink(h.Linkname, target); err != nil {
				return skipped, err
			}
		default:
			skipped = append(skipped, fmt.Sprintf("%s (type %q not copied)", name, h.Typeflag))
		}
	}
}

func writeEntry(root *os.Root, target string, mode fs.FileMode, r io.Reader, size int64) error {
	f, err := root.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", target, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	return root.Chmod(target, mode)
}
