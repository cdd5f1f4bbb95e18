package manifests

import (
	"testing"
)

func TestDefaultPod(t *testing.T) {
	objs, err := Decode([]byte(`apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  volumes:
  - {name: conf, configMap: {name: c}}
  - {name: keys, secret: {secretName: s, defaultMode: 0400}}
  containers:
  - name: latest
    image: hello
    ports: [{containerPort: 80}]
    readinessProbe: {httpGet: {port: 80}}
    env: [{name: N, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
  - {name: tagged, image: "registry:5000/hello:1.2", livenessProbe: {exec: {command: ["true"]}, periodSeconds: 3}}
  - {name: digest, image: "hello@sha256:abcd", resources: {limits: {cpu: 200m, memory: 8Mi}, requests: {memory: 4Mi}}}
  - {name: explicit, image: "hello:latest", imagePullPolicy: Never}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := objs[0].(*Pod)
	Default(p)
	s := p.Spec
	if p.Namespace != "default" || s.RestartPolicy != RestartAlways || *s.TerminationGracePeriodSeconds != 30 ||
		s.DNSPolicy != "ClusterFirst" || s.SchedulerName != "default-scheduler" {
		t.Fatalf("pod defaults: ns %q spec %+v", p.Namespace, s)
	}
	if *s.Volumes[0].ConfigMap.DefaultMode != 0644 || *s.Volumes[1].Secret.DefaultMode != 0400 {
		t.Errorf("volume modes: %+v", s.Volumes)
	}
	for i, want := range []string{"Always", "IfNotPresent", "IfNotPresent", "Never"} {
		if got := s.Containers[i].ImagePullPolicy; got != want {
			t.Errorf("container %s: imagePullPolicy %q, want %q", s.Containers[i].Name, got, want)
		}
	}
	c := s.Containers[0]
	if c.Ports[0].Protocol != "TCP" || c.TerminationMessagePath != "/dev/termination-log" || c.TerminationMessagePolicy != "File" {
		t.Errorf("container defaults: %+v", c)
	}
	if r := c.ReadinessProbe; r.TimeoutSeconds != 1 || r.PeriodSeconds != 10 || r.SuccessThreshold != 1 || r.FailureThreshold != 3 ||
		r.HTTPGet.Path != "/" || r.HTTPGet.Scheme != "HTTP" {
		t.Errorf("probe defaults: %+v %+v", r, r.HTTPGet)
	}
	if r := s.Containers[2].Resources.Requests; r["cpu"] != "200m" || r["memory"] != "4Mi" {
		t.Errorf("requests not defaulted from limits: %v", r)
	}
	if s.Containers[0].Resources.Requests != nil {
		t.Errorf("requests invented without limits: %v", s.Containers[0].Resources.Requests)
	}
	if s.Containers[1].LivenessProbe.PeriodSeconds != 3 {
		t.Errorf("set periodSeconds overwritten")
	}
	if c.Env[0].ValueFrom.FieldRef.APIVersion != "v1" {
		t.Errorf("fieldRef apiVersion not defaulted")
	}
	before := DeepCopy(p)
	Default(p)
	if !EqualJSON(before, p) {
		t.Error("Default is not idempotent")
	}
	if err := Validate(p); err != nil {
		t.Errorf("defaulted pod invalid: %v", err)
	}
}

func TestDefaultOtherKinds(t *testing.T) {
	ns := &Namespace{ObjectMeta: ObjectMeta{Name: "x"}}
	Default(ns)
	if ns.Namespace != "" || ns.Status.Phase != "Active" || ns.Kind != "Namespace" || ns.APIVersion != "v1" {
		t.Errorf("namespace: %+v", ns)
	}
	sec := &Secret{ObjectMeta: ObjectMeta{Name: "s", Namespace: "prod"}}
	Default(sec)
	if sec.Namespace != "prod" || sec.Type != "Opaque" {
		t.Errorf("secret: %+v", sec)
	}
	cm := &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}}
	Default(cm)
	if cm.Namespace != "default" {
		t.Errorf("configmap namespace %q", cm.Namespace)
	}
	node := &Node{ObjectMeta: ObjectMeta{Name: "n"}, Status: NodeStatus{Capacity: ResourceList{"cpu": "4"}}}
	Default(node)
	if node.Namespace != "" || node.Status.Allocatable["cpu"] != "4" {
		t.Errorf("node: %+v", node)
	}
	node.Status.Capacity["cpu"] = "8"
	if node.Status.Allocatable["cpu"] != "4" {
		t.Error("allocatable shares capacity's map")
	}
	Default(nil)
}

func TestDeepCopy(t *testing.T) {
	grace := int64(5)
	p := &Pod{ObjectMeta: ObjectMeta{Name: "p", Labels: map[string]string{"a": "b"}},
		Spec: PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []Container{{Name: "c", Image: "i"}}}}
	cp := DeepCopy(p).(*Pod)
	cp.Labels["a"] = "changed"
	*cp.Spec.TerminationGracePeriodSeconds = 9
	cp.Spec.Containers[0].Name = "x"
	if p.Labels["a"] != "b" || grace != 5 || p.Spec.Containers[0].Name != "c" {
		t.Fatalf("copy shares memory with the original: %+v", p)
	}
	if cp.Name != "p" {
		t.Fatalf("copy lost fields: %+v", cp)
	}
	if DeepCopy(nil) != nil {
		t.Fatal("DeepCopy(nil) != nil")
	}
}
