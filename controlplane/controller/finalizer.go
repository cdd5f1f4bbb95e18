package controller

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// FinalizerStore is what RemoveFinalizer needs of the store.
type FinalizerStore interface {
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Delete(ctx context.Context, resource, namespace, name string, rev uint64) (manifests.Object, error)
}

// RemoveFinalizer removes finalizer from obj (a compare-and-swap on its
// resourceVersion) and, when obj is being deleted and no finalizer is
// left, deletes it. An object already gone is not an error.
func RemoveFinalizer(ctx context.Context, st FinalizerStore, resource string, obj manifests.Object, finalizer string) error {
	cp := manifests.DeepCopy(obj)
	m := cp.GetObjectMeta()
	m.Finalizers = slices.DeleteFunc(m.Finalizers, func(f string) bool { return f == finalizer })
	if len(m.Finalizers) == 0 {
		m.Finalizers = nil
	}
	got, err := st.Update(ctx, cp)
	if err != nil {
		if client.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("remove finalizer %s from %s %s: %w", finalizer, resource, m.Name, err)
	}
	if len(m.Finalizers) > 0 || m.DeletionTimestamp == nil {
		return nil
	}
	return DeleteAt(ctx, st, resource, got)
}

// DeleteAt deletes obj if it is still at its resourceVersion. An object
// already gone is not an error.
func DeleteAt(ctx context.Context, st FinalizerStore, resource string, obj manifests.Object) error {
	m := obj.GetObjectMeta()
	rev, _ := strconv.ParseUint(m.ResourceVersion, 10, 64)
	if _, err := st.Delete(ctx, resource, m.Namespace, m.Name, rev); err != nil && !client.IsNotFound(err) {
		return fmt.Errorf("delete %s %s: %w", resource, m.Name, err)
	}
	return nil
}
