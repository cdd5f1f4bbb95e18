package manifests

import (
	"fmt"
	"strings"
	"testing"
)

func limitsPod() *Pod {
	p := &Pod{Spec: PodSpec{Containers: []Container{{Name: "main", Image: "hello"}}}}
	p.Name = "p"
	Default(p)
	return p
}

func TestValidateCountLimits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(p *Pod)
		want   string
	}{
		{"labels", func(p *Pod) {
			p.Labels = map[string]string{}
			for i := range MaxLabels + 1 {
				p.Labels[fmt.Sprintf("k%d", i)] = "v"
			}
		}, "metadata.labels: too many: 1001 items, must have at most 1000"},
		{"node selector", func(p *Pod) {
			p.Spec.NodeSelector = map[string]string{}
			for i := range MaxLabels + 1 {
				p.Spec.NodeSelector[fmt.Sprintf("k%d", i)] = "v"
			}
		}, "spec.nodeSelector: too many: 1001 items"},
		{"containers", func(p *Pod) {
			for i := range MaxContainers {
				p.Spec.InitContainers = append(p.Spec.InitContainers, Container{Name: fmt.Sprintf("i%d", i), Image: "x"})
			}
		}, "spec.containers: too many: 101 items, must have at most 100"},
		{"volumes", func(p *Pod) {
			for i := range MaxVolumes + 1 {
				p.Spec.Volumes = append(p.Spec.Volumes, Volume{Name: fmt.Sprintf("v%d", i), VolumeSource: VolumeSource{EmptyDir: &EmptyDirVolumeSource{}}})
			}
		}, "spec.volumes: too many: 257 items, must have at most 256"},
		{"env", func(p *Pod) {
			p.Spec.Containers[0].Env = make([]EnvVar, MaxEnv+1)
		}, "spec.containers[0].env: too many: 1001 items, must have at most 1000"},
		{"ports", func(p *Pod) {
			p.Spec.Containers[0].Ports = make([]ContainerPort, MaxPorts+1)
		}, "spec.containers[0].ports: too many: 257 items, must have at most 256"},
		{"args", func(p *Pod) {
			p.Spec.Containers[0].Args = make([]string, MaxArgs+1)
		}, "spec.containers[0].args: too many: 4097 items, must have at most 4096"},
	} {
		p := limitsPod()
		tc.mutate(p)
		err := Validate(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// At the limits, everything is accepted.
	p := limitsPod()
	p.Labels = map[string]string{}
	for i := range MaxLabels {
		p.Labels[fmt.Sprintf("k%d", i)] = "v"
	}
	for i := range MaxEnv {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, EnvVar{Name: fmt.Sprintf("E%d", i)})
	}
	if err := Validate(p); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
}

func TestValidateCapsErrorsAndValues(t *testing.T) {
	p := limitsPod()
	for range 500 {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, EnvVar{Name: "="})
	}
	p.Spec.Containers[0].Image = ""
	err := Validate(p)
	fe, ok := err.(FieldErrors)
	if !ok || len(fe) != maxReportedErrors+1 || !strings.HasPrefix(fe[maxReportedErrors].Reason, "and ") {
		t.Fatalf("errors: %d, last %v", len(fe), fe[len(fe)-1])
	}
	p = limitsPod()
	p.Labels = map[string]string{"a": strings.Repeat("v", 1<<20)}
	if err := Validate(p); err == nil || len(err.Error()) > 500 {
		t.Fatalf("long value repeated in full: %d bytes", len(err.Error()))
	}
}

func TestDecodeListLimit(t *testing.T) {
	items := strings.TrimSuffix(strings.Repeat(`{"name":"c","image":"x"},`, MaxListItems+1), ",")
	in := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[` + items + `]}}`
	_, err := DecodeJSONStrict([]byte(in))
	if want := "decode JSON: spec.containers: too many: more than 10000 items"; err == nil || err.Error() != want {
		t.Fatalf("JSON: %v, want %s", err, want)
	}
	yamlItems := strings.Repeat("  - {name: c, image: x}\n", MaxListItems+1)
	_, err = Decode([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n containers:\n" + yamlItems))
	if want := `document 1 (Pod "p"): spec.containers: too many: 10001 items, must have at most 10000`; err == nil || err.Error() != want {
		t.Fatalf("YAML: %v, want %s", err, want)
	}
	deep := strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70)
	_, err = DecodeJSONStrict([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","annotations":{"x":` + deep + `}}}`))
	if err == nil || !strings.Contains(err.Error(), "metadata.annotations.x.a.a.") || !strings.HasSuffix(err.Error(), "nesting deeper than 64 levels") {
		t.Fatalf("deep JSON: %v", err)
	}
}

func TestInvalidUTF8NamesTheField(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{\"a\":[\"ok\",{\"b\":\"\xff\"}]}", "a[1].b: invalid value: not valid UTF-8 (byte offset 17)"},
		{"{\"a\":{\"\xfe\":1}}", `a: invalid field name "\ufffd": not valid UTF-8 (byte offset 7)`},
		{"\"\xff\"", "input is not valid UTF-8 (line 1, byte offset 1)"},
		{"a: \xff\n", "input is not valid UTF-8 (line 1, byte offset 3)"},
		{"{\"a\":\"ok\"} \xff", "input is not valid UTF-8 (line 1, byte offset 11)"},
	} {
		err := InvalidUTF8([]byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("InvalidUTF8(%q) = %v, want %s", tc.in, err, tc.want)
		}
	}
	if err := InvalidUTF8([]byte(`{"a":"é"}`)); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeDocumentLimit(t *testing.T) {
	ns := "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"
	want := "more than 10000 documents or objects in one input: split it into several files"
	for name, in := range map[string]string{
		"empty documents": strings.Repeat("---\n", MaxDocuments+1),
		"YAML objects":    strings.Repeat(ns+"---\n", MaxDocuments+1),
		"JSON objects":    strings.Repeat(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}`, MaxDocuments+1),
		"List items":      "apiVersion: v1\nkind: List\nitems:\n" + strings.Repeat("- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n", MaxDocuments+1),
	} {
		if _, err := Decode([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("%s: %v", name, err)
		}
	}
	objs, err := Decode([]byte(strings.Repeat(ns+"---\n", MaxDocuments-1) + ns))
	if err != nil || len(objs) != MaxDocuments {
		t.Fatalf("at the limit: %d objects, %v", len(objs), err)
	}
}
