package manifests

import (
	"strings"
	"testing"
)

const pvYAML = `apiVersion: v1
kind: PersistentVolume
metadata: {name: disk1}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: local-path
  local: {path: /var/lib/data/disk1}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [dev-1]}
`

const pvcYAML = `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: apps}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Mi}}
`

func TestStorageDecodeDefaultsValidate(t *testing.T) {
	objs, err := Decode([]byte(pvYAML + "---\n" + pvcYAML + "---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: fast}\nprovisioner: edge.io/local-path\nvolumeBindingMode: WaitForFirstConsumer\n"))
	if err != nil {
		t.Fatal(err)
	}
	pv, pvc, sc := objs[0].(*PersistentVolume), objs[1].(*PersistentVolumeClaim), objs[2].(*StorageClass)
	for _, o := range objs {
		Default(o)
		if err := Validate(o); err != nil {
			t.Fatalf("%s: %v", o.GetTypeMeta().Kind, err)
		}
	}
	if pv.Namespace != "" || pv.Spec.PersistentVolumeReclaimPolicy != ReclaimRetain || pv.Spec.VolumeMode != VolumeModeFilesystem || PVNodeName(pv) != "dev-1" || PVPath(pv) != "/var/lib/data/disk1" {
		t.Errorf("pv defaults: %+v", pv.Spec)
	}
	if ClaimStorageClass(pvc) != DefaultStorageClass || *pvc.Spec.VolumeMode != VolumeModeFilesystem || pvc.Status.Phase != ClaimPending {
		t.Errorf("pvc defaults: %+v %+v", pvc.Spec, pvc.Status)
	}
	if *sc.ReclaimPolicy != ReclaimDelete || *sc.VolumeBindingMode != VolumeBindingWaitForFirstConsumer {
		t.Errorf("sc defaults: %+v", sc)
	}
	for _, name := range []string{"pv", "pvc", "sc", "persistentvolumeclaims", "StorageClass"} {
		if _, err := KindForResource(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestStorageStrictDecode(t *testing.T) {
	_, err := Decode([]byte(strings.Replace(pvcYAML, "resources:", "size: 1Gi\n  resources:", 1)))
	if err == nil || !strings.Contains(err.Error(), `spec.size: unknown field "size"`) {
		t.Errorf("unknown field: %v", err)
	}
}

func TestStorageValidationErrors(t *testing.T) {
	pvc := func(f func(*PersistentVolumeClaim)) Object {
		objs, err := Decode([]byte(pvcYAML))
		if err != nil {
			t.Fatal(err)
		}
		c := objs[0].(*PersistentVolumeClaim)
		f(c)
		return c
	}
	pv := func(f func(*PersistentVolume)) Object {
		objs, err := Decode([]byte(pvYAML))
		if err != nil {
			t.Fatal(err)
		}
		v := objs[0].(*PersistentVolume)
		f(v)
		return v
	}
	pod := func(v VolumeSource) Object {
		return &Pod{ObjectMeta: ObjectMeta{Name: "p", Namespace: "default"}, Spec: PodSpec{
			Containers: []Container{{Name: "c", Image: "busybox:1"}},
			Volumes:    []Volume{{Name: "v", VolumeSource: v}},
		}}
	}
	block := "Block"
	for _, tc := range []struct {
		name string
		obj  Object
		want string
	}{
		{"pvc no modes", pvc(func(c *PersistentVolumeClaim) { c.Spec.AccessModes = nil }), "spec.accessModes: required"},
		{"pvc bad mode", pvc(func(c *PersistentVolumeClaim) { c.Spec.AccessModes = []string{"ReadWriteSometimes"} }), `spec.accessModes[0]: unsupported value "ReadWriteSometimes"`},
		{"pvc no request", pvc(func(c *PersistentVolumeClaim) { c.Spec.Resources.Requests = nil }), "spec.resources.requests[storage]: required"},
		{"pvc cpu request", pvc(func(c *PersistentVolumeClaim) { c.Spec.Resources.Requests["cpu"] = "1" }), `spec.resources.requests[cpu]: unsupported value "cpu"`},
		{"pvc zero", pvc(func(c *PersistentVolumeClaim) { c.Spec.Resources.Requests["storage"] = "0" }), "spec.resources.requests[storage]: invalid value \"0\": must be greater than zero"},
		{"pvc block", pvc(func(c *PersistentVolumeClaim) { c.Spec.VolumeMode = &block }), `spec.volumeMode: unsupported value "Block"`},
		{"pvc selector", pvc(func(c *PersistentVolumeClaim) { c.Spec.Selector = &LabelSelector{} }), "spec.selector: forbidden"},
		{"pv no source", pv(func(v *PersistentVolume) { v.Spec.Local = nil }), "spec: required: must specify a volume source (local or hostPath)"},
		{"pv relative path", pv(func(v *PersistentVolume) { v.Spec.Local.Path = "data" }), `spec.local.path: invalid value "data": must be an absolute path`},
		{"pv local without node", pv(func(v *PersistentVolume) { v.Spec.NodeAffinity = nil }), "spec.nodeAffinity: required"},
		{"pv reclaim", pv(func(v *PersistentVolume) { v.Spec.PersistentVolumeReclaimPolicy = "Recycle" }), `spec.persistentVolumeReclaimPolicy: unsupported value "Recycle"`},
		{"pv no capacity", pv(func(v *PersistentVolume) { v.Spec.Capacity = nil }), "spec.capacity[storage]: required"},
		{"pod claim name", pod(VolumeSource{PersistentVolumeClaim: &PersistentVolumeClaimVolumeSource{}}), "spec.volumes[0].persistentVolumeClaim.claimName: required"},
		{"pod two sources", pod(VolumeSource{EmptyDir: &EmptyDirVolumeSource{}, PersistentVolumeClaim: &PersistentVolumeClaimVolumeSource{ClaimName: "data"}}), "may not specify more than 1 volume type"},
		{"sc provisioner", &StorageClass{ObjectMeta: ObjectMeta{Name: "x"}, Provisioner: "ebs.csi.aws.com"}, `provisioner: unsupported value "ebs.csi.aws.com"`},
	} {
		err := Validate(tc.obj)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := Validate(pod(VolumeSource{PersistentVolumeClaim: &PersistentVolumeClaimVolumeSource{ClaimName: "data", ReadOnly: true}})); err != nil {
		t.Errorf("pod with a claim: %v", err)
	}
}

func TestStorageUpdateImmutable(t *testing.T) {
	objs, err := Decode([]byte(pvcYAML))
	if err != nil {
		t.Fatal(err)
	}
	old := objs[0].(*PersistentVolumeClaim)
	Default(old)
	bound := DeepCopy(old).(*PersistentVolumeClaim)
	bound.Spec.VolumeName = "pvc-1"
	if err := ValidateUpdate(bound, old); err != nil {
		t.Errorf("binding: %v", err)
	}
	grown := DeepCopy(bound).(*PersistentVolumeClaim)
	grown.Spec.Resources.Requests["storage"] = "1Gi"
	grown.Spec.VolumeName = "pvc-2"
	err = ValidateUpdate(grown, bound)
	if err == nil || !strings.Contains(err.Error(), "spec.resources: forbidden") || !strings.Contains(err.Error(), "spec.volumeName: forbidden") {
		t.Errorf("update: %v", err)
	}
}
