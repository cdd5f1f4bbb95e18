package api

import (
	"context"

	"github.com/edgeorch/edgeorch/client"
)

// get returns one object (the raw object is the result).
func (s *Server) get(ctx context.Context, body []byte) (any, error) {
	var req client.GetRequest
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
	obj, err := s.st.Get(ctx, k.Resource, namespaceFor(k, req.Namespace), req.Name)
	if err != nil {
		return nil, err
	}
	return encodeObject(obj)
}
