package manifests

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

const podHeader = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\nspec:\n  containers:\n  - name: app\n"

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown field", podHeader + "    imagee: x\n",
			`document 1 (Pod "broken"): spec.containers[0].imagee: unknown field "imagee"`},
		{"wrong type int", podHeader + "    image: x\n    ports:\n    - containerPort: http\n",
			`document 1 (Pod "broken"): spec.containers[0].ports[0].containerPort: expected integer, got string "http"`},
		{"several errors", podHeader + "    imagee: x\n    ports:\n    - containerPort: http\n",
			`document 1 (Pod "broken"): spec.containers[0].imagee: unknown field "imagee"; spec.containers[0].ports[0].containerPort: expected integer, got string "http"`},
		{"string from int", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: 2}\n",
			`document 1 (ConfigMap "settings"): data[level]: expected string, got integer 2`},
		{"string from bool", podHeader + "    image: x\n    env:\n    - name: A\n      value: true\n",
			`document 1 (Pod "broken"): spec.containers[0].env[0].value: expected string, got boolean true`},
		{"int32 overflow", podHeader + "    image: x\n    ports:\n    - containerPort: 4294967296\n",
			`document 1 (Pod "broken"): spec.containers[0].ports[0].containerPort: integer 4294967296 out of range`},
		{"float for int", podHeader + "    image: x\n    ports:\n    - containerPort: 80.5\n",
			`document 1 (Pod "broken"): spec.containers[0].ports[0].containerPort: expected integer, got number 80.5`},
		{"bool from string", podHeader + "    image: x\n    stdin: \"yes\"\n",
			`document 1 (Pod "broken"): spec.containers[0].stdin: expected boolean, got string "yes"`},
		{"object expected", "apiVersion: v1\nkind: Pod\nmetadata: broken\n",
			`document 1 (Pod): metadata: expected an object, got string "broken"`},
		{"list expected", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: {name: a}}\n",
			`document 1 (Pod "p"): spec.containers: expected a list, got object`},
		{"missing apiVersion", "kind: Pod\nmetadata: {name: p}\n",
			`document 1 (Pod "p"): apiVersion: required`},
		{"missing both", "metadata: {name: p}\n",
			`document 1: apiVersion: required; kind: required`},
		{"unsupported kind", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: d}\n",
			`document 1 (PodDisruptionBudget "d"): kind: PodDisruptionBudget (policy/v1) is not supported; supported kinds: ` + strings.Join(kindNames(), ", ") + ` (see docs/kinds.md)`},
		{"wrong apiVersion", "apiVersion: apps/v1\nkind: Pod\nmetadata: {name: d}\n",
			`document 1 (Pod "d"): apiVersion: "apps/v1" is not supported for kind Pod (use "v1")`},
		{"second document", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b, labelz: {}}\n",
			`document 2 (Namespace "b"): metadata.labelz: unknown field "labelz"`},
		{"not a mapping", "- a\n- b\n", `document 1: expected an object (a mapping), got list`},
		{"duplicate field", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, name: b}\n",
			`document 1 (Namespace "a"): metadata.name: duplicate field "name"`},
		{"bad quantity", podHeader + "    image: x\n    resources: {limits: {memory: 16MB}}\n",
			`document 1 (Pod "broken"): spec.containers[0].resources.limits[memory]: quantity "16MB": unknown suffix "MB" (want a number with an optional suffix, e.g. 100m, 64Mi, 1.5G, 2e3)`},
		{"bad base64", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: \"not base64!\"}\n",
			`document 1 (Secret "s"): data[k]: invalid base64 data: illegal base64 data at input byte 3`},
		{"bad time", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, creationTimestamp: yesterday}\n",
			`document 1 (Namespace "a"): metadata.creationTimestamp: expected an RFC 3339 time such as 2006-01-02T15:04:05Z, got "yesterday"`},
		{"int or string", podHeader + "    image: x\n    livenessProbe: {tcpSocket: {port: [1]}}\n",
			`document 1 (Pod "broken"): spec.containers[0].livenessProbe.tcpSocket.port: expected integer or string, got list`},
		{"case sensitive", podHeader + "    Image: x\n",
			`document 1 (Pod "broken"): spec.containers[0].Image: unknown field "Image"`},
		{"list item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: ok}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n  dta: {}\n",
			`document 1, items[1] (ConfigMap "c"): dta: unknown field "dta"`},
		{"list unknown field", "apiVersion: v1\nkind: List\nitemz: []\n",
			`document 1 (List): itemz: unknown field "itemz"`},
		{"yaml syntax", "apiVersion: v1\nkind: [\n", `document 1: yaml: line 2: did not find expected node content`},
		{"json unknown field", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"a","imagee":"x"}]}}`,
			`document 1 (Pod "j"): spec.containers[0].imagee: unknown field "imagee"`},
		{"json wrong type", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"},"data":{"a":1}}`,
			`document 1 (ConfigMap "j"): data[a]: expected string, got integer 1`},
		{"json syntax", `{"apiVersion":"v1",}`, `document 1: decode JSON: invalid character '}' looking for beginning of object key string`},
		{"invalid utf8", "apiVersion: v1\nkind: ConfigMap\ndata: {a: \"\xff\"}\n", `input is not valid UTF-8 (line 3, byte offset 42)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode succeeded with %d objects, want error %q", len(objs), tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("error\n got: %s\nwant: %s", err, tt.want)
			}
			if objs != nil {
				t.Fatalf("objects returned with an error: %v", objs)
			}
		})
	}
}

func TestDecodeRealManifests(t *testing.T) {
	data, err := os.ReadFile("testdata/pod-exported.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(data)
	if err != nil {
		t.Fatalf("decode exported pod: %v", err)
	}
	if len(objs) != 1 {
		t.Fatalf("got %d objects, want 1", len(objs))
	}
	pod := objs[0].(*Pod)
	c := pod.Spec.Containers[0]
	if pod.Namespace != "shop" || pod.Labels["tier"] != "frontend" || pod.ResourceVersion != "81234" {
		t.Errorf("metadata = %+v", pod.ObjectMeta)
	}
	if !pod.CreationTimestamp.Equal(time.Date(2024, 5, 2, 10, 11, 12, 0, time.UTC)) {
		t.Errorf("creationTimestamp = %v", pod.CreationTimestamp)
	}
	if !strings.Contains(pod.Annotations["kubectl.kubernetes.io/last-applied-configuration"], `"name":"web"`) {
		t.Errorf("annotations = %v", pod.Annotations)
	}
	if c.Ports[0].ContainerPort != 80 || c.ReadinessProbe.HTTPGet.Port != FromString("http") || c.LivenessProbe.TCPSocket.Port != FromInt(80) {
		t.Errorf("container ports/probes = %+v", c)
	}
	if c.Resources.Requests["cpu"] != "0.1" || c.Resources.Requests["cpu"].MilliValue() != 100 || c.Resources.Limits["memory"].Value() != 128<<20 {
		t.Errorf("resources = %+v", c.Resources)
	}
	if *pod.Spec.Volumes[0].ConfigMap.DefaultMode != 420 || pod.Spec.Volumes[0].ConfigMap.Name != "web-conf" {
		t.Errorf("volumes = %+v", pod.Spec.Volumes)
	}
	if pod.Status.Phase != PodRunning || pod.Status.PodIP != "10.244.1.5" || pod.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("status = %+v", pod.Status)
	}
	if err := Validate(pod); err != nil {
		t.Errorf("Validate exported pod: %v", err)
	}

	data, err = os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err = Decode(data)
	if err != nil {
		t.Fatalf("decode config: %v", err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetTypeMeta().Kind+"/"+o.GetObjectMeta().Name)
		if err := Validate(o); err != nil {
			t.Errorf("Validate %s: %v", o.GetObjectMeta().Name, err)
		}
	}
	if got, want := strings.Join(kinds, ","), "Namespace/shop,ConfigMap/web-conf,Secret/web-tls,Node/edge-7,Event/web.17c8a2b3"; got != want {
		t.Fatalf("kinds = %s, want %s", got, want)
	}
	cm := objs[1].(*ConfigMap)
	if cm.Data["LOG_LEVEL"] != "2" || !strings.HasPrefix(cm.Data["default.conf"], "server {") || string(cm.BinaryData["logo.png"][:4]) != "\x89PNG" {
		t.Errorf("configmap = %+v", cm)
	}
	sec := objs[2].(*Secret)
	if string(sec.Data["tls.crt"]) != "-----BEGIN-----" || sec.StringData["password"] != "s3cr3t" {
		t.Errorf("secret = %+v", sec)
	}
	node := objs[3].(*Node)
	if node.Status.Allocatable["pods"] != "110" || node.Status.Capacity["memory"].Value() != 3884052*1024 || node.Spec.Taints[0].Effect != "NoSchedule" {
		t.Errorf("node = %+v", node)
	}
	ev := objs[4].(*Event)
	if ev.Count != 1 || ev.InvolvedObject.Name != "web" || ev.Source.Component != "default-scheduler" {
		t.Errorf("event = %+v", ev)
	}
}

func TestDecodeExample(t *testing.T) {
	data, err := os.ReadFile("examples/hello.yaml")
	if err != nil {
		t.Skip("no example manifest:", err)
	}
	objs, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		Default(o)
		if err := Validate(o); err != nil {
			t.Errorf("%s: %v", o.GetObjectMeta().Name, err)
		}
	}
}

func TestDecodeJSONStream(t *testing.T) {
	in := `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}
	{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}`
	objs, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[1].GetObjectMeta().Name != "b" {
		t.Fatalf("objs = %v", objs)
	}
}

func TestDecodeJSONStrict(t *testing.T) {
	obj, err := DecodeJSONStrict([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","creationTimestamp":null},
		"spec":{"containers":[{"name":"a","image":"hello:latest","ports":[{"containerPort":8080}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p := obj.(*Pod); p.Spec.Containers[0].Ports[0].ContainerPort != 8080 || p.Name != "p" {
		t.Fatalf("pod = %+v", p)
	}
	for _, tt := range []struct{ in, want string }{
		{`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","imagee":"x"}]}}`,
			`Pod "p": spec.containers[0].imagee: unknown field "imagee"`},
		{`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}} {}`, `decode JSON: unexpected data after the object`},
		{`[1]`, `expected an object (a mapping), got list`},
		{`{"apiVersion":"v1","kind":"List","items":[]}`, `decode JSON: want exactly one object, got 0`},
		{"{\"kind\":\"\xff\"}", `kind: invalid value: not valid UTF-8 (byte offset 9)`},
		{"{\"metadata\":{\"labels\":{\"a\":\"ok\",\"app\":\"x\xc3\"}}}", `metadata.labels.app: invalid value: not valid UTF-8 (byte offset 40)`},
		{"{\"spec\":{\"containers\":[{},{\"env\":[{\"n\xffame\":1}]}]}}", `spec.containers[1].env[0]: invalid field name "n\ufffdame": not valid UTF-8 (byte offset 37)`},
	} {
		_, err := DecodeJSONStrict([]byte(tt.in))
		if err == nil || err.Error() != tt.want {
			t.Errorf("DecodeJSONStrict(%s) error = %v, want %s", tt.in, err, tt.want)
		}
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, in := range []string{"", "---\n", "# just a comment\n", "---\n---\n\n---\n", "null\n"} {
		objs, err := Decode([]byte(in))
		if err != nil || len(objs) != 0 {
			t.Errorf("Decode(%q) = %v, %v; want nothing", in, objs, err)
		}
	}
}

func TestDecodeAliasesAndMerge(t *testing.T) {
	in := `apiVersion: v1
kind: Pod
metadata:
  name: anchors
  labels: &labels {app: web}
  annotations: *labels
spec:
  containers:
  - &base
    name: a
    image: hello:1
    env: [{name: X, value: "1"}]
  - <<: *base
    name: b
`
	objs, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	p := objs[0].(*Pod)
	if p.Annotations["app"] != "web" || len(p.Spec.Containers) != 2 || p.Spec.Containers[1].Name != "b" || p.Spec.Containers[1].Image != "hello:1" || p.Spec.Containers[1].Env[0].Name != "X" {
		t.Fatalf("pod = %+v", p.Spec)
	}
}

func TestDecodeLimits(t *testing.T) {
	t.Run("alias bomb", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("x: &e {name: A, value: v}\n")
		b.WriteString("y: &c {name: c, image: i, env: [")
		for i := 0; i < 1000; i++ {
			b.WriteString("*e,")
		}
		b.WriteString("]}\napiVersion: v1\nkind: Pod\nmetadata: {name: bomb}\nspec:\n  containers: [")
		for i := 0; i < 1000; i++ {
			b.WriteString("*c,")
		}
		b.WriteString("]\n")
		_, err := Decode([]byte(b.String()))
		want := fmt.Sprintf(`document 1 (Pod "bomb"): YAML aliases expand to more than %d nodes`, MaxAliasExpansion)
		if err == nil || err.Error() != want {
			t.Fatalf("err = %v, want %s", err, want)
		}
	})
	t.Run("depth", func(t *testing.T) {
		in := "apiVersion: v1\nkind: Pod\nmetadata: {name: deep}\nspec: {containers: [{name: a, image: b, command: " +
			strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}]}\n"
		_, err := Decode([]byte(in))
		if err == nil || !strings.Contains(err.Error(), "spec.containers[0].command[0]: expected string, got list") {
			t.Fatalf("err = %v", err)
		}
		js := `{"apiVersion":"v1","kind":"Pod","metadata":` + strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100) + "}"
		_, err = Decode([]byte(js))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("nesting deeper than %d levels", MaxNestingDepth)) {
			t.Fatalf("json err = %v", err)
		}
	})
	t.Run("size", func(t *testing.T) {
		_, err := Decode(make([]byte, MaxInputBytes+1))
		if err == nil || !strings.Contains(err.Error(), "more than the limit") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("too many errors", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
		for i := 0; i < 50; i++ {
			fmt.Fprintf(&b, "f%d: 1\n", i)
		}
		_, err := Decode([]byte(b.String()))
		de, ok := err.(*DecodeError)
		if !ok || len(de.Errs) != maxErrorsPerObject+1 || !strings.HasSuffix(err.Error(), "too many errors, stopping") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDecodeRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		raw, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeJSONStrict(raw)
		if err != nil {
			t.Fatalf("re-decode %s: %v", raw, err)
		}
		if !EqualJSON(o, back) {
			t.Fatalf("round trip changed %s", raw)
		}
	}
}

func TestDecodeYAMLFlowAndDates(t *testing.T) {
	objs, err := Decode([]byte("{apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {released: 2024-01-02}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cm := objs[0].(*ConfigMap); cm.Data["released"] != "2024-01-02" {
		t.Fatalf("data = %v", cm.Data)
	}
}

func TestDecodeMergeForms(t *testing.T) {
	objs, err := Decode([]byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: m}
data:
  <<: [{a: "1", b: "1"}, {b: "2", c: "2"}]
  c: "3"
`))
	if err != nil {
		t.Fatal(err)
	}
	if d := objs[0].(*ConfigMap).Data; d["a"] != "1" || d["b"] != "1" || d["c"] != "3" || len(d) != 3 {
		t.Fatalf("merged data = %v (earlier maps and explicit keys win)", d)
	}
	_, err = Decode([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata:\n  <<: scalar\n"))
	want := `document 1 (ConfigMap "m"): data: merge key (<<) needs a mapping or a list of mappings, got string "scalar"`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	_, err = Decode([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata:\n  ? [a]\n  : b\n"))
	want = `document 1 (ConfigMap "m"): data: mapping key must be a scalar, got list`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func BenchmarkDecodeJSONStrict(b *testing.B) {
	data, err := os.ReadFile("testdata/pod-exported.yaml")
	if err != nil {
		b.Fatal(err)
	}
	objs, err := Decode(data)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := json.Marshal(objs[0])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeJSONStrict(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeListAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n- &p {apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, "k%d: v,", i)
	}
	b.WriteString("}}\n")
	for i := 0; i < 1000; i++ {
		b.WriteString("- *p\n")
	}
	_, err := Decode([]byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "YAML aliases expand to more than") {
		t.Fatalf("err = %v", err)
	}
	_, err = Decode([]byte("apiVersion: v2\nkind: List\nitems: []\n"))
	if err == nil || err.Error() != "document 1 (List): apiVersion: a List must have apiVersion v1" {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeMergeBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a: &a {")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&b, "k%d: v,", i)
	}
	b.WriteString("}\nb: &b {<<: [" + strings.Repeat("*a,", 300) + "]}\n")
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {<<: [" + strings.Repeat("*b,", 300) + "]}\n")
	start := time.Now()
	_, err := Decode([]byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "YAML aliases expand to more than") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("merge bomb took %v", d)
	}
}

// "emptyDir: {}", the usual way to ask for a scratch volume, is an emptyDir
// volume (an empty struct behind a pointer is kept, not dropped as empty).
func TestDecodeEmptyDirVolume(t *testing.T) {
	for _, in := range []string{
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: x, volumeMounts: [{name: v, mountPath: /v}]}]\n  volumes: [{name: v, emptyDir: {}}]\n",
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"x"}],"volumes":[{"name":"v","emptyDir":{}}]}}`,
	} {
		objs, err := Decode([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		pod := objs[0].(*Pod)
		if pod.Spec.Volumes[0].EmptyDir == nil {
			t.Fatalf("emptyDir: {} decoded to no emptyDir: %+v", pod.Spec.Volumes[0])
		}
		Default(pod)
		if err := Validate(pod); err != nil {
			t.Fatalf("validate: %v", err)
		}
	}
}
