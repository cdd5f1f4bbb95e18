package state

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestContainerEqualByValue(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	term := func() *manifests.ContainerStateTerminated {
		return &manifests.ContainerStateTerminated{ExitCode: 1, Reason: "Error", FinishedAt: at}
	}
	a := Container{ID: "c1", RestartCount: 2, LastState: term()}
	b := Container{ID: "c1", RestartCount: 2, LastState: term()}
	if !a.Equal(b) {
		t.Fatal("equal values in distinct pointers compare unequal (a crash-looping pod would be rewritten every poll)")
	}
	b.LastState.ExitCode = 2
	if a.Equal(b) {
		t.Fatal("different exit codes compare equal")
	}
	if a.Equal(Container{ID: "c1", RestartCount: 2}) {
		t.Fatal("nil and set lastState compare equal")
	}
	if !(Container{}).Equal(Container{}) {
		t.Fatal("zero values differ")
	}
}
