package manifests

import (
	"strings"
	"testing"
)

const rolloutDoc = `
apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: probe-v2}
spec:
  targetRef: {kind: DaemonSet, name: probe}
  template:
    metadata: {labels: {app: probe}}
    spec: {containers: [{name: c, image: "fake://run"}]}
  waves:
  - count: 2
    selector: {matchLabels: {site: a}}
  - count: 25%
  - {}
  healthGate: {readySeconds: 30}
  failurePolicy: {maxFailedPercent: 10, action: Rollback}
  offlinePolicy: {waitSeconds: 60}
`

func decodeRollout(t *testing.T, doc string) *Rollout {
	t.Helper()
	objs, err := Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return objs[0].(*Rollout)
}

func TestRolloutDecodeDefaultValidate(t *testing.T) {
	r := decodeRollout(t, rolloutDoc)
	k, err := KindForResource("ro")
	if err != nil || k.Kind != "Rollout" || !k.Namespaced {
		t.Fatalf("kind for ro: %+v %v", k, err)
	}
	Default(r)
	if r.Namespace != DefaultNamespace || *r.Spec.HealthGate.TimeoutSeconds != DefaultRolloutWaveTimeoutSeconds || r.Spec.Template.Spec.RestartPolicy != RestartAlways {
		t.Fatalf("defaults: %+v", r.Spec)
	}
	if err := Validate(r); err != nil {
		t.Fatal(err)
	}
	if w := r.Spec.Waves[1].Count; w == nil || !w.IsString || w.StrVal != "25%" {
		t.Fatalf("wave 2 count %+v", w)
	}
	if got := r.Spec.FailurePolicy.MaxFailed(45); got != 4 {
		t.Errorf("MaxFailed(45) with 10%% = %d, want 4", got)
	}
	if got := (RolloutFailurePolicy{}).MaxFailed(100); got != 0 {
		t.Errorf("default MaxFailed = %d, want 0", got)
	}
	cp := DeepCopy(r).(*Rollout)
	cp.Spec.Template.Spec.Containers[0].Image = "fake://exit/1"
	if err := ValidateUpdate(cp, r); err == nil || !strings.Contains(err.Error(), "spec.template: forbidden") {
		t.Errorf("template change: %v", err)
	}
	cp = DeepCopy(r).(*Rollout)
	cp.Spec.OfflinePolicy.WaitSeconds = 5
	if err := ValidateUpdate(cp, r); err != nil {
		t.Errorf("policy change: %v", err)
	}
}

func TestRolloutValidateErrors(t *testing.T) {
	r := decodeRollout(t, strings.NewReplacer(
		"kind: DaemonSet,", "kind: StatefulSet,",
		"count: 25%", "count: 250%",
		"action: Rollback", "action: Retry",
		"waitSeconds: 60", "waitSeconds: -1",
		"readySeconds: 30", "readySeconds: -2",
	).Replace(rolloutDoc))
	err := Validate(r)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"spec.targetRef.kind", "spec.waves[1].count", "spec.failurePolicy.action", "spec.offlinePolicy.waitSeconds", "spec.healthGate.readySeconds"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
	if _, err := Decode([]byte(strings.Replace(rolloutDoc, "waitSeconds: 60", "waitSecs: 60", 1))); err == nil || !strings.Contains(err.Error(), "waitSecs") {
		t.Errorf("unknown field: %v", err)
	}
}

func TestRolloutDeploymentTarget(t *testing.T) {
	doc := strings.Replace(rolloutDoc, "kind: DaemonSet,", "kind: Deployment,", 1)
	r := decodeRollout(t, doc)
	Default(r)
	err := Validate(r)
	if err == nil || !strings.Contains(err.Error(), "spec.waves[0].selector: forbidden") {
		t.Fatalf("selector on a Deployment wave: %v", err)
	}
	r.Spec.Waves[0].Selector = nil
	if err := Validate(r); err != nil {
		t.Fatalf("deployment rollout without selectors: %v", err)
	}
	// Pausing and resuming are updates of an existing rollout.
	cp := DeepCopy(r).(*Rollout)
	cp.Spec.Paused = true
	cp.Annotations = map[string]string{RolloutResumedAtAnnotation: "2026-01-01T00:00:00Z"}
	if err := ValidateUpdate(cp, r); err != nil {
		t.Errorf("pause: %v", err)
	}
	cp.Spec.TargetRef.Kind = "DaemonSet"
	if err := ValidateUpdate(cp, r); err == nil || !strings.Contains(err.Error(), "spec.targetRef: forbidden") {
		t.Errorf("target change: %v", err)
	}
}
