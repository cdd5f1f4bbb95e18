package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/tetratelabs/wazero"

	"github.com/edgeorch/edgeorch/runtime"
)

// keepUnused is how many compiled modules no container uses are kept for
// quick reuse.
const keepUnused = 8

var wasmMagic = []byte("\x00asm")

// moduleCache shares compiled modules among containers, keyed by the digest
// of the module file.
type moduleCache struct {
	rt wazero.Runtime

	mu      sync.Mutex
	modules map[string]*compiled
	tick    uint64
	// digests remembers the digest of each module file read, with the
	// file's identity then: a file not changed since is not read and
	// hashed again.
	digests map[string]fileDigest
}

// fileDigest is the digest of a file's content and what identified the
// file when it was read (a rewrite or a rename over it changes them).
type fileDigest struct {
	digest string
	id     fileID
}

type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns
}

func identify(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, true
}

type compiled struct {
	digest   string
	mod      wazero.CompiledModule
	refs     int
	lastUsed uint64
}

func newModuleCache(rt wazero.Runtime) *moduleCache {
	return &moduleCache{rt: rt, modules: map[string]*compiled{}, digests: map[string]fileDigest{}}
}

// acquire reads and compiles the module at path (or reuses the compiled
// module of the same content) and takes a reference to it.
func (c *moduleCache) acquire(ctx context.Context, path string) (*compiled, error) {
	if m := c.acquireUnchanged(path); m != nil {
		return m, nil
	}
	before, beforeErr := os.Stat(path)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read module: %w", runtime.ErrImage, err)
	}
	if !bytes.HasPrefix(data, wasmMagic) {
		return nil, fmt.Errorf("%w: %s is not a WebAssembly module", runtime.ErrImage, path)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	// Remembered only if the file did not change during the read.
	after, afterErr := os.Stat(path)

	c.mu.Lock()
	defer c.mu.Unlock()
	if beforeErr == nil && afterErr == nil {
		id, ok1 := identify(before)
		id2, ok2 := identify(after)
		if ok1 && ok2 && id == id2 && id.size == int64(len(data)) {
			c.digests[path] = fileDigest{digest: digest, id: id}
		}
	}
	c.tick++
	if m, ok := c.modules[digest]; ok {
		m.refs++
		m.lastUsed = c.tick
		return m, nil
	}
	// Compiling under the lock keeps one compilation per digest; the disk
	// compilation cache makes repeats cheap.
	mod, err := c.rt.CompileModule(ctx, data)
	if err != nil {
		return nil, fmt.Errorf("%w: compile module %s: %w", runtime.ErrInvalid, path, err)
	}
	m := &compiled{digest: digest, mod: mod, refs: 1, lastUsed: c.tick}
	c.modules[digest] = m
	return m, nil
}

// acquireUnchanged takes a reference to the compiled module of path when
// the file is the one read before (same device, inode, size, modification
// and change times) and its compiled module is still held; else nil.
func (c *moduleCache) acquireUnchanged(path string) *compiled {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	id, ok := identify(fi)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fd, ok := c.digests[path]
	if !ok || fd.id != id {
		return nil
	}
	m, ok := c.modules[fd.digest]
	if !ok {
		return nil
	}
	c.tick++
	m.refs++
	m.lastUsed = c.tick
	return m
}

// release drops a reference; unused modules beyond keepUnused are closed,
// least recently used first.
func (c *moduleCache) release(ctx context.Context, m *compiled) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m.refs--
	for {
		var oldest *compiled
		unused := 0
		for _, x := range c.modules {
			if x.refs > 0 {
				continue
			}
			unused++
			if oldest == nil || x.lastUsed < oldest.lastUsed {
				oldest = x
			}
		}
		if unused <= keepUnused {
			return
		}
		delete(c.modules, oldest.digest)
		for p, fd := range c.digests {
			if fd.digest == oldest.digest {
				delete(c.digests, p)
			}
		}
		_ = oldest.mod.Close(ctx)
	}
}
