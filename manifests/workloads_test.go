package manifests

import (
	"encoding/json"
	"strings"
	"testing"
)

const deploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  labels: {app: nginx}
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
`

func decodeOne(t *testing.T, text string) Object {
	t.Helper()
	objs, err := Decode([]byte(text))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(objs) != 1 {
		t.Fatalf("Decode: %d objects, want 1", len(objs))
	}
	Default(objs[0])
	return objs[0]
}

func TestDecodeDeploymentDefaults(t *testing.T) {
	d, ok := decodeOne(t, deploymentYAML).(*Deployment)
	if !ok {
		t.Fatalf("decoded %T, want *Deployment", d)
	}
	if err := Validate(d); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	s := d.Spec
	if d.Namespace != "default" || *s.Replicas != 3 || *s.RevisionHistoryLimit != 10 || *s.ProgressDeadlineSeconds != 600 {
		t.Errorf("defaults: ns=%q replicas=%d history=%d deadline=%d", d.Namespace, *s.Replicas, *s.RevisionHistoryLimit, *s.ProgressDeadlineSeconds)
	}
	if s.Strategy.Type != "RollingUpdate" || s.Strategy.RollingUpdate.MaxSurge.String() != "25%" || s.Strategy.RollingUpdate.MaxUnavailable.String() != "25%" {
		t.Errorf("strategy = %+v", s.Strategy)
	}
	c := s.Template.Spec.Containers[0]
	if s.Template.Spec.RestartPolicy != "Always" || c.ImagePullPolicy != "IfNotPresent" || c.Ports[0].Protocol != "TCP" {
		t.Errorf("template pod defaults not applied: %+v", s.Template.Spec)
	}
	// Defaulting is idempotent and survives a JSON round trip.
	cp := DeepCopy(d)
	Default(cp)
	if !EqualJSON(cp, d) {
		t.Error("Default is not idempotent")
	}
	back, err := FromJSON(mustJSON(t, d))
	if err != nil || !EqualJSON(back, d) {
		t.Errorf("FromJSON round trip: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestDecodeRecreateHasNoRollingUpdate(t *testing.T) {
	d := decodeOne(t, strings.Replace(deploymentYAML, "  replicas: 3\n", "  replicas: 3\n  strategy: {type: Recreate}\n", 1)).(*Deployment)
	if d.Spec.Strategy.RollingUpdate != nil {
		t.Errorf("Recreate got rollingUpdate %+v", d.Spec.Strategy.RollingUpdate)
	}
	if err := Validate(d); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeOtherWorkloads(t *testing.T) {
	rs := decodeOne(t, `apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: frontend, namespace: web}
spec:
  selector:
    matchExpressions:
    - {key: tier, operator: In, values: [frontend]}
  template:
    metadata: {labels: {tier: frontend}}
    spec:
      containers: [{name: php, image: "gcr.io/google_samples/gb-frontend:v3"}]
`).(*ReplicaSet)
	if *rs.Spec.Replicas != 1 || rs.Namespace != "web" {
		t.Errorf("replicaset defaults: replicas=%d ns=%q", *rs.Spec.Replicas, rs.Namespace)
	}
	if err := Validate(rs); err != nil {
		t.Errorf("Validate(rs): %v", err)
	}
	ds := decodeOne(t, `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: fluentd, namespace: kube-system}
spec:
  selector: {matchLabels: {name: fluentd}}
  template:
    metadata: {labels: {name: fluentd}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      containers:
      - name: fluentd
        image: quay.io/fluentd_elasticsearch/fluentd:v2.5.2
        resources: {limits: {memory: 200Mi}, requests: {cpu: 100m, memory: 200Mi}}
`).(*DaemonSet)
	if ds.Spec.UpdateStrategy.Type != "RollingUpdate" || ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.String() != "1" {
		t.Errorf("daemonset strategy = %+v", ds.Spec.UpdateStrategy)
	}
	if err := Validate(ds); err != nil {
		t.Errorf("Validate(ds): %v", err)
	}
	job := decodeOne(t, `apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  template:
    spec:
      containers:
      - name: pi
        image: perl:5.34.0
        command: ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"]
      restartPolicy: Never
  backoffLimit: 4
`).(*Job)
	if *job.Spec.Completions != 1 || *job.Spec.Parallelism != 1 || *job.Spec.BackoffLimit != 4 {
		t.Errorf("job defaults: %+v", job.Spec)
	}
	if err := Validate(job); err != nil {
		t.Errorf("Validate(job): %v", err)
	}
	// Once stored (uid set), the selector is generated from the uid.
	job.UID = "abc-123"
	Default(job)
	if job.Spec.Selector == nil || job.Spec.Selector.MatchLabels[ControllerUIDLabel] != "abc-123" || job.Spec.Template.Labels[JobNameLabel] != "pi" {
		t.Errorf("generated selector %+v, labels %v", job.Spec.Selector, job.Spec.Template.Labels)
	}
	if err := Validate(job); err != nil {
		t.Errorf("Validate(job with generated selector): %v", err)
	}
}

func TestValidateWorkloadErrors(t *testing.T) {
	cases := []struct {
		name, edit, want string
	}{
		{"missing image", "        image: nginx:1.25\n", "spec.template.spec.containers[0].image: required"},
		{"selector mismatch", "      labels:\n        app: nginx\n", "spec.template.metadata.labels: invalid value \"{app=other}\": `selector` does not match template `labels`"},
		{"missing selector", "  selector:\n    matchLabels:\n      app: nginx\n", "spec.selector: required"},
		{"negative replicas", "  replicas: 3\n", "spec.replicas: invalid value -1: must be greater than or equal to 0"},
		{"both zero", "  replicas: 3\n", "spec.strategy.rollingUpdate.maxUnavailable: invalid value \"0\": may not be 0 when `maxSurge` is 0"},
		{"bad percent", "  replicas: 3\n", "spec.strategy.rollingUpdate.maxUnavailable: invalid value \"150%\": must not be greater than 100%"},
		{"bad strategy", "  replicas: 3\n", "spec.strategy.type: unsupported value \"Blue\""},
		{"restart policy", "      containers:\n", "spec.template.spec.restartPolicy: unsupported value \"Never\": supported values: \"Always\""},
		{"bad operator", "  selector:\n    matchLabels:\n      app: nginx\n", "spec.selector.matchExpressions[0].operator: unsupported value \"Is\""},
	}
	repl := map[string]string{
		"missing image":     "",
		"selector mismatch": "      labels:\n        app: other\n",
		"missing selector":  "",
		"negative replicas": "  replicas: -1\n",
		"both zero":         "  replicas: 3\n  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}\n",
		"bad percent":       "  replicas: 3\n  strategy: {rollingUpdate: {maxUnavailable: 150%}}\n",
		"bad strategy":      "  replicas: 3\n  strategy: {type: Blue}\n",
		"restart policy":    "      restartPolicy: Never\n      containers:\n",
		"bad operator":      "  selector:\n    matchExpressions: [{key: app, operator: Is, values: [nginx]}]\n",
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := strings.Replace(deploymentYAML, c.edit, repl[c.name], 1)
			if text == deploymentYAML {
				t.Fatalf("edit %q did not apply", c.edit)
			}
			obj := decodeOne(t, text)
			err := Validate(obj)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestValidateJobRestartPolicy(t *testing.T) {
	job := decodeOne(t, `apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  template:
    spec:
      containers: [{name: a, image: busybox}]
`)
	err := Validate(job)
	if err == nil || !strings.Contains(err.Error(), `spec.template.spec.restartPolicy: required: supported values: "OnFailure", "Never"`) {
		t.Fatalf("Validate = %v", err)
	}
}

func TestValidateWorkloadUpdate(t *testing.T) {
	old := decodeOne(t, deploymentYAML).(*Deployment)
	n := DeepCopy(old).(*Deployment)
	n.Spec.Template.Spec.Containers[0].Image = "nginx:1.26"
	if err := ValidateUpdate(n, old); err != nil {
		t.Fatalf("image change: %v", err)
	}
	n.Spec.Selector.MatchLabels["tier"] = "web"
	n.Spec.Template.Labels["tier"] = "web"
	if err := ValidateUpdate(n, old); err == nil || !strings.Contains(err.Error(), "spec.selector: forbidden: field is immutable") {
		t.Fatalf("selector change: %v", err)
	}
}

func TestLabelSelectorAsSelector(t *testing.T) {
	s, err := LabelSelectorAsSelector(&LabelSelector{
		MatchLabels: map[string]string{"app": "web"},
		MatchExpressions: []LabelSelectorRequirement{
			{Key: "tier", Operator: "In", Values: []string{"a", "b"}},
			{Key: "env", Operator: "NotIn", Values: []string{"dev"}},
			{Key: "gpu", Operator: "Exists"},
			{Key: "legacy", Operator: "DoesNotExist"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	match := map[string]string{"app": "web", "tier": "b", "env": "prod", "gpu": ""}
	if !s.Matches(match) {
		t.Errorf("%s does not match %v", s, match)
	}
	for _, k := range []string{"app", "tier", "gpu"} {
		m := map[string]string{}
		for kk, v := range match {
			if kk != k {
				m[kk] = v
			}
		}
		if s.Matches(m) {
			t.Errorf("%s matches %v (without %s)", s, m, k)
		}
	}
	if s.Matches(map[string]string{"app": "web", "tier": "a", "gpu": "", "legacy": "y"}) {
		t.Error("DoesNotExist ignored")
	}
	if s.Matches(map[string]string{"app": "web", "tier": "a", "gpu": "", "env": "dev"}) {
		t.Error("NotIn ignored")
	}
	nothing, _ := LabelSelectorAsSelector(nil)
	if nothing.Matches(map[string]string{}) || nothing.Matches(map[string]string{"a": "b"}) {
		t.Error("nil selector matches")
	}
	everything, _ := LabelSelectorAsSelector(&LabelSelector{})
	if !everything.Matches(nil) {
		t.Error("empty selector does not match")
	}
	if _, err := LabelSelectorAsSelector(&LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "a", Operator: "In"}}}); err == nil {
		t.Error("In without values accepted")
	}
}

func TestGetControllerOf(t *testing.T) {
	d := decodeOne(t, deploymentYAML).(*Deployment)
	d.UID = "u1"
	ref, err := NewControllerRef(d)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pod{ObjectMeta: ObjectMeta{OwnerReferences: []OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "n", UID: "x"}, ref}}}
	got := GetControllerOf(p)
	if got == nil || got.UID != "u1" || got.Kind != "Deployment" || got.APIVersion != "apps/v1" {
		t.Fatalf("GetControllerOf = %+v", got)
	}
	p.OwnerReferences = p.OwnerReferences[:1]
	if GetControllerOf(p) != nil {
		t.Error("non-controller reference returned")
	}
}

func TestScaledValueFromIntOrPercent(t *testing.T) {
	for _, c := range []struct {
		v     IntOrString
		total int
		up    bool
		want  int
	}{
		{FromString("25%"), 6, true, 2}, {FromString("25%"), 6, false, 1},
		{FromString("25%"), 4, true, 1}, {FromInt(3), 10, false, 3}, {FromString("100%"), 7, false, 7},
	} {
		got, err := ScaledValueFromIntOrPercent(&c.v, c.total, c.up)
		if err != nil || got != c.want {
			t.Errorf("Scaled(%s, %d, %v) = %d, %v; want %d", c.v.String(), c.total, c.up, got, err, c.want)
		}
	}
}
