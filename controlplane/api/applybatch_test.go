package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

func TestApplyBatch(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	objs := []json.RawMessage{
		encode(t, configMap("default", "a", "1")),
		encode(t, configMap("nowhere", "lost", "1")),
		json.RawMessage(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bad","namespace":"default"},"bogus":1}`),
		encode(t, configMap("default", "a", "2")), // a second time: refused
		encode(t, configMap("default", "b", "1")),
	}
	for i := range 40 {
		objs = append(objs, encode(t, configMap("default", fmt.Sprintf("many-%d", i), "1")))
	}
	items, err := e.c.ApplyBatch(ctx, objs, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ result, code, msg string }{
		{result: client.ResultCreated},
		{code: client.CodeNotFound, msg: `namespaces "nowhere" not found`},
		{code: client.CodeInvalid, msg: `unknown field "bogus"`},
		{code: client.CodeInvalid, msg: `objects[3]: ConfigMap "a" is also objects[0]`},
		{result: client.ResultCreated},
	}
	for i, it := range items {
		w := struct{ result, code, msg string }{result: client.ResultCreated}
		if i < len(want) {
			w = want[i]
		}
		if w.code != "" {
			if it.Error == nil || it.Error.Code != w.code || !strings.Contains(it.Error.Message, w.msg) || it.Result != "" {
				t.Errorf("item %d: %+v %v, want %s containing %q", i, it, it.Error, w.code, w.msg)
			}
			continue
		}
		if it.Error != nil || it.Result != w.result || it.ResourceVersion == "" {
			t.Errorf("item %d: %+v %v, want %s", i, it, it.Error, w.result)
			continue
		}
		// The resourceVersion is the stored one.
		name := "a"
		if i == 4 {
			name = "b"
		} else if i > 4 {
			name = fmt.Sprintf("many-%d", i-5)
		}
		obj, err := e.c.Get(ctx, "configmaps", "default", name)
		if err != nil || obj.GetObjectMeta().ResourceVersion != it.ResourceVersion || obj.(*manifests.ConfigMap).Data["v"] != "1" {
			t.Errorf("item %d: stored %v %v, reported rv %s", i, obj, err, it.ResourceVersion)
		}
	}
	for _, name := range []string{"lost", "bad"} {
		if _, err := e.st.Get(ctx, "configmaps", "nowhere", name); !client.IsNotFound(err) {
			t.Errorf("%s stored: %v", name, err)
		}
	}

	// Again, with one changed and a server dry run: nothing written.
	rev := e.lastRevision(t)
	items, err = e.c.ApplyBatch(ctx, []json.RawMessage{encode(t, configMap("default", "a", "1")), encode(t, configMap("default", "b", "9"))}, true)
	if err != nil {
		t.Fatal(err)
	}
	if items[0].Result != client.ResultUnchanged || items[1].Result != client.ResultConfigured || e.lastRevision(t) != rev {
		t.Errorf("dry run: %+v, revision %d -> %d", items, rev, e.lastRevision(t))
	}
	items, err = e.c.ApplyBatch(ctx, []json.RawMessage{encode(t, configMap("default", "a", "1")), encode(t, configMap("default", "b", "9"))}, false)
	if err != nil || items[0].Result != client.ResultUnchanged || items[1].Result != client.ResultConfigured {
		t.Fatalf("apply again: %+v %v", items, err)
	}
	if obj, err := e.c.Get(ctx, "configmaps", "default", "b"); err != nil || obj.(*manifests.ConfigMap).Data["v"] != "9" {
		t.Errorf("b after the batch: %v %v", obj, err)
	}
}

func TestApplyBatchInvalidRequests(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	too := make([]json.RawMessage, client.MaxApplyBatch+1)
	for i := range too {
		too[i] = encode(t, configMap("default", fmt.Sprintf("x-%d", i), "1"))
	}
	for _, tc := range []struct {
		name string
		objs []json.RawMessage
		want string
	}{
		{"empty", nil, "objects: Required value"},
		{"too many", too, "objects: Too many: 101, must have at most 100"},
	} {
		rev := e.lastRevision(t)
		_, err := e.c.ApplyBatch(ctx, tc.objs, false)
		wantCode(t, err, client.CodeInvalid, tc.want)
		if e.lastRevision(t) != rev {
			t.Errorf("%s: the bucket changed", tc.name)
		}
	}
	// An unknown field of the request itself.
	resp := e.call(t, client.VerbApplyBatch, []byte(`{"objects":[],"extra":true}`))
	if resp.Error == nil || resp.Error.Code != client.CodeInvalid || !strings.Contains(resp.Error.Message, `unknown field "extra"`) {
		t.Errorf("unknown request field: %+v", resp)
	}
}

// TestApplyKeepsManagedAnnotations: the annotations the deployment
// controller keeps on a Deployment survive an apply of the manifest that
// never had them, so that re-applying it changes nothing.
func TestApplyKeepsManagedAnnotations(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	d := func(note string) *manifests.Deployment {
		d := &manifests.Deployment{}
		d.Name, d.Namespace = "web", "default"
		d.Annotations = map[string]string{"note": note}
		d.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		d.Spec.Template.Labels = map[string]string{"app": "web"}
		d.Spec.Template.Spec.Containers = []manifests.Container{{Name: "main", Image: "hello:1"}}
		return d
	}
	_, created, err := e.c.Apply(ctx, d("1"))
	if err != nil {
		t.Fatal(err)
	}
	// The controller records the revision.
	created.GetObjectMeta().Annotations[manifests.RevisionAnnotation] = "1"
	if _, err := e.st.Update(ctx, created); err != nil {
		t.Fatal(err)
	}
	res, obj, err := e.c.Apply(ctx, d("1"))
	if err != nil || res != client.ResultUnchanged || obj.GetObjectMeta().Annotations[manifests.RevisionAnnotation] != "1" {
		t.Fatalf("re-apply: %s %v %v", res, obj.GetObjectMeta().Annotations, err)
	}
	// The user's annotations are the manifest's; the managed one stays.
	res, obj, err = e.c.Apply(ctx, d("2"))
	ann := obj.GetObjectMeta().Annotations
	if err != nil || res != client.ResultConfigured || ann["note"] != "2" || ann[manifests.RevisionAnnotation] != "1" || len(ann) != 2 {
		t.Fatalf("changed apply: %s %v %v", res, ann, err)
	}
	// A manifest that sets it wins.
	in := d("2")
	in.Annotations[manifests.RevisionAnnotation] = "7"
	if _, obj, err = e.c.Apply(ctx, in); err != nil || obj.GetObjectMeta().Annotations[manifests.RevisionAnnotation] != "7" {
		t.Fatalf("apply setting it: %v %v", obj.GetObjectMeta().Annotations, err)
	}
}
