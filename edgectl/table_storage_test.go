package edgectl

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestStorageTables(t *testing.T) {
	pv := &manifests.PersistentVolume{ObjectMeta: meta("", "pvc-123", time.Hour)}
	pv.Spec.Capacity = manifests.ResourceList{"storage": "256Mi"}
	pv.Spec.AccessModes = []string{manifests.ReadWriteOnce, manifests.ReadOnlyMany}
	pv.Spec.PersistentVolumeReclaimPolicy = manifests.ReclaimDelete
	pv.Spec.StorageClassName = "local-path"
	pv.Spec.ClaimRef = &manifests.ObjectReference{Namespace: "default", Name: "data"}
	pv.Status.Phase = manifests.VolumeBound
	checkRows(t, tableText(t, "pv", []manifests.Object{pv}, tableOptions{Now: tableNow}),
		"NAME | CAPACITY | ACCESS MODES | RECLAIM POLICY | STATUS | CLAIM | STORAGECLASS | AGE",
		"pvc-123 | 256Mi | RWO,ROX | Delete | Bound | default/data | local-path | 60m")

	class := "local-path"
	pvc := &manifests.PersistentVolumeClaim{ObjectMeta: meta("default", "data", time.Hour)}
	pvc.Spec.StorageClassName = &class
	pvc.Spec.VolumeName = "pvc-123"
	pvc.Status = manifests.PersistentVolumeClaimStatus{Phase: manifests.ClaimBound, AccessModes: []string{manifests.ReadWriteOnce},
		Capacity: manifests.ResourceList{"storage": "256Mi"}}
	pending := &manifests.PersistentVolumeClaim{ObjectMeta: meta("default", "logs", time.Hour)}
	pending.Spec.StorageClassName = &class
	pending.Status.Phase = manifests.ClaimPending
	checkRows(t, tableText(t, "pvc", []manifests.Object{pvc, pending}, tableOptions{Now: tableNow}),
		"NAME | STATUS | VOLUME | CAPACITY | ACCESS MODES | STORAGECLASS | AGE",
		"data | Bound | pvc-123 | 256Mi | RWO | local-path | 60m",
		"logs | Pending |  |  |  | local-path | 60m")

	wffc := manifests.VolumeBindingWaitForFirstConsumer
	sc := &manifests.StorageClass{ObjectMeta: meta("", "fast", time.Hour), Provisioner: manifests.LocalPathProvisioner, VolumeBindingMode: &wffc}
	checkRows(t, tableText(t, "sc", []manifests.Object{sc}, tableOptions{Now: tableNow}),
		"NAME | PROVISIONER | RECLAIMPOLICY | VOLUMEBINDINGMODE | AGE",
		"fast | edge.io/local-path | Delete | WaitForFirstConsumer | 60m")
}
