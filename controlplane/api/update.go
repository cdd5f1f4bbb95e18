package api

import (
	"context"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// update replaces an object (compare-and-swap on its resourceVersion); the
// status is kept from the stored object. Writing an identical object is a
// no-op returning the stored one.
func (s *Server) update(ctx context.Context, body []byte) (any, error) {
	var req client.UpdateRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	in, k, err := decodeObjectBounded(req.Object)
	if err != nil {
		return nil, err
	}
	manifests.Default(in)
	meta := in.GetObjectMeta()
	if meta.ResourceVersion == "" {
		return nil, invalid(k.Kind, meta.Name, manifests.FieldErrors{{Path: "metadata.resourceVersion", Reason: "must be specified for an update"}})
	}
	if err := manifests.Validate(in); err != nil {
		return nil, invalid(k.Kind, meta.Name, err)
	}
	stored, err := s.st.Get(ctx, k.Resource, meta.Namespace, meta.Name)
	if err != nil {
		return nil, err
	}
	if meta.ResourceVersion != stored.GetObjectMeta().ResourceVersion {
		return nil, conflict(k.Resource, meta.Name)
	}
	next, err := withStatus(in, stored)
	if err != nil {
		return nil, err
	}
	keepServerMeta(next, stored)
	alloc, err := s.allocate(ctx, next, stored)
	if err != nil {
		return nil, err
	}
	if err := manifests.ValidateUpdate(next, stored); err != nil {
		s.settle(ctx, alloc, false)
		return nil, invalid(k.Kind, meta.Name, err)
	}
	res, err := s.write(ctx, next, stored)
	s.settle(ctx, alloc, err == nil)
	return res, err
}

// keepServerMeta keeps the metadata only the server sets.
func keepServerMeta(obj, stored manifests.Object) {
	m, sm := obj.GetObjectMeta(), stored.GetObjectMeta()
	m.UID, m.CreationTimestamp, m.Generation = sm.UID, sm.CreationTimestamp, sm.Generation
	// A delete in progress (finalizers pending) cannot be undone by a write.
	m.DeletionTimestamp = sm.DeletionTimestamp
}

// write stores next over stored unless they are equal, and returns the
// result of an update verb.
func (s *Server) write(ctx context.Context, next, stored manifests.Object) (any, error) {
	same, err := sameObject(next, stored)
	if err != nil {
		return nil, err
	}
	obj := stored
	if !same {
		if obj, err = s.st.UpdateFrom(ctx, next, stored); err != nil {
			return nil, err
		}
	}
	raw, err := encodeObject(obj)
	if err != nil {
		return nil, err
	}
	return client.UpdateResult{Object: raw}, nil
}

// withStatus returns obj with the status of from.
func withStatus(obj, from manifests.Object) (manifests.Object, error) {
	m, err := toMap(obj)
	if err != nil {
		return nil, err
	}
	fm, err := toMap(from)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	if st, ok := fm["status"]; ok {
		m["status"] = st
	}
	return fromMap(m, obj)
}

func conflict(resource, name string) error {
	return client.Errorf(client.CodeConflict,
		"Operation cannot be fulfilled on %s %q: the object has been modified; please apply your changes to the latest version and try again",
		resource, name)
}
