package manifests

import (
	"errors"
	"strings"
	"testing"
)

func validPod() *Pod {
	p := &Pod{
		TypeMeta:   TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec: PodSpec{
			Volumes: []Volume{{Name: "conf", VolumeSource: VolumeSource{ConfigMap: &ConfigMapVolumeSource{Name: "web-conf"}}}},
			Containers: []Container{{
				Name:         "web",
				Image:        "hello:1",
				Ports:        []ContainerPort{{Name: "http", ContainerPort: 8080}},
				Env:          []EnvVar{{Name: "LEVEL", Value: "2"}},
				VolumeMounts: []VolumeMount{{Name: "conf", MountPath: "/etc/web"}},
				Resources: ResourceRequirements{
					Requests: ResourceList{"cpu": "100m", "memory": "16Mi"},
					Limits:   ResourceList{"memory": "32Mi"},
				},
				ReadinessProbe: &Probe{HTTPGet: &HTTPGetAction{Port: FromString("http")}},
			}},
		},
	}
	Default(p)
	return p
}

func TestValidatePod(t *testing.T) {
	if err := Validate(validPod()); err != nil {
		t.Fatalf("valid pod: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(p *Pod)
		want   string // the whole error message
	}{
		{"no name", func(p *Pod) { p.Name = "" }, `metadata.name: required (or metadata.generateName)`},
		{"generateName", func(p *Pod) { p.Name, p.GenerateName = "", "web-" }, ``},
		{"bad name", func(p *Pod) { p.Name = "Web_1" }, `metadata.name: invalid value "Web_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`},
		{"bad namespace", func(p *Pod) { p.Namespace = "a.b" }, `metadata.namespace: invalid value "a.b": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`},
		{"bad label key", func(p *Pod) { p.Labels["-x"] = "y" }, `metadata.labels: invalid value "-x": name name part must be 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric character`},
		{"bad label value", func(p *Pod) { p.Labels["x"] = "a b" }, `metadata.labels[x]: invalid value "a b": must be 63 characters or less, alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric character`},
		{"bad annotation key", func(p *Pod) { p.Annotations = map[string]string{"a b": "any value"} }, `metadata.annotations: invalid value "a b": name name part must be 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric character`},
		{"huge annotations", func(p *Pod) { p.Annotations = map[string]string{"a": strings.Repeat("x", MaxAnnotationsBytes)} }, `metadata.annotations: too long: must have at most 262144 bytes`},
		{"no containers", func(p *Pod) { p.Spec.Containers = nil }, `spec.containers: required`},
		{"no image", func(p *Pod) { p.Spec.Containers[0].Image = "" }, `spec.containers[0].image: required`},
		{"duplicate container", func(p *Pod) {
			p.Spec.InitContainers = []Container{{Name: "web", Image: "i"}}
		}, `spec.containers[0].name: duplicate value "web"`},
		{"bad container name", func(p *Pod) { p.Spec.Containers[0].Name = "Web" }, `spec.containers[0].name: invalid value "Web": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`},
		{"port range", func(p *Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 70000 }, `spec.containers[0].ports[0].containerPort: invalid value 70000: must be between 1 and 65535, inclusive`},
		{"port zero", func(p *Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 0 }, `spec.containers[0].ports[0].containerPort: invalid value 0: must be between 1 and 65535, inclusive`},
		{"protocol", func(p *Pod) { p.Spec.Containers[0].Ports[0].Protocol = "tcp" }, `spec.containers[0].ports[0].protocol: unsupported value "tcp": supported values: "TCP", "UDP", "SCTP"`},
		{"port name", func(p *Pod) { p.Spec.Containers[0].Ports[0].Name = "8080" }, `spec.containers[0].ports[0].name: invalid value "8080": must contain at least one letter (a-z)`},
		{"env name", func(p *Pod) { p.Spec.Containers[0].Env[0].Name = "1X" }, `spec.containers[0].env[0].name: invalid value "1X": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit`},
		{"env two sources", func(p *Pod) {
			p.Spec.Containers[0].Env[0] = EnvVar{Name: "A", ValueFrom: &EnvVarSource{
				ConfigMapKeyRef: &KeySelector{Name: "c", Key: "k"}, SecretKeyRef: &KeySelector{Name: "s", Key: "k"}}}
		}, `spec.containers[0].env[0].valueFrom: forbidden: may not have more than one field specified at a time`},
		{"env value and source", func(p *Pod) {
			p.Spec.Containers[0].Env[0].ValueFrom = &EnvVarSource{FieldRef: &ObjectFieldSelector{FieldPath: "spec.nodeName"}}
		}, "spec.containers[0].env[0].valueFrom: forbidden: may not be specified when `value` is not empty"},
		{"fieldRef path", func(p *Pod) {
			p.Spec.Containers[0].Env[0] = EnvVar{Name: "A", ValueFrom: &EnvVarSource{FieldRef: &ObjectFieldSelector{FieldPath: "spec.bogus"}}}
		}, `spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: unsupported value "spec.bogus": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.podIP", "metadata.labels['<KEY>']", "metadata.annotations['<KEY>']"`},
		{"fieldRef label", func(p *Pod) {
			p.Spec.Containers[0].Env[0] = EnvVar{Name: "A", ValueFrom: &EnvVarSource{FieldRef: &ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}}
		}, ``},
		{"restartPolicy", func(p *Pod) { p.Spec.RestartPolicy = "Sometimes" }, `spec.restartPolicy: unsupported value "Sometimes": supported values: "Always", "OnFailure", "Never"`},
		{"bad quantity", func(p *Pod) { p.Spec.Containers[0].Resources.Limits["cpu"] = "lots" }, `spec.containers[0].resources.limits[cpu]: invalid value "lots": quantity "lots": invalid number (want a number with an optional suffix, e.g. 100m, 64Mi, 1.5G, 2e3)`},
		{"negative quantity", func(p *Pod) { p.Spec.Containers[0].Resources.Requests["cpu"] = "-1" }, `spec.containers[0].resources.requests[cpu]: invalid value "-1": must be greater than or equal to 0`},
		{"request above limit", func(p *Pod) { p.Spec.Containers[0].Resources.Requests["memory"] = "64Mi" }, `spec.containers[0].resources.requests[memory]: invalid value "64Mi": must be less than or equal to memory limit of 32Mi`},
		{"resource name", func(p *Pod) { p.Spec.Containers[0].Resources.Limits["gpu"] = "1" }, `spec.containers[0].resources.limits: invalid value "gpu": must be a standard resource (cpu, memory, ephemeral-storage, pods) or a prefixed name such as example.com/gpu`},
		{"extended resource", func(p *Pod) { p.Spec.Containers[0].Resources.Limits["example.com/gpu"] = "1" }, ``},
		{"volume without source", func(p *Pod) { p.Spec.Volumes[0].ConfigMap = nil }, `spec.volumes[0]: required: must specify a volume type (emptyDir, hostPath, configMap, secret or persistentVolumeClaim)`},
		{"volume two sources", func(p *Pod) { p.Spec.Volumes[0].EmptyDir = &EmptyDirVolumeSource{} }, `spec.volumes[0]: forbidden: may not specify more than 1 volume type`},
		{"duplicate volume", func(p *Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, Volume{Name: "conf", VolumeSource: VolumeSource{EmptyDir: &EmptyDirVolumeSource{}}})
		}, `spec.volumes[1].name: duplicate value "conf"`},
		{"mount unknown volume", func(p *Pod) { p.Spec.Containers[0].VolumeMounts[0].Name = "data" }, `spec.containers[0].volumeMounts[0].name: not found: no volume named "data" in spec.volumes`},
		{"projection path", func(p *Pod) {
			p.Spec.Volumes[0].ConfigMap.Items = []KeyToPath{{Key: "a", Path: "../etc/passwd"}}
		}, `spec.volumes[0].configMap.items[0].path: invalid value "../etc/passwd": must not contain '..'`},
		{"probe no handler", func(p *Pod) { p.Spec.Containers[0].ReadinessProbe.HTTPGet = nil }, `spec.containers[0].readinessProbe: required: must specify a handler type (exec, httpGet or tcpSocket)`},
		{"probe two handlers", func(p *Pod) {
			p.Spec.Containers[0].ReadinessProbe.TCPSocket = &TCPSocketAction{Port: FromInt(80)}
		}, `spec.containers[0].readinessProbe: forbidden: may not specify more than 1 handler type`},
		{"probe port", func(p *Pod) { p.Spec.Containers[0].ReadinessProbe.HTTPGet.Port = FromInt(0) }, `spec.containers[0].readinessProbe.httpGet.port: invalid value 0: must be between 1 and 65535, inclusive`},
		{"liveness success", func(p *Pod) {
			p.Spec.Containers[0].LivenessProbe = &Probe{Exec: &ExecAction{Command: []string{"true"}}, SuccessThreshold: 2}
		}, `spec.containers[0].livenessProbe.successThreshold: invalid value 2: must be 1`},
		{"runtimeClassName", func(p *Pod) { s := "Wasm!"; p.Spec.RuntimeClassName = &s }, `spec.runtimeClassName: invalid value "Wasm!": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`},
		{"nodeSelector", func(p *Pod) { p.Spec.NodeSelector = map[string]string{"zone": "eu west"} }, `spec.nodeSelector[zone]: invalid value "eu west": must be 63 characters or less, alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric character`},
		{"toleration operator", func(p *Pod) { p.Spec.Tolerations = []Toleration{{Key: "k", Operator: "Maybe"}} }, `spec.tolerations[0].operator: unsupported value "Maybe": supported values: "Equal", "Exists"`},
		{"toleration effect", func(p *Pod) { p.Spec.Tolerations = []Toleration{{Key: "k", Operator: "Exists", Effect: "NoWay"}} }, `spec.tolerations[0].effect: unsupported value "NoWay": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"`},
		{"toleration seconds", func(p *Pod) {
			s := int64(10)
			p.Spec.Tolerations = []Toleration{{Key: "k", Operator: "Exists", Effect: "NoSchedule", TolerationSeconds: &s}}
		}, `spec.tolerations[0].effect: invalid value "NoSchedule": effect must be NoExecute when tolerationSeconds is set`},
		{"toleration empty key", func(p *Pod) { p.Spec.Tolerations = []Toleration{{Operator: "Equal", Value: "x"}} }, `spec.tolerations[0].operator: invalid value "Equal": operator must be Exists when key is empty`},
		{"affinity operator", func(p *Pod) {
			p.Spec.Affinity = &Affinity{NodeAffinity: &NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &NodeSelector{
				NodeSelectorTerms: []NodeSelectorTerm{{MatchExpressions: []NodeSelectorRequirement{{Key: "zone", Operator: "Near"}}}}}}}
		}, `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator: unsupported value "Near": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"`},
		{"grace", func(p *Pod) { g := int64(-1); p.Spec.TerminationGracePeriodSeconds = &g }, `spec.terminationGracePeriodSeconds: invalid value -1: must be greater than or equal to 0`},
		{"several", func(p *Pod) { p.Name = ""; p.Spec.Containers[0].Image = "" }, `metadata.name: required (or metadata.generateName); spec.containers[0].image: required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validPod()
			tt.mutate(p)
			err := Validate(p)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want %s, got nil", tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("error\n got: %s\nwant: %s", err, tt.want)
			}
			var fe FieldErrors
			if !errors.As(err, &fe) || len(fe) == 0 {
				t.Fatalf("error is %T, want FieldErrors", err)
			}
		})
	}
}

func TestValidateOtherKinds(t *testing.T) {
	tests := []struct {
		name string
		obj  Object
		want string
	}{
		{"namespace ok", &Namespace{ObjectMeta: ObjectMeta{Name: "shop"}}, ``},
		{"namespace dotted", &Namespace{ObjectMeta: ObjectMeta{Name: "a.b"}}, `metadata.name: invalid value "a.b": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`},
		{"namespace with namespace", &Namespace{ObjectMeta: ObjectMeta{Name: "a", Namespace: "default"}}, `metadata.namespace: forbidden: Namespace is cluster-scoped and has no namespace`},
		{"node with namespace", &Node{ObjectMeta: ObjectMeta{Name: "n", Namespace: "x"}}, `metadata.namespace: forbidden: Node is cluster-scoped and has no namespace`},
		{"node taint", &Node{ObjectMeta: ObjectMeta{Name: "n"}, Spec: NodeSpec{Taints: []Taint{{Key: "k", Effect: "Sometimes"}, {Key: "k", Effect: "Sometimes"}}}},
			`spec.taints[0].effect: unsupported value "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"; spec.taints[1].effect: unsupported value "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"; spec.taints[1]: duplicate value: taints must be unique by key and effect`},
		{"node capacity", &Node{ObjectMeta: ObjectMeta{Name: "n"}, Status: NodeStatus{Capacity: ResourceList{"memory": "x"}, Conditions: []NodeCondition{{Type: "Ready", Status: "Yes"}}}},
			`status.capacity[memory]: invalid value "x": quantity "x": invalid number (want a number with an optional suffix, e.g. 100m, 64Mi, 1.5G, 2e3); status.conditions[0].status: unsupported value "Yes": supported values: "True", "False", "Unknown"`},
		{"configmap ok", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c", Namespace: "default"}, Data: map[string]string{"app.conf": "x", "LEVEL": "1"}}, ``},
		{"configmap key", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"a/b": "x"}}, `data: invalid value "a/b": a valid config key must consist of alphanumeric characters, '-', '_' or '.'`},
		{"configmap dotdot", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"..data": "x"}}, `data: invalid value "..data": must not be '.' or '..' or start with '..'`},
		{"configmap duplicate", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"a": "x"}, BinaryData: map[string][]byte{"a": {1}}}, `binaryData: invalid value "a": duplicate of key present in data`},
		{"configmap size", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"a": strings.Repeat("x", MaxConfigDataBytes), "b": "y"}}, `too long: data must have at most 1048576 bytes, has 1048577`},
		{"secret key", &Secret{ObjectMeta: ObjectMeta{Name: "s"}, Data: map[string][]byte{"a b": nil}}, `data: invalid value "a b": a valid config key must consist of alphanumeric characters, '-', '_' or '.'`},
		{"secret stringData", &Secret{ObjectMeta: ObjectMeta{Name: "s"}, StringData: map[string]string{"a:b": ""}}, `stringData: invalid value "a:b": a valid config key must consist of alphanumeric characters, '-', '_' or '.'`},
		{"tls secret", &Secret{ObjectMeta: ObjectMeta{Name: "s"}, Type: "kubernetes.io/tls", Data: map[string][]byte{"tls.crt": {1}}, StringData: map[string]string{"tls.key": "k"}}, ``},
		{"tls secret missing key", &Secret{ObjectMeta: ObjectMeta{Name: "s"}, Type: "kubernetes.io/tls", Data: map[string][]byte{"tls.crt": {1}}}, `data[tls.key]: required for a secret of type kubernetes.io/tls`},
		{"event ok", &Event{ObjectMeta: ObjectMeta{Name: "web.1", Namespace: "shop"}, InvolvedObject: ObjectReference{Kind: "Pod", Name: "web", Namespace: "shop"}, Type: EventWarning}, ``},
		{"event bad", &Event{ObjectMeta: ObjectMeta{Name: "a/b", Namespace: "shop"}, InvolvedObject: ObjectReference{Namespace: "other"}, Type: "Info"},
			`metadata.name: invalid value "a/b": may not contain '/' or '%'; involvedObject.kind: required; involvedObject.name: required; involvedObject.namespace: invalid value "other": does not match event.namespace; type: unsupported value "Info": supported values: "Normal", "Warning"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.obj)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("error\n got: %v\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestValidateUpdatePod(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *Pod)
		want   string
	}{
		{"image change", func(p *Pod) { p.Spec.Containers[0].Image = "hello:2" }, ``},
		{"labels and status", func(p *Pod) { p.Labels["v"] = "2"; p.Status.Phase = PodRunning }, ``},
		{"bind", func(p *Pod) { p.Spec.NodeName = "edge-1" }, ``},
		{"deadline set", func(p *Pod) { d := int64(60); p.Spec.ActiveDeadlineSeconds = &d }, ``},
		{"toleration added", func(p *Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, Toleration{Key: "k", Operator: "Exists"})
		}, ``},
		{"env change", func(p *Pod) { p.Spec.Containers[0].Env[0].Value = "3" },
			`spec: forbidden: pod updates may not change fields other than spec.containers[*].image, spec.initContainers[*].image, spec.activeDeadlineSeconds, spec.tolerations (only additions) and spec.nodeName (only from empty)`},
		{"container added", func(p *Pod) { p.Spec.Containers = append(p.Spec.Containers, Container{Name: "b", Image: "x"}) },
			`spec: forbidden: pod updates may not add or remove containers`},
		{"name change", func(p *Pod) { p.Name = "other" }, `metadata.name: forbidden: field is immutable`},
		{"invalid image", func(p *Pod) { p.Spec.Containers[0].Image = "" }, `spec.containers[0].image: required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := validPod()
			p := DeepCopy(old).(*Pod)
			tt.mutate(p)
			err := ValidateUpdate(p, old)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("error\n got: %v\nwant: %s", err, tt.want)
			}
		})
	}

	bound := validPod()
	bound.Spec.NodeName = "edge-1"
	d := int64(60)
	bound.Spec.ActiveDeadlineSeconds = &d
	bound.Spec.Tolerations = []Toleration{{Key: "k", Operator: "Exists"}}
	moved := DeepCopy(bound).(*Pod)
	moved.Spec.NodeName = "edge-2"
	longer := int64(120)
	moved.Spec.ActiveDeadlineSeconds = &longer
	moved.Spec.Tolerations = nil
	want := `spec.nodeName: forbidden: field is immutable once set; spec.activeDeadlineSeconds: forbidden: may not be increased; spec.tolerations[0]: forbidden: existing toleration may not be removed or changed`
	if err := ValidateUpdate(moved, bound); err == nil || err.Error() != want {
		t.Fatalf("error\n got: %v\nwant: %s", err, want)
	}
}

func TestValidateUpdateConfig(t *testing.T) {
	yes := true
	old := &ConfigMap{ObjectMeta: ObjectMeta{Name: "c", Namespace: "default"}, Data: map[string]string{"a": "1"}}
	changed := DeepCopy(old).(*ConfigMap)
	changed.Data["a"] = "2"
	if err := ValidateUpdate(changed, old); err != nil {
		t.Fatalf("mutable configmap update: %v", err)
	}
	old.Immutable = &yes
	changed.Immutable = &yes
	if err := ValidateUpdate(changed, old); err == nil || err.Error() != "data: forbidden: field is immutable when `immutable` is set" {
		t.Fatalf("immutable configmap update: %v", err)
	}
	sec := &Secret{ObjectMeta: ObjectMeta{Name: "s", Namespace: "default"}, Type: "Opaque"}
	sec2 := DeepCopy(sec).(*Secret)
	sec2.Type = "example.com/custom"
	if err := ValidateUpdate(sec2, sec); err == nil || err.Error() != "type: forbidden: field is immutable" {
		t.Fatalf("secret type change: %v", err)
	}
	if err := ValidateUpdate(sec, old); err == nil || !strings.HasPrefix(err.Error(), "kind: forbidden") {
		t.Fatalf("kind change: %v", err)
	}
}

func TestValidateTopologySpreadConstraints(t *testing.T) {
	p := validPod()
	p.Spec.TopologySpreadConstraints = []TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "site", WhenUnsatisfiable: DoNotSchedule, LabelSelector: &LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	if err := Validate(p); err != nil {
		t.Fatalf("valid constraint: %v", err)
	}
	p.Spec.TopologySpreadConstraints = []TopologySpreadConstraint{{MaxSkew: 0, WhenUnsatisfiable: "Maybe"}}
	want := `spec.topologySpreadConstraints[0].maxSkew: invalid value 0: must be greater than zero; ` +
		`spec.topologySpreadConstraints[0].topologyKey: required; ` +
		`spec.topologySpreadConstraints[0].whenUnsatisfiable: unsupported value "Maybe": supported values: "DoNotSchedule", "ScheduleAnyway"`
	if err := Validate(p); err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}
