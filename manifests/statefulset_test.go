package manifests

import (
	"strings"
	"testing"
)

const statefulSetYAML = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
  replicas: 3
  selector:
    matchLabels: {app: nginx}
  template:
    metadata:
      labels: {app: nginx}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
`

func TestDecodeStatefulSetDefaults(t *testing.T) {
	ss, ok := decodeOne(t, statefulSetYAML).(*StatefulSet)
	if !ok {
		t.Fatalf("decoded %T, want *StatefulSet", ss)
	}
	if err := Validate(ss); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	s := ss.Spec
	if *s.Replicas != 3 || s.PodManagementPolicy != OrderedReadyPodManagement || *s.RevisionHistoryLimit != 10 {
		t.Errorf("defaults: replicas=%d policy=%q history=%d", *s.Replicas, s.PodManagementPolicy, *s.RevisionHistoryLimit)
	}
	if s.UpdateStrategy.Type != RollingUpdateStatefulSetStrategyType || *s.UpdateStrategy.RollingUpdate.Partition != 0 || s.UpdateStrategy.RollingUpdate.MaxUnavailable != nil {
		t.Errorf("updateStrategy = %+v", s.UpdateStrategy)
	}
	if p := s.PersistentVolumeClaimRetentionPolicy; p.WhenDeleted != "Retain" || p.WhenScaled != "Retain" {
		t.Errorf("retention = %+v", p)
	}
	if c := s.VolumeClaimTemplates[0]; *c.Spec.StorageClassName != DefaultStorageClass || c.Status.Phase != "" {
		t.Errorf("claim template defaults: class %q, phase %q", *c.Spec.StorageClassName, c.Status.Phase)
	}
	vols := StatefulSetPodVolumes(ss, "web-1")
	if len(vols) != 1 || vols[0].Name != "www" || vols[0].PersistentVolumeClaim == nil || vols[0].PersistentVolumeClaim.ClaimName != "www-web-1" {
		t.Errorf("pod volumes = %+v", vols)
	}
	// Defaulting twice changes nothing.
	again := DeepCopy(ss)
	Default(again)
	if !EqualJSON(again, ss) {
		t.Error("Default is not idempotent")
	}
}

// Every refusal names the field.
func TestStatefulSetRefusals(t *testing.T) {
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", "  serviceName: nginx\n", "  serviceName: nginx\n  podManagement: Parallel\n", `spec.podManagement: unknown field "podManagement"`},
		{"policy", "  serviceName: nginx\n", "  serviceName: nginx\n  podManagementPolicy: Random\n", `spec.podManagementPolicy: unsupported value "Random": supported values: "OrderedReady", "Parallel"`},
		{"strategy", "  serviceName: nginx\n", "  serviceName: nginx\n  updateStrategy: {type: Recreate}\n", `spec.updateStrategy.type: unsupported value "Recreate"`},
		{"partition", "  serviceName: nginx\n", "  serviceName: nginx\n  updateStrategy: {rollingUpdate: {partition: -1}}\n", `spec.updateStrategy.rollingUpdate.partition: invalid value -1`},
		{"maxUnavailable", "  serviceName: nginx\n", "  serviceName: nginx\n  updateStrategy: {rollingUpdate: {maxUnavailable: 0}}\n", `spec.updateStrategy.rollingUpdate.maxUnavailable: invalid value "0": must be greater than 0`},
		{"onDelete", "  serviceName: nginx\n", "  serviceName: nginx\n  updateStrategy: {type: OnDelete, rollingUpdate: {partition: 1}}\n", `spec.updateStrategy.rollingUpdate: forbidden`},
		{"retention", "  serviceName: nginx\n", "  serviceName: nginx\n  persistentVolumeClaimRetentionPolicy: {whenScaled: Keep}\n", `spec.persistentVolumeClaimRetentionPolicy.whenScaled: unsupported value "Keep": supported values: "Retain", "Delete"`},
		{"ordinals", "  serviceName: nginx\n", "  serviceName: nginx\n  ordinals: {start: -2}\n", `spec.ordinals.start: invalid value -2`},
		{"serviceName", "  serviceName: nginx\n", "  serviceName: Nginx.svc\n", `spec.serviceName: invalid value "Nginx.svc"`},
		{"name", "  name: web\n", "  name: " + strings.Repeat("w", 53) + "\n", `metadata.name: invalid value "www`},
		{"dotted name", "  name: web\n", "  name: web.db\n", `metadata.name: invalid value "web.db"`},
		{"claim storage", "          storage: 1Gi\n", "          memory: 1Gi\n", `spec.volumeClaimTemplates[0].spec.resources.requests[storage]: required`},
		{"claim name", "      name: www\n    spec:", "      name: WWW\n    spec:", `spec.volumeClaimTemplates[0].metadata.name: invalid value "WWW"`},
		{"claim volumeName", "      accessModes: [ReadWriteOnce]\n", "      accessModes: [ReadWriteOnce]\n      volumeName: pv1\n", `spec.volumeClaimTemplates[0].spec.volumeName: forbidden`},
		{"mount of no volume", "        - name: www\n", "        - name: data\n", `spec.template.spec.containers[0].volumeMounts[0].name: not found`},
		{"restartPolicy", "      containers:\n", "      restartPolicy: Never\n      containers:\n", `spec.template.spec.restartPolicy: unsupported value "Never"`},
		{"selector", "    matchLabels: {app: nginx}\n", "    matchLabels: {app: other}\n", "`selector` does not match template `labels`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(statefulSetYAML, tc.old, tc.new, 1)
			if doc == statefulSetYAML {
				t.Fatalf("%q not in the manifest", tc.old)
			}
			objs, err := Decode([]byte(doc))
			if err == nil {
				Default(objs[0])
				err = Validate(objs[0])
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestStatefulSetUpdateRules(t *testing.T) {
	old := decodeOne(t, statefulSetYAML).(*StatefulSet)
	ok := DeepCopy(old).(*StatefulSet)
	*ok.Spec.Replicas = 5
	ok.Spec.Template.Spec.Containers[0].Image = "nginx:1.27"
	ok.Spec.UpdateStrategy.RollingUpdate.Partition = int32Ptr(2)
	ok.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = "Delete"
	if err := ValidateUpdate(ok, old); err != nil {
		t.Errorf("allowed update refused: %v", err)
	}
	for field, change := range map[string]func(*StatefulSet){
		"spec.serviceName":          func(s *StatefulSet) { s.Spec.ServiceName = "other" },
		"spec.podManagementPolicy":  func(s *StatefulSet) { s.Spec.PodManagementPolicy = ParallelPodManagement },
		"spec.volumeClaimTemplates": func(s *StatefulSet) { s.Spec.VolumeClaimTemplates[0].Spec.AccessModes = []string{ReadOnlyMany} },
		"spec.selector":             func(s *StatefulSet) { s.Spec.Selector.MatchLabels["tier"] = "x"; s.Spec.Template.Labels["tier"] = "x" },
	} {
		n := DeepCopy(old).(*StatefulSet)
		change(n)
		err := ValidateUpdate(n, old)
		if err == nil || !strings.Contains(err.Error(), field+": forbidden: field is immutable") {
			t.Errorf("%s: error %v", field, err)
		}
	}
}
