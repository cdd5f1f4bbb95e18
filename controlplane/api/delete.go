package api

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/gc"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

// delete removes one object and returns it as it was. Deleting a namespace
// deletes everything in it first; system namespaces cannot be deleted.
func (s *Server) delete(ctx context.Context, body []byte) (any, error) {
	var req client.DeleteRequest
	if err := decodeBounded(body, &req); err != nil {
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
	obj, err := s.deleteObject(ctx, k, ns, req, rev)
	if err != nil {
		return nil, err
	}
	s.released(ctx, obj)
	raw, err := encodeObject(obj)
	if err != nil {
		return nil, err
	}
	return client.DeleteResult{Object: raw}, nil
}

// deleteObject deletes one object with req's propagation policy. An
// object is deleted at once with Background propagation and no
// finalizers; otherwise it is marked (deletionTimestamp, and the
// foregroundDeletion or orphan finalizer) and the garbage collector
// finishes the deletion.
func (s *Server) deleteObject(ctx context.Context, k manifests.Kind, ns string, req client.DeleteRequest, rev uint64) (manifests.Object, error) {
	policy := req.PropagationPolicy
	if !slices.Contains([]string{"", client.DeletePropagationBackground, client.DeletePropagationForeground, client.DeletePropagationOrphan}, policy) {
		return nil, client.Errorf(client.CodeInvalid, "propagationPolicy: Unsupported value: %q: supported values: %q, %q, %q",
			policy, client.DeletePropagationBackground, client.DeletePropagationForeground, client.DeletePropagationOrphan)
	}
	for attempt := 1; ; attempt++ {
		cur, err := s.st.Get(ctx, k.Resource, ns, req.Name)
		if err != nil {
			return nil, err
		}
		m := cur.GetObjectMeta()
		if rev != 0 && m.ResourceVersion != strconv.FormatUint(rev, 10) {
			return nil, client.Errorf(client.CodeConflict,
				"Operation cannot be fulfilled on %s %q: the object has been modified; please apply your changes to the latest version and try again", k.Resource, req.Name)
		}
		if (policy == "" || policy == client.DeletePropagationBackground) && len(m.Finalizers) == 0 {
			return s.st.Delete(ctx, k.Resource, ns, req.Name, rev)
		}
		obj, err := gc.Delete(ctx, s.st, cur, policy, time.Now())
		// A conflict here is a concurrent write (a controller's status
		// update): read again, unless the caller asked for a revision.
		if client.CodeOf(err) == client.CodeConflict && rev == 0 && attempt < 5 {
			continue
		}
		return obj, err
	}
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
			deleted, err := s.st.Delete(ctx, k.Resource, namespace, obj.GetObjectMeta().Name, 0)
			if err != nil && !client.IsNotFound(err) {
				return fmt.Errorf("delete namespace %s: %w", namespace, err)
			}
			if err == nil {
				s.released(ctx, deleted)
			}
		}
	}
	return nil
}
