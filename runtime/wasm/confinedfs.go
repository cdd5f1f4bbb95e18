package wasm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/tetratelabs/wazero"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"

	"github.com/edgeorch/edgeorch/runtime"
)

// confinedFS is a mounted directory that a module cannot leave. wazero's
// directory mount refuses ".." beyond its root but follows symbolic links
// on the host, wherever they point: a module with a writable volume could
// create "x -> ../../../etc/passwd" and read it, and a link planted on the
// host in a hostPath volume leads out as well. confinedFS resolves every
// path with an os.Root (which follows links only while they stay inside)
// before handing the operation to wazero's directory mount, and refuses
// to create symbolic links: modules cannot make new ones, so the links a
// check sees cannot be swapped by a module before the operation runs.
type confinedFS struct {
	experimentalsys.FS
	root *os.Root
}

// newConfinedFS mounts dir. Close releases it.
func newConfinedFS(dir string) (*confinedFS, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return &confinedFS{FS: sysfs.DirFS(dir), root: root}, nil
}

// Close releases the directory.
func (c *confinedFS) Close() error { return c.root.Close() }

// rel turns a path given by wazero (relative to the mount, "" or "/" for
// its root) into one for os.Root.
func rel(p string) string {
	p = strings.TrimLeft(p, "/")
	if p == "" {
		return "."
	}
	return p
}

// check refuses a path that leads out of the mount: through a symbolic
// link (the last element's only when follow is set) or "..". Paths that do
// not exist, or fail for another reason, are left to the operation, which
// reports that error itself.
func (c *confinedFS) check(p string, follow bool) experimentalsys.Errno {
	var err error
	if follow {
		_, err = c.root.Stat(rel(p))
	} else {
		_, err = c.root.Lstat(rel(p))
	}
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return 0
	}
	// The path escapes from the mount. A link whose target is outside is
	// refused even when the target does not exist: O_CREAT would follow it.
	return experimentalsys.EPERM
}

// OpenFile implements experimentalsys.FS.
func (c *confinedFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if errno := c.check(p, flag&experimentalsys.O_NOFOLLOW == 0); errno != 0 {
		return nil, errno
	}
	return c.FS.OpenFile(p, flag, perm)
}

// Lstat implements experimentalsys.FS.
func (c *confinedFS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) {
	if errno := c.check(p, false); errno != 0 {
		return sys.Stat_t{}, errno
	}
	return c.FS.Lstat(p)
}

// Stat implements experimentalsys.FS.
func (c *confinedFS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	if errno := c.check(p, true); errno != 0 {
		return sys.Stat_t{}, errno
	}
	return c.FS.Stat(p)
}

// Mkdir implements experimentalsys.FS.
func (c *confinedFS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	if errno := c.check(p, false); errno != 0 {
		return errno
	}
	return c.FS.Mkdir(p, perm)
}

// Chmod implements experimentalsys.FS.
func (c *confinedFS) Chmod(p string, perm fs.FileMode) experimentalsys.Errno {
	if errno := c.check(p, true); errno != 0 {
		return errno
	}
	return c.FS.Chmod(p, perm)
}

// Rename implements experimentalsys.FS.
func (c *confinedFS) Rename(from, to string) experimentalsys.Errno {
	if errno := c.check(from, false); errno != 0 {
		return errno
	}
	if errno := c.check(to, false); errno != 0 {
		return errno
	}
	return c.FS.Rename(from, to)
}

// Rmdir implements experimentalsys.FS.
func (c *confinedFS) Rmdir(p string) experimentalsys.Errno {
	if errno := c.check(p, false); errno != 0 {
		return errno
	}
	return c.FS.Rmdir(p)
}

// Unlink implements experimentalsys.FS.
func (c *confinedFS) Unlink(p string) experimentalsys.Errno {
	if errno := c.check(p, false); errno != 0 {
		return errno
	}
	return c.FS.Unlink(p)
}

// Link implements experimentalsys.FS: a hard link of a file reached
// through a link out of the mount would bring that file in.
func (c *confinedFS) Link(oldPath, newPath string) experimentalsys.Errno {
	if errno := c.check(oldPath, false); errno != 0 {
		return errno
	}
	if errno := c.check(newPath, false); errno != 0 {
		return errno
	}
	return c.FS.Link(oldPath, newPath)
}

// Symlink implements experimentalsys.FS: modules cannot create symbolic
// links (see confinedFS).
func (c *confinedFS) Symlink(oldPath, linkName string) experimentalsys.Errno {
	return experimentalsys.EPERM
}

// Readlink implements experimentalsys.FS.
func (c *confinedFS) Readlink(p string) (string, experimentalsys.Errno) {
	if errno := c.check(p, false); errno != 0 {
		return "", errno
	}
	return c.FS.Readlink(p)
}

// Utimens implements experimentalsys.FS.
func (c *confinedFS) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	if errno := c.check(p, true); errno != 0 {
		return errno
	}
	return c.FS.Utimens(p, atim, mtim)
}

// confinedMounts builds a module's file system: each mount a confinedFS,
// read-only ones wrapped by wazero's read-only layer. unmount releases
// the directories once the module has ended.
func confinedMounts(mounts []runtime.Mount) (cfg wazero.FSConfig, unmount func(), err error) {
	var opened []*confinedFS
	unmount = func() {
		for _, m := range opened {
			_ = m.Close()
		}
	}
	cfg = wazero.NewFSConfig()
	for _, m := range mounts {
		c, err := newConfinedFS(m.HostPath)
		if err != nil {
			unmount()
			return nil, nil, err
		}
		opened = append(opened, c)
		var fsys experimentalsys.FS = c
		if m.ReadOnly {
			fsys = &sysfs.ReadFS{FS: c}
		}
		cfg = cfg.(sysfs.FSConfig).WithSysFSMount(fsys, m.ContainerPath)
	}
	return cfg, unmount, nil
}
