package controller

import (
	"fmt"

	"github.com/edgeorch/edgeorch/client"
)

// StatusWriteError maps the error of a controller's write of an object's
// status (what, e.g. `job "web"`): the object being gone is not an error,
// and a conflict means the cache is behind the controller's own last write,
// so the key is synced again (ErrRetry) rather than reported as a failure.
func StatusWriteError(what string, err error) error {
	switch {
	case err == nil, client.IsNotFound(err):
		return nil
	case client.IsConflict(err):
		return fmt.Errorf("update status of %s: %w", what, ErrRetry)
	}
	return fmt.Errorf("update status of %s: %w", what, err)
}
