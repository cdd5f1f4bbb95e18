package wasm

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// pageSize is the size of one WebAssembly memory page.
const pageSize = 65536

// memoryLimiter allocates a container's linear memory and refuses to grow it
// past a limit, remembering that it did so (to report OOMKilled). One
// limiter serves one module instance.
type memoryLimiter struct {
	limit   uint64 // bytes; 0 = only the module's own maximum
	size    atomic.Uint64
	refused atomic.Bool
}

// limitBytes turns a container memory limit into whole pages (rounded down,
// at least one page).
func limitBytes(memoryLimitBytes int64) uint64 {
	if memoryLimitBytes <= 0 {
		return 0
	}
	pages := uint64(memoryLimitBytes) / pageSize
	if pages == 0 {
		pages = 1
	}
	return pages * pageSize
}

// Allocate implements experimental.MemoryAllocator.
func (l *memoryLimiter) Allocate(capacity, max uint64) experimental.LinearMemory {
	limit := max
	if l.limit > 0 && l.limit < limit {
		limit = l.limit
	}
	if capacity > limit {
		capacity = limit
	}
	return &linearMemory{l: l, limit: limit, initialCap: capacity}
}

// linearMemory is one module's linear memory. It lives outside the Go heap
// where the platform allows (memory_linux.go: an anonymous mapping grown
// with mremap): pages the module never touches cost nothing, freed memory
// goes back to the system at once, and the modules' memory does not raise
// the agent's garbage-collection goal (with GOGC=100 a heap holding 50
// modules' memories would let as much garbage pile up again).
type linearMemory struct {
	l          *memoryLimiter
	limit      uint64
	initialCap uint64
	buf        []byte // len: the module's memory size; cap: what is mapped
}

// Reallocate implements experimental.LinearMemory. Growth beyond the limit
// returns nil, which the module sees as a failed memory.grow.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.l.refused.Store(true)
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		// Bytes between len and cap are zero and were never exposed.
		m.buf = m.buf[:size]
	} else {
		newCap := max(size, 2*uint64(cap(m.buf)), m.initialCap)
		newCap = min(newCap, m.limit)
		buf, err := growMemory(m.buf, newCap)
		if err != nil {
			// Out of address space or memory: a failed memory.grow.
			return nil
		}
		m.buf = buf[:size]
	}
	m.l.size.Store(size)
	return m.buf
}

// Free implements experimental.LinearMemory. wazero calls it from the
// goroutine that runs the module, once the module no longer runs.
func (m *linearMemory) Free() {
	freeMemory(m.buf)
	m.buf = nil
}
