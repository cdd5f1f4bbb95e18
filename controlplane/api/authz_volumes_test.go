package api

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging/auth"
)

func azVolume(name, node, claim string) *manifests.PersistentVolume {
	pv := &manifests.PersistentVolume{
		ObjectMeta: manifests.ObjectMeta{Name: name, Finalizers: []string{manifests.LocalVolumeCleanupFinalizer}},
		Spec: manifests.PersistentVolumeSpec{
			Capacity: manifests.ResourceList{"storage": "1Gi"}, AccessModes: []string{manifests.ReadWriteOnce},
			Local: &manifests.LocalVolumeSource{Path: "/v/" + name},
			NodeAffinity: &manifests.VolumeNodeAffinity{Required: &manifests.NodeSelector{NodeSelectorTerms: []manifests.NodeSelectorTerm{{
				MatchExpressions: []manifests.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{node}}},
			}}}},
		},
	}
	if claim != "" {
		pv.Spec.ClaimRef = &manifests.ObjectReference{Namespace: "default", Name: claim}
	}
	return pv
}

func azClaim(name, volume string) *manifests.PersistentVolumeClaim {
	c := &manifests.PersistentVolumeClaim{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.PersistentVolumeClaimSpec{AccessModes: []string{manifests.ReadWriteOnce}, VolumeName: volume,
			Resources: manifests.VolumeResourceRequirements{Requests: manifests.ResourceList{"storage": "1Gi"}}},
	}
	return c
}

func usesClaim(name string) func(*manifests.PodSpec) {
	return func(s *manifests.PodSpec) {
		s.Volumes = []manifests.Volume{{Name: "v", VolumeSource: manifests.VolumeSource{
			PersistentVolumeClaim: &manifests.PersistentVolumeClaimVolumeSource{ClaimName: name}}}}
	}
}

// TestNodeVolumeAuthorization: a node reads the claims its pods use and
// their volumes, and the volumes pinned to it; it may only remove the
// cleanup finalizer of its own volume being deleted.
func TestNodeVolumeAuthorization(t *testing.T) {
	e := newAuthEnv(t)
	e.create(t, azNode("a"), azNode("b"),
		azClaim("c-a", "pv-a"), azClaim("c-b", "pv-b"), azClaim("c-unused", ""),
		azVolume("pv-a", "a", "c-a"), azVolume("pv-b", "b", "c-b"), azVolume("pv-free-a", "a", ""),
		azBoundPod("p-a", "a", usesClaim("c-a")), azBoundPod("p-b", "b", usesClaim("c-b")))
	ctx := ctxT(t)
	a := client.New(e.connect(t, "a", auth.RoleNode, "a"), client.AsNode("a"))

	if _, err := a.Get(ctx, "persistentvolumeclaims", "default", "c-a"); err != nil {
		t.Fatalf("node a gets the claim its pod uses: %v", err)
	}
	for _, name := range []string{"pv-a", "pv-free-a"} {
		if _, err := a.Get(ctx, "persistentvolumes", "", name); err != nil {
			t.Fatalf("node a gets volume %s: %v", name, err)
		}
	}
	_, err := a.Get(ctx, "persistentvolumeclaims", "default", "c-b")
	wantForbidden(t, "node a gets node b's claim", err, `persistentvolumeclaims "default/c-b"`)
	_, err = a.Get(ctx, "persistentvolumeclaims", "default", "c-unused")
	wantForbidden(t, "node a gets an unused claim", err)
	_, err = a.Get(ctx, "persistentvolumes", "", "pv-b")
	wantForbidden(t, "node a gets node b's volume", err, `persistentvolumes "pv-b"`)
	_, _, err = a.List(ctx, "persistentvolumes", "", "")
	wantForbidden(t, "node a lists volumes", err)

	// Updates: none while the volume lives; then only the finalizer.
	obj, err := e.admin.Get(ctx, "persistentvolumes", "", "pv-a")
	if err != nil {
		t.Fatal(err)
	}
	pv := obj.(*manifests.PersistentVolume)
	pv.Finalizers = nil
	_, err = a.Update(ctx, pv)
	wantForbidden(t, "node a updates a live volume", err, "only finish the deletion")
	now := time.Now().UTC().Truncate(time.Second)
	obj, _ = e.admin.Get(ctx, "persistentvolumes", "", "pv-a")
	marked := manifests.DeepCopy(obj).(*manifests.PersistentVolume)
	marked.DeletionTimestamp = &now
	stored, err := e.st.Update(ctx, marked)
	if err != nil {
		t.Fatal(err)
	}
	sneaky := manifests.DeepCopy(stored).(*manifests.PersistentVolume)
	sneaky.Finalizers = nil
	sneaky.Spec.Capacity["storage"] = "100Gi"
	_, err = a.Update(ctx, sneaky)
	wantForbidden(t, "node a changes more than the finalizer", err, manifests.LocalVolumeCleanupFinalizer)
	done := manifests.DeepCopy(stored).(*manifests.PersistentVolume)
	done.Finalizers = nil
	if _, err := a.Update(ctx, done); err != nil {
		t.Fatalf("node a removes the cleanup finalizer: %v", err)
	}
	obj, _ = e.admin.Get(ctx, "persistentvolumes", "", "pv-b")
	other := manifests.DeepCopy(obj).(*manifests.PersistentVolume)
	other.DeletionTimestamp = &now
	stored, err = e.st.Update(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	other = manifests.DeepCopy(stored).(*manifests.PersistentVolume)
	other.Finalizers = nil
	_, err = a.Update(ctx, other)
	wantForbidden(t, "node a finishes node b's volume", err, "not on this node")
}
