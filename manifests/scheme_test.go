package manifests

import (
	"strings"
	"testing"
)

func TestKindForResource(t *testing.T) {
	for in, want := range map[string]string{
		"pods": "Pod", "pod": "Pod", "po": "Pod", "Pod": "Pod", "cm": "ConfigMap", "secrets": "Secret",
		"ns": "Namespace", "no": "Node", "ev": "Event", "events": "Event", "configmaps.v1": "ConfigMap",
	} {
		k, err := KindForResource(in)
		if err != nil || k.Kind != want {
			t.Errorf("KindForResource(%q) = %v, %v; want %s", in, k.Kind, err, want)
		}
	}
	if _, err := KindForResource("widgets"); err == nil || err.Error() != `the server doesn't have a resource type "widgets"` {
		t.Errorf("unknown resource error = %v", err)
	}
	if len(Kinds()) != len(kinds) {
		t.Error("Kinds() is incomplete")
	}
}

func TestFromJSONAndSetKind(t *testing.T) {
	obj, err := FromJSON([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"b"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cm, ok := obj.(*ConfigMap); !ok || cm.Data["a"] != "b" {
		t.Fatalf("FromJSON = %#v", obj)
	}
	if _, err := FromJSON([]byte(`{"apiVersion":"v2","kind":"ConfigMap"}`)); err == nil || !strings.Contains(err.Error(), `use "v1"`) {
		t.Errorf("wrong apiVersion error = %v", err)
	}
	p := &Pod{}
	if err := SetKind(p); err != nil || p.Kind != "Pod" || p.APIVersion != "v1" {
		t.Errorf("SetKind: %v %+v", err, p.TypeMeta)
	}
	if FromInt(8).String() != "8" || FromString("http").String() != "http" {
		t.Error("IntOrString.String is wrong")
	}
}
