//go:build !linux

package wasm

// growMemory returns a Go-heap buffer of capacity bytes holding old's
// contents.
func growMemory(old []byte, capacity uint64) ([]byte, error) {
	buf := make([]byte, len(old), capacity)
	copy(buf, old)
	return buf[:cap(buf)], nil
}

// freeMemory leaves the buffer to the garbage collector.
func freeMemory([]byte) {}
