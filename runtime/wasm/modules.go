package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sync"

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
}

type compiled struct {
	digest   string
	mod      wazero.CompiledModule
	refs     int
	lastUsed uint64
}

func newModuleCache(rt wazero.Runtime) *moduleCache {
	return &moduleCache{rt: rt, modules: map[string]*compiled{}}
}

// acquire reads and compiles the module at path (or reuses the compiled
// module of the same content) and takes a reference to it.
func (c *moduleCache) acquire(ctx context.Context, path string) (*compiled, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read module: %w", runtime.ErrImage, err)
	}
	if !bytes.HasPrefix(data, wasmMagic) {
		return nil, fmt.Errorf("%w: %s is not a WebAssembly module", runtime.ErrImage, path)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])

	c.mu.Lock()
	defer c.mu.Unlock()
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
		_ = oldest.mod.Close(ctx)
	}
}
