package edgectl

import (
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// persistentVolumeHeaders are the columns of a PersistentVolume, as
// kubectl prints them.
func persistentVolumeHeaders() []string {
	return []string{"NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS", "AGE"}
}

// persistentVolumeClaimHeaders are the columns of a PersistentVolumeClaim.
func persistentVolumeClaimHeaders() []string {
	return []string{"NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"}
}

// storageClassHeaders are the columns of a StorageClass.
func storageClassHeaders() []string {
	return []string{"NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "AGE"}
}

// accessModesColumn abbreviates access modes as kubectl does (RWO,ROX,RWX,RWOP).
func accessModesColumn(modes []string) string {
	short := map[string]string{
		manifests.ReadWriteOnce: "RWO", manifests.ReadOnlyMany: "ROX",
		manifests.ReadWriteMany: "RWX", manifests.ReadWriteOncePod: "RWOP",
	}
	var out []string
	for _, m := range modes {
		if s, ok := short[m]; ok {
			out = append(out, s)
		} else {
			out = append(out, m)
		}
	}
	return strings.Join(out, ",")
}

func persistentVolumeRow(pv *manifests.PersistentVolume, name, created string) []string {
	status := pv.Status.Phase
	if pv.DeletionTimestamp != nil {
		status = "Terminating"
	}
	claim := ""
	if r := pv.Spec.ClaimRef; r != nil {
		claim = r.Namespace + "/" + r.Name
	}
	return []string{name, string(pv.Spec.Capacity[manifests.ResourceStorage]), accessModesColumn(pv.Spec.AccessModes),
		pv.Spec.PersistentVolumeReclaimPolicy, status, claim, pv.Spec.StorageClassName, created}
}

func persistentVolumeClaimRow(pvc *manifests.PersistentVolumeClaim, name, created string) []string {
	status := pvc.Status.Phase
	if pvc.DeletionTimestamp != nil {
		status = "Terminating"
	}
	class := ""
	if pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	}
	return []string{name, status, pvc.Spec.VolumeName, string(pvc.Status.Capacity[manifests.ResourceStorage]),
		accessModesColumn(pvc.Status.AccessModes), class, created}
}

func storageClassRow(sc *manifests.StorageClass, name, created string) []string {
	reclaim, mode := manifests.ReclaimDelete, manifests.VolumeBindingImmediate
	if sc.ReclaimPolicy != nil {
		reclaim = *sc.ReclaimPolicy
	}
	if sc.VolumeBindingMode != nil {
		mode = *sc.VolumeBindingMode
	}
	return []string{name, sc.Provisioner, reclaim, mode, created}
}
