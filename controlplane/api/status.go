package api

import (
	"context"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// statusRetries bounds the read-modify-write attempts of a status update
// without resourceVersion.
const statusRetries = 8

// updateStatus replaces only the status of an object; everything else sent
// is ignored. With metadata.resourceVersion it is a compare-and-swap;
// without, the status is written over the latest object (retried on
// conflicts).
func (s *Server) updateStatus(ctx context.Context, body []byte) (any, error) {
	var req client.UpdateRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	in, k, err := decodeObjectBounded(req.Object)
	if err != nil {
		return nil, err
	}
	meta := in.GetObjectMeta()
	if err := checkObjectName(meta.Name); err != nil {
		return nil, err
	}
	ns := namespaceFor(k, meta.Namespace)
	for attempt := 1; ; attempt++ {
		// A node's request was authorized on the stored object: the first
		// attempt starts from it rather than reading it again.
		stored, ok := prefetched(ctx, k.Resource, ns, meta.Name)
		if !ok {
			if stored, err = s.st.Get(ctx, k.Resource, ns, meta.Name); err != nil {
				return nil, err
			}
		}
		if meta.ResourceVersion != "" && meta.ResourceVersion != stored.GetObjectMeta().ResourceVersion {
			return nil, conflict(k.Resource, meta.Name)
		}
		next, err := withStatus(stored, in)
		if err != nil {
			return nil, err
		}
		manifests.Default(next)
		if err := manifests.Validate(next); err != nil {
			return nil, invalid(k.Kind, meta.Name, err)
		}
		res, err := s.write(ctx, next, stored)
		if err != nil && client.IsConflict(err) && meta.ResourceVersion == "" && attempt < statusRetries {
			continue
		}
		return res, err
	}
}
