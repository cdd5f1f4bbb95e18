package manifests

import (
	"strings"
	"testing"
)

const hpaYAML = `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 60
  - type: Resource
    resource:
      name: memory
      target:
        type: AverageValue
        averageValue: 100Mi
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 120
      policies:
      - type: Pods
        value: 1
        periodSeconds: 60
`

func decodeHPA(t *testing.T, in string) (*HorizontalPodAutoscaler, error) {
	t.Helper()
	objs, err := Decode([]byte(in))
	if err != nil {
		return nil, err
	}
	Default(objs[0])
	if err := Validate(objs[0]); err != nil {
		return nil, err
	}
	return objs[0].(*HorizontalPodAutoscaler), nil
}

func TestDecodeHPA(t *testing.T) {
	h, err := decodeHPA(t, hpaYAML)
	if err != nil {
		t.Fatal(err)
	}
	if h.Namespace != DefaultNamespace || *h.Spec.MinReplicas != 2 || h.Spec.MaxReplicas != 10 || len(h.Spec.Metrics) != 2 {
		t.Fatalf("decoded: %+v", h.Spec)
	}
	b := h.Spec.Behavior
	// Set fields kept, the rest defaulted as Kubernetes does.
	if *b.ScaleDown.StabilizationWindowSeconds != 120 || *b.ScaleDown.SelectPolicy != MaxChangePolicySelect || len(b.ScaleDown.Policies) != 1 || b.ScaleDown.Policies[0].Type != PodsScalingPolicy {
		t.Fatalf("scaleDown: %+v", b.ScaleDown)
	}
	if *b.ScaleUp.StabilizationWindowSeconds != 0 || len(b.ScaleUp.Policies) != 2 {
		t.Fatalf("scaleUp defaults: %+v", b.ScaleUp)
	}
	for _, name := range []string{"hpa", "horizontalpodautoscalers", "HorizontalPodAutoscaler"} {
		if k, err := KindForResource(name); err != nil || k.Kind != "HorizontalPodAutoscaler" {
			t.Fatalf("%s resolves to %v, %v", name, k.Kind, err)
		}
	}
}

func TestHPADefaults(t *testing.T) {
	h, err := decodeHPA(t, `{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"a"},
		"spec":{"scaleTargetRef":{"kind":"ReplicaSet","name":"a"},"maxReplicas":3}}`)
	if err != nil {
		t.Fatal(err)
	}
	s := h.Spec
	if *s.MinReplicas != 1 {
		t.Errorf("minReplicas %d, want 1", *s.MinReplicas)
	}
	if len(s.Metrics) != 1 || s.Metrics[0].Resource.Name != "cpu" || *s.Metrics[0].Resource.Target.AverageUtilization != 80 {
		t.Errorf("default metric: %+v", s.Metrics)
	}
	if *s.Behavior.ScaleDown.StabilizationWindowSeconds != 300 || *s.Behavior.ScaleUp.StabilizationWindowSeconds != 0 {
		t.Errorf("default windows: up %d, down %d", *s.Behavior.ScaleUp.StabilizationWindowSeconds, *s.Behavior.ScaleDown.StabilizationWindowSeconds)
	}
	// Idempotent.
	before := DeepCopy(h)
	Default(h)
	if !EqualJSON(before, h) {
		t.Error("Default is not idempotent")
	}
}

func TestHPARefusals(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"minReplicas: 2", "minReplicas: 12", "spec.maxReplicas: invalid value 10: must be greater than or equal to `minReplicas` (12)"},
		{"minReplicas: 2", "minReplicas: 0", "spec.minReplicas: invalid value 0: must be greater than or equal to 1"},
		{"maxReplicas: 10", "maxReplicas: 0", "spec.maxReplicas: invalid value 0"},
		{"maxReplicas: 10", "maxReplicas: ten", "spec.maxReplicas: expected integer"},
		{"kind: Deployment", "kind: DaemonSet", "spec.scaleTargetRef.kind: DaemonSet cannot be scaled: it has no spec.replicas"},
		{"kind: Deployment", "kind: Gadget", `spec.scaleTargetRef.kind: "Gadget" is not a supported kind`},
		{"apiVersion: apps/v1\n    kind: Deployment", "apiVersion: apps/v2\n    kind: Deployment", `spec.scaleTargetRef.apiVersion: "apps/v2" is not supported for kind Deployment`},
		{"    name: web\n  minReplicas", "    name: Web_1\n  minReplicas", `spec.scaleTargetRef.name: invalid value "Web_1"`},
		{"  - type: Resource\n    resource:\n      name: cpu", "  - type: Pods\n    pods:\n      metric: {name: rps}\n      target: {type: AverageValue, averageValue: 10}\n  - type: Resource\n    resource:\n      name: cpu",
			`spec.metrics[0].type: unsupported value "Pods": only Resource metrics (cpu, memory) are supported`},
		{"  - type: Resource\n    resource:\n      name: cpu", "  - type: External\n    external:\n      metric: {name: queue}\n      target: {type: Value, value: 10}\n  - type: Resource\n    resource:\n      name: cpu",
			`spec.metrics[0].type: unsupported value "External"`},
		{"name: cpu", "name: gpu", `spec.metrics[0].resource.name: unsupported value "gpu": supported values: "cpu", "memory"`},
		{"name: memory", "name: cpu", `spec.metrics[1].resource.name: duplicate`},
		{"type: Utilization\n        averageUtilization: 60", "type: Utilization", "spec.metrics[0].resource.target.averageUtilization: required when type is Utilization"},
		{"averageUtilization: 60", "averageUtilization: 0", "spec.metrics[0].resource.target.averageUtilization: invalid value 0: must be greater than 0"},
		{"type: Utilization", "type: Value", `spec.metrics[0].resource.target.type: unsupported value "Value" for a Resource metric`},
		{"averageValue: 100Mi", "averageValue: -1Mi", `spec.metrics[1].resource.target.averageValue: invalid value "-1Mi": must be positive`},
		{"averageValue: 100Mi", "averageValue: lots", `spec.metrics[1].resource.target.averageValue`},
		{"averageUtilization: 60", "averageUtilization: 60\n        averageUtilisation: 70", `spec.metrics[0].resource.target.averageUtilisation: unknown field`},
		{"stabilizationWindowSeconds: 120", "stabilizationWindowSeconds: 4000", "spec.behavior.scaleDown.stabilizationWindowSeconds: invalid value 4000: must be from 0 to 3600"},
		{"stabilizationWindowSeconds: 120", "stabilizationWindowSeconds: 120\n      selectPolicy: Sometimes", `spec.behavior.scaleDown.selectPolicy: unsupported value "Sometimes"`},
		{"- type: Pods\n        value: 1", "- type: Replicas\n        value: 1", `spec.behavior.scaleDown.policies[0].type: unsupported value "Replicas"`},
		{"value: 1\n", "value: 0\n", "spec.behavior.scaleDown.policies[0].value: invalid value 0: must be greater than 0"},
		{"periodSeconds: 60", "periodSeconds: 1801", "spec.behavior.scaleDown.policies[0].periodSeconds: invalid value 1801"},
	} {
		if !strings.Contains(hpaYAML, tc.from) {
			t.Fatalf("fixture lacks %q", tc.from)
		}
		_, err := decodeHPA(t, strings.Replace(hpaYAML, tc.from, tc.to, 1))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.to, err, tc.want)
		}
	}
}

func TestScalableKind(t *testing.T) {
	want := map[string]bool{"Deployment": true, "ReplicaSet": true, "StatefulSet": true}
	for _, k := range Kinds() {
		if got := ScalableKind(k); got != want[k.Kind] {
			t.Errorf("ScalableKind(%s) = %v, want %v", k.Kind, got, want[k.Kind])
		}
	}
}
