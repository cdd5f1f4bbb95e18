package api

import (
	"context"
	"fmt"
	"slices"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

// delete removes one object and returns it as it was. Deleting a namespace
// deletes everything in it first; system namespaces cannot be deleted.
func (s *Server) delete(ctx context.Context, body []byte) (any, error) {
	var req client.DeleteRequest
	if err := decodeRequest(body, &req); err != nil {
		return nil, err
	}
	k, err := resolveResource(req.Resource)
	if err != nil {
		return nil, err
	}
	if err := requireName(req.Name); err != nil {
		return nil, err
	}
	rev, err := store.ParseResourceVersion(req.ResourceVersion)
	if err != nil {
		return nil, err
	}
	ns := namespaceFor(k, req.Namespace)
	if k.Kind == "Namespace" {
		if slices.Contains(SystemNamespaces, req.Name) {
			return nil, client.Errorf(client.CodeForbidden, "namespaces %q is forbidden: this namespace may not be deleted", req.Name)
		}
		if _, err := s.st.Get(ctx, k.Resource, "", req.Name); err != nil {
			return nil, err
		}
		if err := s.emptyNamespace(ctx, req.Name); err != nil {
			return nil, err
		}
	}
	obj, err := s.st.Delete(ctx, k.Resource, ns, req.Name, rev)
	if err != nil {
		return nil, err
	}
	raw, err := encodeObject(obj)
	if err != nil {
		return nil, err
	}
	return client.DeleteResult{Object: raw}, nil
}

// emptyNamespace deletes every namespaced object in namespace.
func (s *Server) emptyNamespace(ctx context.Context, namespace string) error {
	for _, k := range manifests.Kinds() {
		if !k.Namespaced {
			continue
		}
		items, _, err := s.st.List(ctx, k.Resource, namespace, manifests.Selector{})
		if err != nil {
			return fmt.Errorf("delete namespace %s: %w", namespace, err)
		}
		for _, obj := range items {
			_, err := s.st.Delete(ctx, k.Resource, namespace, obj.GetObjectMeta().Name, 0)
			if err != nil && !client.IsNotFound(err) {
				return fmt.Errorf("delete namespace %s: %w", namespace, err)
			}
		}
	}
	return nil
}
