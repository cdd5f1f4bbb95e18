package controller

import (
	"context"

	"github.com/edgeorch/edgeorch/manifests"
)

// Updater is a store that writes updates.
type Updater interface {
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
}

// updaterFrom is a store that writes an update without reading the stored
// object first when given it (store.Store.UpdateFrom).
type updaterFrom interface {
	UpdateFrom(ctx context.Context, obj, from manifests.Object) (manifests.Object, error)
}

// UpdateFrom writes obj, made from from — the stored object at obj's
// resourceVersion, as a cache or a read of the store holds it, unchanged —
// through st's UpdateFrom when st has one (one read of the store less),
// else through its Update.
func UpdateFrom(ctx context.Context, st Updater, obj, from manifests.Object) (manifests.Object, error) {
	if u, ok := st.(updaterFrom); ok {
		return u.UpdateFrom(ctx, obj, from)
	}
	return st.Update(ctx, obj)
}
