package edgectl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadSourcesDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b.yaml"), "b")
	writeFile(t, filepath.Join(dir, "a.json"), "a")
	writeFile(t, filepath.Join(dir, "c.yml"), "c")
	writeFile(t, filepath.Join(dir, "notes.txt"), "x")
	writeFile(t, filepath.Join(dir, "sub", "d.yaml"), "d")
	names := func(recursive bool) string {
		srcs, err := readSources(strings.NewReader(""), []string{dir}, recursive)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range srcs {
			out = append(out, string(s.Data))
		}
		return strings.Join(out, "")
	}
	if got := names(false); got != "abc" {
		t.Errorf("non-recursive: %q", got)
	}
	if got := names(true); got != "abcd" {
		t.Errorf("recursive: %q", got)
	}
	if _, err := readSources(strings.NewReader(""), []string{filepath.Join(dir, "missing.yaml")}, false); err == nil {
		t.Error("missing file accepted")
	}
	srcs, err := readSources(strings.NewReader("from stdin"), []string{"-"}, false)
	if err != nil || len(srcs) != 1 || srcs[0].Name != "STDIN" || string(srcs[0].Data) != "from stdin" {
		t.Errorf("stdin: %+v %v", srcs, err)
	}
}

const twoDocs = `apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: "1"}
---
apiVersion: v1
kind: Namespace
metadata: {name: edge}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other, namespace: edge}
`

func TestDecodeResolveAndOrder(t *testing.T) {
	objs, err := decodeSources([]manifestSource{{Name: "app.yaml", Data: []byte(twoDocs)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := resolveNamespaces(objs, "default", false); err != nil {
		t.Fatal(err)
	}
	if err := validateObjects(objs); err != nil {
		t.Fatal(err)
	}
	namespacesFirst(objs)
	var got []string
	for _, so := range objs {
		got = append(got, objectName(so.Object)+"@"+so.Object.GetObjectMeta().Namespace)
	}
	if strings.Join(got, " ") != "namespace/edge@ configmap/settings@default configmap/other@edge" {
		t.Errorf("order: %v", got)
	}

	objs, _ = decodeSources([]manifestSource{{Name: "app.yaml", Data: []byte(twoDocs)}})
	err = resolveNamespaces(objs, "prod", true)
	if err == nil || !strings.Contains(err.Error(), `"edge" does not match the namespace "prod"`) {
		t.Errorf("explicit -n mismatch: %v", err)
	}
}

func TestDecodeErrorNamesFileAndField(t *testing.T) {
	bad := "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  containers:\n  - name: c\n    imagee: x\n"
	_, err := decodeSources([]manifestSource{{Name: "ok.yaml", Data: []byte(twoDocs)}, {Name: "bad.yaml", Data: []byte(bad)}})
	if err == nil || !strings.HasPrefix(err.Error(), "bad.yaml: ") || !strings.Contains(err.Error(), "spec.containers[0].imagee") {
		t.Errorf("got %v", err)
	}
}

func TestValidateObjectsNamesObject(t *testing.T) {
	objs, err := decodeSources([]manifestSource{{Name: "p.yaml", Data: []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: noimage}\nspec:\n  containers:\n  - name: c\n")}})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := resolveNamespaces(objs, "default", false); err != nil {
		t.Fatal(err)
	}
	err = validateObjects(objs)
	if err == nil || !strings.Contains(err.Error(), `p.yaml: Pod "noimage" is invalid`) || !strings.Contains(err.Error(), "image") {
		t.Errorf("got %v", err)
	}
}
