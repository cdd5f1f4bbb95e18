package store

import (
	"context"

	"github.com/edgeorch/edgeorch/manifests"
)

// Admitter checks and completes objects on their way into the store
// (LimitRange defaults and bounds, ResourceQuota charges; package
// controlplane/admission). It sits in the store, not in the API, because
// controllers create pods through the store directly: both paths pass here.
type Admitter interface {
	// AdmitCreate may change obj (defaults) and refuses it with an error.
	// undo, when not nil, is called if the object is then not stored.
	AdmitCreate(ctx context.Context, obj manifests.Object) (undo func(context.Context), err error)
	// Updated is told of a stored update (old is the previous version).
	Updated(ctx context.Context, old, obj manifests.Object)
	// Deleted is told of a stored delete.
	Deleted(ctx context.Context, obj manifests.Object)
}

// SetAdmitter installs a; call it before the store is used.
func (s *Store) SetAdmitter(a Admitter) { s.adm.Store(&a) }

func (s *Store) admitter() Admitter {
	if p := s.adm.Load(); p != nil {
		return *p
	}
	return nil
}
