package testio

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestSyncBufferAndLines(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { fmt.Fprintf(&b, "line %d\n\n  \n", i) })
	}
	wg.Wait()
	got := Lines(b.String())
	slices.Sort(got)
	want := []string{"line 0", "line 1", "line 2", "line 3", "line 4", "line 5", "line 6", "line 7"}
	if !slices.Equal(got, want) {
		t.Fatalf("Lines = %q, want %q", got, want)
	}
}
