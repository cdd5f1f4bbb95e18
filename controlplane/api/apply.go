package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

// apply creates the object when absent and otherwise updates it from the
// incoming fields; an apply that changes nothing writes nothing.
func (s *Server) apply(ctx context.Context, body []byte) (any, error) {
	var req client.ApplyRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, err
	}
	in, k, err := decodeObjectBounded(req.Object)
	if err != nil {
		return nil, err
	}
	manifests.Default(in)
	meta := in.GetObjectMeta()
	if err := manifests.Validate(in); err != nil {
		return nil, invalid(k.Kind, meta.Name, err)
	}
	if k.Namespaced {
		if _, err := s.st.Get(ctx, "namespaces", "", meta.Namespace); err != nil {
			return nil, err
		}
	}
	// Without a resourceVersion from the client, a write that lost a race
	// with another writer is retried once on the newer object.
	for attempt := 0; ; attempt++ {
		res, err := s.applyOnce(ctx, in, k, req.DryRun)
		if err != nil && client.IsConflict(err) && meta.ResourceVersion == "" && attempt == 0 {
			continue
		}
		if err != nil && client.CodeOf(err) == client.CodeExists && attempt == 0 {
			continue // created meanwhile: update it instead
		}
		return res, err
	}
}

func (s *Server) applyOnce(ctx context.Context, in manifests.Object, k manifests.Kind, dryRun bool) (any, error) {
	meta := in.GetObjectMeta()
	stored, err := s.st.Get(ctx, k.Resource, meta.Namespace, meta.Name)
	if client.IsNotFound(err) {
		if meta.ResourceVersion != "" {
			return nil, err
		}
		obj := in
		if p, ok := obj.(*manifests.Pod); ok {
			// As in Kubernetes, a new pod starts Pending whatever status was sent.
			p.Status = manifests.PodStatus{Phase: "Pending"}
		}
		alloc, err := s.admitNew(ctx, in)
		if err != nil {
			return nil, err
		}
		if dryRun {
			s.settle(ctx, alloc, false)
		} else {
			obj, err = s.st.Create(ctx, in)
			s.settle(ctx, alloc, err == nil)
			if err != nil {
				return nil, err
			}
		}
		return applyResult(client.ResultCreated, obj)
	}
	if err != nil {
		return nil, err
	}
	if meta.ResourceVersion != "" && meta.ResourceVersion != stored.GetObjectMeta().ResourceVersion {
		return nil, conflict(k.Resource, meta.Name)
	}
	merged, err := mergeApply(stored, in)
	if err != nil {
		return nil, err
	}
	manifests.Default(merged)
	alloc, err := s.allocate(ctx, merged, stored)
	if err != nil {
		return nil, err
	}
	written := false
	defer func() { s.settle(ctx, alloc, written) }()
	same, err := sameObject(merged, stored)
	if err != nil {
		return nil, err
	}
	if same {
		return applyResult(client.ResultUnchanged, stored)
	}
	if err := manifests.ValidateUpdate(merged, stored); err != nil {
		return nil, invalid(k.Kind, meta.Name, err)
	}
	if dryRun {
		return applyResult(client.ResultConfigured, merged)
	}
	updated, err := s.st.Update(ctx, merged)
	if err != nil {
		return nil, err
	}
	written = true
	return applyResult(client.ResultConfigured, updated)
}

func applyResult(result string, obj manifests.Object) (any, error) {
	raw, err := encodeObject(obj)
	if err != nil {
		return nil, err
	}
	return client.ApplyResult{Result: result, Object: raw}, nil
}

// mergeApply returns stored with the incoming labels, annotations, owner
// references and every top-level field but metadata and status replaced by
// the incoming ones. A pod keeps its binding when the incoming spec has
// no nodeName.
func mergeApply(stored, in manifests.Object) (manifests.Object, error) {
	st, err := toMap(stored)
	if err != nil {
		return nil, err
	}
	inc, err := toMap(in)
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	for key, v := range inc {
		if key != "metadata" && key != "status" {
			out[key] = v
		}
	}
	if v, ok := st["status"]; ok {
		out["status"] = v
	}
	merged, err := fromMap(out, stored)
	if err != nil {
		return nil, err
	}
	m, sm, im := merged.GetObjectMeta(), stored.GetObjectMeta(), in.GetObjectMeta()
	*m = *sm
	m.Labels, m.Annotations, m.OwnerReferences = im.Labels, im.Annotations, im.OwnerReferences
	if p, ok := merged.(*manifests.Pod); ok && p.Spec.NodeName == "" {
		p.Spec.NodeName = stored.(*manifests.Pod).Spec.NodeName
	}
	// A node keeps the pod CIDR the control plane gave it.
	if n, ok := merged.(*manifests.Node); ok && n.Spec.PodCIDR == "" {
		sn := stored.(*manifests.Node)
		n.Spec.PodCIDR, n.Spec.PodCIDRs = sn.Spec.PodCIDR, sn.Spec.PodCIDRs
	}
	return merged, nil
}

func toMap(obj manifests.Object) (map[string]json.RawMessage, error) {
	raw, err := encodeObject(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", obj.GetObjectMeta().Name, err)
	}
	return m, nil
}

func fromMap(m map[string]json.RawMessage, like manifests.Object) (manifests.Object, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", like.GetObjectMeta().Name, err)
	}
	obj, err := manifests.FromJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", like.GetObjectMeta().Name, err)
	}
	return obj, nil
}

// sameObject compares two objects by their JSON form.
func sameObject(a, b manifests.Object) (bool, error) {
	x, err := encodeObject(a)
	if err != nil {
		return false, err
	}
	y, err := encodeObject(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}
