package controller

import (
	"errors"
	"testing"

	"github.com/edgeorch/edgeorch/client"
)

func TestStatusWriteError(t *testing.T) {
	if err := StatusWriteError("job web", client.Errorf(client.CodeNotFound, "gone")); err != nil {
		t.Errorf("not found: %v, want nil", err)
	}
	if err := StatusWriteError("job web", client.Errorf(client.CodeConflict, "stale")); !errors.Is(err, ErrRetry) {
		t.Errorf("conflict: %v, want ErrRetry", err)
	}
	boom := errors.New("boom")
	if err := StatusWriteError("job web", boom); !errors.Is(err, boom) || errors.Is(err, ErrRetry) || err.Error() != "update status of job web: boom" {
		t.Errorf("other: %v", err)
	}
	if err := StatusWriteError("job web", nil); err != nil {
		t.Errorf("nil: %v", err)
	}
}
