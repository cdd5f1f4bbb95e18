package api

import (
	"context"
	"slices"

	"github.com/edgeorch/edgeorch/manifests"
)

// What a node may do with storage (docs/storage.md), beside authz.go:
//   - a PersistentVolumeClaim: get, while a pod bound to it uses it;
//   - a PersistentVolume: get, when its nodeAffinity pins it to the node
//     or a pod bound to the node uses its claim;
//   - a PersistentVolume pinned to it and being deleted: update, only to
//     remove manifests.LocalVolumeCleanupFinalizer once its directory is
//     gone.

// claimUsedByPodOf reports whether a pod bound to node uses the claim
// namespace/name.
func (s *Server) claimUsedByPodOf(ctx context.Context, node, namespace, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	pods, _, err := s.st.List(ctx, "pods", namespace, manifests.Selector{})
	if err != nil {
		return false, err
	}
	for _, obj := range pods {
		if pod, ok := obj.(*manifests.Pod); ok && pod.Spec.NodeName == node && slices.Contains(manifests.PodClaimNames(pod), name) {
			return true, nil
		}
	}
	return false, nil
}

// authorizeNodeVolumeGet decides a node's get of a claim or a volume.
func (s *Server) authorizeNodeVolumeGet(ctx context.Context, node, verb, resource, namespace, name string) error {
	if resource == "persistentvolumeclaims" {
		ok, err := s.claimUsedByPodOf(ctx, node, namespace, name)
		if err != nil || ok {
			return err
		}
		return forbidden(node, verb, resource, namespace, name, "no pod bound to it uses it")
	}
	obj, err := s.st.Get(ctx, "persistentvolumes", "", name)
	if err != nil {
		return err // NotFound: the agent learns that the volume is gone
	}
	pv := obj.(*manifests.PersistentVolume)
	if manifests.PVNodeName(pv) == node {
		return nil
	}
	if r := pv.Spec.ClaimRef; r != nil {
		ok, err := s.claimUsedByPodOf(ctx, node, r.Namespace, r.Name)
		if err != nil || ok {
			return err
		}
	}
	return forbidden(node, verb, resource, "", name, "it is not on this node and no pod bound to it uses its claim")
}

// authorizeNodeVolumeUpdate lets a node remove the cleanup finalizer of a
// volume of its own that is being deleted, and change nothing else.
func (s *Server) authorizeNodeVolumeUpdate(ctx context.Context, node, verb string, pv *manifests.PersistentVolume) error {
	stored, err := s.st.Get(ctx, "persistentvolumes", "", pv.Name)
	if err != nil {
		return err
	}
	cur := stored.(*manifests.PersistentVolume)
	if manifests.PVNodeName(cur) != node {
		return forbidden(node, verb, "persistentvolumes", "", pv.Name, "the volume is not on this node")
	}
	if cur.DeletionTimestamp == nil {
		return forbidden(node, verb, "persistentvolumes", "", pv.Name, "nodes may only finish the deletion of a volume")
	}
	want := manifests.DeepCopy(cur).(*manifests.PersistentVolume)
	want.Finalizers = slices.DeleteFunc(want.Finalizers, func(f string) bool { return f == manifests.LocalVolumeCleanupFinalizer })
	got := manifests.DeepCopy(pv).(*manifests.PersistentVolume)
	if len(want.Finalizers) == 0 {
		want.Finalizers = nil
	}
	if len(got.Finalizers) == 0 {
		got.Finalizers = nil
	}
	got.ResourceVersion, got.TypeMeta = want.ResourceVersion, want.TypeMeta
	if !manifests.EqualJSON(got, want) {
		return forbidden(node, verb, "persistentvolumes", "", pv.Name, "nodes may only remove the finalizer "+manifests.LocalVolumeCleanupFinalizer)
	}
	return nil
}
