package edgectl

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

func samplePod() *manifests.Pod {
	p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "hello", Namespace: "default", ResourceVersion: "7"}}
	p.Spec.Containers = []manifests.Container{{Name: "hello", Image: "hello:v1"}}
	grace := int64(30)
	p.Spec.TerminationGracePeriodSeconds = &grace
	p.Status.Phase = "Running"
	return p
}

func TestPrintJSONSingleAndList(t *testing.T) {
	var buf bytes.Buffer
	if err := printObjects(&buf, outputJSON, []manifests.Object{samplePod()}, true); err != nil {
		t.Fatal(err)
	}
	var one map[string]any
	if err := json.Unmarshal(buf.Bytes(), &one); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if one["apiVersion"] != "v1" || one["kind"] != "Pod" || one["metadata"].(map[string]any)["name"] != "hello" || one["status"].(map[string]any)["phase"] != "Running" {
		t.Errorf("single object: %s", buf.String())
	}

	buf.Reset()
	cm := &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "c"}}
	if err := printObjects(&buf, outputJSON, []manifests.Object{samplePod(), cm}, false); err != nil {
		t.Fatal(err)
	}
	var list struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Items      []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(buf.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if list.APIVersion != "v1" || list.Kind != "List" || len(list.Items) != 2 || list.Items[1]["kind"] != "ConfigMap" {
		t.Errorf("list: %s", buf.String())
	}

	buf.Reset()
	if err := printObjects(&buf, outputJSON, nil, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"items": []`) {
		t.Errorf("empty list must have items []: %s", buf.String())
	}
}

func TestPrintYAML(t *testing.T) {
	var buf bytes.Buffer
	if err := printObjects(&buf, outputYAML, []manifests.Object{samplePod()}, true); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	for _, want := range []string{"apiVersion: v1\n", "kind: Pod\n", "  name: hello\n", "  terminationGracePeriodSeconds: 30\n", `  resourceVersion: "7"`} {
		if !strings.Contains(s, want) {
			t.Errorf("yaml lacks %q:\n%s", want, s)
		}
	}
	// The YAML decodes back into the same object.
	objs, err := manifests.Decode(buf.Bytes())
	if err != nil {
		t.Fatalf("decode printed yaml: %v\n%s", err, s)
	}
	if p, ok := objs[0].(*manifests.Pod); !ok || p.Spec.Containers[0].Image != "hello:v1" {
		t.Errorf("round trip: %#v", objs[0])
	}
}

func TestPrintNames(t *testing.T) {
	var buf bytes.Buffer
	objs := []manifests.Object{samplePod(), &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "settings"}}}
	if err := printObjects(&buf, outputName, objs, false); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "pod/hello\nconfigmap/settings\n" {
		t.Errorf("names: %q", buf.String())
	}
}

func TestValidOutput(t *testing.T) {
	for _, f := range []string{"", "wide", "json", "yaml", "name"} {
		if err := validOutput(f); err != nil {
			t.Errorf("%q: %v", f, err)
		}
	}
	if err := validOutput("xml"); err == nil {
		t.Error("xml accepted")
	}
}

func TestPrintJSONPath(t *testing.T) {
	other := samplePod()
	other.Name = "other"
	var buf bytes.Buffer
	if err := printObjects(&buf, "jsonpath={.items[*].metadata.name}", []manifests.Object{samplePod(), other}, false); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "hello other" {
		t.Errorf("list jsonpath: %q", buf.String())
	}
	buf.Reset()
	if err := printObjects(&buf, "jsonpath={.spec.containers[0].image}", []manifests.Object{samplePod()}, true); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "hello:v1" {
		t.Errorf("single jsonpath: %q", buf.String())
	}
	if err := validOutput("jsonpath={.a["); err == nil {
		t.Error("broken jsonpath accepted")
	}
	if err := validOutput("jsonpath={.metadata.name}"); err != nil {
		t.Error(err)
	}
}
