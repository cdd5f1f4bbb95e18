package edgectl

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestParseCustomColumnsErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                                     "no custom columns given",
		"NAME":                                 `column 1 "NAME": want HEADER:JSONPATH`,
		"NAME:.metadata.name,NODE":             `column 2 "NODE": want HEADER:JSONPATH`,
		"NAME:.metadata.name,:.spec.x":         `column 2 ":.spec.x": want HEADER:JSONPATH`,
		"NAME:.metadata.name,NODE:spec.x":      `custom-columns: column 2 "NODE": jsonpath "spec.x": must start with '.'`,
		"NAME:.metadata.name,IMG:.spec.c[x]":   `column 2 "IMG": jsonpath ".spec.c[x]": index "x"`,
		"NAME:{.metadata.name},NODE:{.spec.n}": "",
	} {
		_, err := parseCustomColumns(spec)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", spec, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", spec, err, want)
		}
	}
	for content, want := range map[string]string{
		"NAME NODE\n.metadata.name\n":                 "2 headers but 1 JSONPaths",
		"NAME\n":                                      "want 2 lines (headers, then JSONPaths), found 1",
		"NAME NODE\n.metadata.name .spec.[\n":         `column 2 "NODE": jsonpath ".spec.["`,
		"\nNAME   NODE\n\n.metadata.name .spec.n\n\n": "",
	} {
		_, err := parseCustomColumnsTemplate("cols.txt", []byte(content))
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", content, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "cols.txt") {
			t.Errorf("%q: got %v, want %q naming the file", content, err, want)
		}
	}
}

func TestCustomColumnsPrint(t *testing.T) {
	one := int32(1)
	objs := []manifests.Object{
		&manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "a", Namespace: "default", Labels: map[string]string{"app": "x"}},
			Spec: manifests.PodSpec{NodeName: "n1", Containers: []manifests.Container{{Name: "c1", Image: "i1"}, {Name: "c2", Image: "i2"}}}},
		&manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "bb", Namespace: "default"}},
		&manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web"}, Spec: manifests.DeploymentSpec{Replicas: &one}},
	}
	cc, err := parseCustomColumns("NAME:.metadata.name,NODE:.spec.nodeName,IMAGES:.spec.containers[*].image,APP:.metadata.labels.app,REPLICAS:.spec.replicas")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := cc.print(&buf, objs, true, false); err != nil {
		t.Fatal(err)
	}
	want := "NAME   NODE     IMAGES   APP      REPLICAS\n" +
		"a      n1       i1,i2    x        <none>\n" +
		"bb     <none>   <none>   <none>   <none>\n" +
		"web    <none>   <none>   <none>   1\n"
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
	// Secrets are redacted unless asked.
	sec := &manifests.Secret{ObjectMeta: manifests.ObjectMeta{Name: "s"}, Data: map[string][]byte{"k": []byte("hunter2")}}
	cc, _ = parseCustomColumns("NAME:.metadata.name,K:.data.k")
	buf.Reset()
	if err := cc.print(&buf, []manifests.Object{sec}, false, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "aHVudGVyMg") || !strings.Contains(buf.String(), "<redacted: 7 bytes>") {
		t.Errorf("secret value printed: %q", buf.String())
	}
}

func TestGetCustomColumns(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)
	mustOK(t, ctl(cmManifest("alpha", "1")+"---\n"+cmManifest("beta", "2"), "apply", "-f", "-"), "apply")
	mustOK(t, ctl("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n", "apply", "-f", "-"), "apply namespace")
	mustOK(t, ctl(cmManifest("gamma", "3"), "-n", "other", "apply", "-f", "-"), "apply other")

	out := mustOK(t, ctl("", "get", "configmaps", "-o", "custom-columns=NAME:.metadata.name,LEVEL:.data.level,OWNER:.metadata.ownerReferences[0].name"), "get list")
	want := "NAME    LEVEL   OWNER\nalpha   1       <none>\nbeta    2       <none>\n"
	if out != want {
		t.Errorf("list:\n%s\nwant:\n%s", out, want)
	}
	out = mustOK(t, ctl("", "get", "cm", "beta", "-o", "custom-columns=NAME:.metadata.name,NS:.metadata.namespace"), "get one")
	if want := "NAME   NS\nbeta   default\n"; out != want {
		t.Errorf("single:\n%s\nwant:\n%s", out, want)
	}
	out = mustOK(t, ctl("", "get", "cm", "-A", "-o", "custom-columns=NS:.metadata.namespace,NAME:.metadata.name"), "get -A")
	if want := "NS        NAME\ndefault   alpha\ndefault   beta\nother     gamma\n"; out != want {
		t.Errorf("-A:\n%s\nwant:\n%s", out, want)
	}
	file := writeFileIn(t, t.TempDir(), "cols.txt", "NAME    LEVEL\n.metadata.name   {.data.level}\n")
	out = mustOK(t, ctl("", "get", "cm", "-o", "custom-columns-file="+file), "get file")
	if want := "NAME    LEVEL\nalpha   1\nbeta    2\n"; out != want {
		t.Errorf("file:\n%s\nwant:\n%s", out, want)
	}
	r := ctl("", "get", "cm", "-o", "custom-columns=NAME:.metadata.name,LEVEL")
	if r.code != 1 || !strings.Contains(r.stderr, `column 2 "LEVEL": want HEADER:JSONPATH`) {
		t.Errorf("bad spec: %+v", r)
	}
	r = ctl("", "get", "cm", "-o", "custom-columns-file="+filepath.Join(t.TempDir(), "missing"))
	if r.code != 1 || !strings.Contains(r.stderr, "custom-columns-file: open ") {
		t.Errorf("missing file: %+v", r)
	}
	r = ctl("", "get", "cm", "-n", "empty", "-o", "custom-columns=NAME:.metadata.name")
	if r.code != 0 || r.stdout != "" || r.stderr != "No resources found in empty namespace.\n" {
		t.Errorf("no objects: %+v", r)
	}
}

func TestGetWatchCustomColumns(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)
	mustOK(t, ctl(cmManifest("watched", "1"), "apply", "-f", "-"), "apply")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"--server", url, "get", "cm", "watched", "-w", "-o", "custom-columns=NAME:.metadata.name,LEVEL:.data.level"},
			IOStreams{In: strings.NewReader(""), Out: out, ErrOut: out})
	}()
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(out.String(), "watched") {
			return fmt.Errorf("no initial row: %q", out.String())
		}
		return nil
	})
	mustOK(t, ctl(cmManifest("watched", "2"), "apply", "-f", "-"), "apply 2")
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(out.String(), "watched   2\n") {
			return fmt.Errorf("no second row: %q", out.String())
		}
		return nil
	})
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("watch exit %d: %s", code, out.String())
	}
	if got := out.String(); !strings.HasPrefix(got, "NAME      LEVEL\nwatched   1\n") || strings.Count(got, "NAME") != 1 {
		t.Errorf("watch output, want one header then rows: %q", got)
	}
}

// FuzzCustomColumns checks that parsing any spec never panics and that an
// accepted one prints.
func FuzzCustomColumns(f *testing.F) {
	for _, s := range []string{"NAME:.metadata.name", "A:.a,B:{.b[*].c}", "X", ":", "A:.a[?(@.b==\"1\")].c,B:.x[0]"} {
		f.Add(s)
	}
	obj := &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "x", Labels: map[string]string{"a": "b"}}, Data: map[string]string{"k": "v"}}
	f.Fuzz(func(t *testing.T, spec string) {
		cc, err := parseCustomColumns(spec)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := cc.print(&buf, []manifests.Object{obj}, true, false); err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
	})
}
