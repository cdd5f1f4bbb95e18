package edgeagent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime/oci"
)

// TestOCIPodClaimVolume: an OCI pod (runc) writes to its claim, bind-mounted
// from <data-dir>/volumes/<volume>; a replacement pod, mounting the claim
// read-only, reads the data and cannot write.
func TestOCIPodClaimVolume(t *testing.T) {
	image := busyboxImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	rt, err := oci.New(ctx, oci.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	claim := &manifests.PersistentVolumeClaim{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: manifests.ObjectMeta{Name: "data", Namespace: "default", UID: "uid-claim"},
		Spec:       manifests.PersistentVolumeClaimSpec{VolumeName: "pvc-uid-claim", AccessModes: []string{manifests.ReadWriteOnce}},
		Status:     manifests.PersistentVolumeClaimStatus{Phase: manifests.ClaimBound},
	}
	pv := &manifests.PersistentVolume{
		TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "PersistentVolume"},
		ObjectMeta: manifests.ObjectMeta{Name: "pvc-uid-claim",
			Annotations: map[string]string{manifests.AnnProvisionedBy: manifests.LocalPathProvisioner}},
		Spec: manifests.PersistentVolumeSpec{
			Capacity: manifests.ResourceList{"storage": "10Mi"},
			ClaimRef: &manifests.ObjectReference{Namespace: "default", Name: "data", UID: "uid-claim"},
			Local:    &manifests.LocalVolumeSource{Path: "/var/lib/edge-agent/volumes/pvc-uid-claim"},
			NodeAffinity: &manifests.VolumeNodeAffinity{Required: &manifests.NodeSelector{NodeSelectorTerms: []manifests.NodeSelectorTerm{{
				MatchExpressions: []manifests.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{"n1"}}},
			}}}},
		},
	}
	api := &fakeAPI{objects: map[string]manifests.Object{
		"persistentvolumeclaims/default/data": claim,
		"persistentvolumes//pvc-uid-claim":    pv,
	}}
	a := newTestAgent(t, rt, api)
	run := func(name string, readOnly bool, script string) int32 {
		t.Helper()
		p := ociPod(image)
		p.Name, p.UID = name, "uid-"+name
		p.Spec.RestartPolicy = manifests.RestartNever
		p.Spec.Volumes = []manifests.Volume{{Name: "data", VolumeSource: manifests.VolumeSource{
			PersistentVolumeClaim: &manifests.PersistentVolumeClaimVolumeSource{ClaimName: "data", ReadOnly: readOnly}}}}
		p.Spec.Containers[0].Command = []string{"sh", "-c", script}
		p.Spec.Containers[0].VolumeMounts = []manifests.VolumeMount{{Name: "data", MountPath: "/data"}}
		w := newPodWorker(a, &state.Pod{Pod: p, Revision: 1})
		defer w.teardown(context.Background())
		cs := syncUntil(t, ctx, w, 20*time.Second, name+" done", func(cs manifests.ContainerStatus) bool { return cs.State.Terminated != nil })
		return cs.State.Terminated.ExitCode
	}
	if code := run("writer", false, "echo persisted > /data/f"); code != 0 {
		t.Fatalf("writer exited %d", code)
	}
	dir := filepath.Join(a.cfg.DataDir, "volumes", "pvc-uid-claim")
	if data, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(data) != "persisted\n" {
		t.Fatalf("the writer's file: %q %v", data, err)
	}
	if code := run("reader", true, `test "$(cat /data/f)" = persisted && ! (echo x > /data/g) 2>/dev/null`); code != 0 {
		t.Fatalf("reader exited %d: the data was not there, or a read-only claim was writable", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "g")); !os.IsNotExist(err) {
		t.Fatalf("a read-only claim was written: %v", err)
	}
}
