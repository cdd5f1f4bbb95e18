package wasm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// growMemory returns a mapping of capacity bytes holding old's contents:
// a new anonymous mapping, or old's moved or extended by mremap (no copy).
// Untouched pages are not resident.
func growMemory(old []byte, capacity uint64) ([]byte, error) {
	n := int(capacity)
	if uint64(n) != capacity || n <= 0 {
		return nil, fmt.Errorf("linear memory of %d bytes: out of range", capacity)
	}
	if cap(old) == 0 {
		b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return nil, fmt.Errorf("map linear memory: %w", err)
		}
		return b, nil
	}
	b, err := unix.Mremap(old[:cap(old)], n, unix.MREMAP_MAYMOVE)
	if err != nil {
		return nil, fmt.Errorf("grow linear memory: %w", err)
	}
	return b, nil
}

// freeMemory unmaps a mapping made by growMemory.
func freeMemory(b []byte) {
	if cap(b) > 0 {
		_ = unix.Munmap(b[:cap(b)])
	}
}
