package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

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
	in, k, err := decodeApply(req.Object)
	if err != nil {
		return nil, err
	}
	result, obj, err := s.applyObject(ctx, in, k, req.DryRun, s.namespaceExists)
	if err != nil {
		return nil, err
	}
	return applyResult(result, obj)
}

// decodeApply decodes, defaults and validates an object sent to apply.
func decodeApply(raw []byte) (manifests.Object, manifests.Kind, error) {
	in, k, err := decodeObjectBounded(raw)
	if err != nil {
		return nil, k, err
	}
	manifests.Default(in)
	if err := manifests.Validate(in); err != nil {
		return nil, k, invalid(k.Kind, in.GetObjectMeta().Name, err)
	}
	return in, k, nil
}

// namespaceExists returns the store's error (NotFound) when the namespace
// ns does not exist.
func (s *Server) namespaceExists(ctx context.Context, ns string) error {
	_, err := s.st.Get(ctx, "namespaces", "", ns)
	return err
}

// applyObject applies in (decoded by decodeApply) once nsExists says its
// namespace exists, and returns what was done and the stored object.
func (s *Server) applyObject(ctx context.Context, in manifests.Object, k manifests.Kind, dryRun bool, nsExists func(context.Context, string) error) (string, manifests.Object, error) {
	meta := in.GetObjectMeta()
	get := func() (manifests.Object, error) { return s.st.Get(ctx, k.Resource, meta.Namespace, meta.Name) }
	var stored manifests.Object
	var getErr error
	if k.Namespaced {
		// Read the object while the namespace is looked up: one round
		// trip to the store instead of two.
		read := make(chan struct{})
		go func() {
			defer close(read)
			stored, getErr = get()
		}()
		nsErr := nsExists(ctx, meta.Namespace)
		<-read
		if nsErr != nil {
			return "", nil, nsErr
		}
	} else {
		stored, getErr = get()
	}
	// Without a resourceVersion from the client, a write that lost a race
	// with another writer is retried once on the newer object.
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			stored, getErr = get()
		}
		result, obj, err := s.applyOnce(ctx, in, k, dryRun, stored, getErr)
		if err != nil && client.IsConflict(err) && meta.ResourceVersion == "" && attempt == 0 {
			continue
		}
		if err != nil && client.CodeOf(err) == client.CodeExists && attempt == 0 {
			continue // created meanwhile: update it instead
		}
		return result, obj, err
	}
}

// applyOnce applies in over stored, the object as read (or the error
// reading it).
func (s *Server) applyOnce(ctx context.Context, in manifests.Object, k manifests.Kind, dryRun bool, stored manifests.Object, err error) (string, manifests.Object, error) {
	meta := in.GetObjectMeta()
	if client.IsNotFound(err) {
		if meta.ResourceVersion != "" {
			return "", nil, err
		}
		obj := in
		if p, ok := obj.(*manifests.Pod); ok {
			// As in Kubernetes, a new pod starts Pending whatever status was sent.
			p.Status = manifests.PodStatus{Phase: "Pending"}
		}
		alloc, err := s.admitNew(ctx, in)
		if err != nil {
			return "", nil, err
		}
		if dryRun {
			// Admission runs (LimitRange defaults, quota refusals) and
			// charges nothing, as a Kubernetes server-side dry run.
			obj, err = s.st.Admit(ctx, in)
			s.settle(ctx, alloc, false)
			if err != nil {
				return "", nil, err
			}
		} else {
			obj, err = s.st.Create(ctx, in)
			s.settle(ctx, alloc, err == nil)
			if err != nil {
				return "", nil, err
			}
		}
		return client.ResultCreated, obj, nil
	}
	if err != nil {
		return "", nil, err
	}
	if meta.ResourceVersion != "" && meta.ResourceVersion != stored.GetObjectMeta().ResourceVersion {
		return "", nil, conflict(k.Resource, meta.Name)
	}
	merged, err := mergeApply(stored, in)
	if err != nil {
		return "", nil, err
	}
	manifests.Default(merged)
	alloc, err := s.allocate(ctx, merged, stored)
	if err != nil {
		return "", nil, err
	}
	written := false
	defer func() { s.settle(ctx, alloc, written) }()
	same, err := sameObject(merged, stored)
	if err != nil {
		return "", nil, err
	}
	if same {
		return client.ResultUnchanged, stored, nil
	}
	if err := manifests.ValidateUpdate(merged, stored); err != nil {
		return "", nil, invalid(k.Kind, meta.Name, err)
	}
	if dryRun {
		return client.ResultConfigured, merged, nil
	}
	updated, err := s.st.UpdateFrom(ctx, merged, stored)
	if err != nil {
		return "", nil, err
	}
	written = true
	return client.ResultConfigured, updated, nil
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
	m.Labels, m.Annotations, m.OwnerReferences = im.Labels, keepManaged(im.Annotations, sm.Annotations), im.OwnerReferences
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

// managedAnnotationPrefixes are the prefixes of annotations the
// controllers keep on the objects they manage (a Deployment's revision).
// As with kubectl apply, whose patch removes only what the last applied
// manifest had, an apply that does not mention them keeps them: dropping
// them made every re-apply of an unchanged Deployment a write, followed by
// the controller's write putting them back.
var managedAnnotationPrefixes = []string{"deployment.kubernetes.io/"}

// keepManaged returns the incoming annotations plus the managed ones of
// stored that incoming does not set.
func keepManaged(incoming, stored map[string]string) map[string]string {
	var out map[string]string
	for key, v := range stored {
		if _, set := incoming[key]; set || !managedAnnotation(key) {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(incoming)+1)
			maps.Copy(out, incoming)
		}
		out[key] = v
	}
	if out == nil {
		return incoming
	}
	return out
}

func managedAnnotation(key string) bool {
	for _, p := range managedAnnotationPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
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
