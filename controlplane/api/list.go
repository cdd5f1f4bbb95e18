package api

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// list returns the matching objects and the revision they were read at.
func (s *Server) list(ctx context.Context, body []byte) (any, error) {
	var req client.ListRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	k, err := resolveResource(req.Resource)
	if err != nil {
		return nil, err
	}
	sel, err := manifests.ParseSelector(req.LabelSelector)
	if err != nil {
		return nil, client.Errorf(client.CodeInvalid, "%v", err)
	}
	ns := req.Namespace
	if !k.Namespaced {
		ns = ""
	}
	items, rev, err := s.st.List(ctx, k.Resource, ns, sel)
	if err != nil {
		return nil, err
	}
	res := client.ListResult{Items: make([]json.RawMessage, 0, len(items)), ResourceVersion: strconv.FormatUint(rev, 10)}
	for _, obj := range items {
		raw, err := encodeObject(obj)
		if err != nil {
			return nil, err
		}
		res.Items = append(res.Items, raw)
	}
	return res, nil
}
