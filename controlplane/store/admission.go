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

type dryRunKey struct{}

// WithDryRun marks ctx as a dry run: admission checks and completes but
// charges nothing.
func WithDryRun(ctx context.Context) context.Context {
	return context.WithValue(ctx, dryRunKey{}, true)
}

// IsDryRun reports whether ctx is a dry run (WithDryRun).
func IsDryRun(ctx context.Context) bool {
	v, _ := ctx.Value(dryRunKey{}).(bool)
	return v
}

// Admit returns obj as Create would store it after admission (LimitRange
// defaults applied; refused as a create over quota would be), storing and
// charging nothing: a server-side dry run of a create.
func (s *Store) Admit(ctx context.Context, obj manifests.Object) (manifests.Object, error) {
	_, ns, err := target(obj)
	if err != nil {
		return nil, err
	}
	obj, err = clone(obj)
	if err != nil {
		return nil, err
	}
	obj.GetObjectMeta().Namespace = ns
	adm := s.admitter()
	if adm == nil {
		return obj, nil
	}
	undo, err := adm.AdmitCreate(WithDryRun(ctx), obj)
	if undo != nil {
		undo(context.WithoutCancel(ctx))
	}
	return obj, err
}
