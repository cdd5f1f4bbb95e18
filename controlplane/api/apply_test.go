package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

func TestApplyCreateUnchangedConfigured(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	res, obj, err := e.c.Apply(ctx, configMap("", "settings", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if res != client.ResultCreated || obj.GetObjectMeta().Namespace != "default" || obj.GetObjectMeta().UID == "" {
		t.Fatalf("first apply: %s %+v", res, obj.GetObjectMeta())
	}
	rv1 := obj.GetObjectMeta().ResourceVersion
	res, obj, err = e.c.Apply(ctx, configMap("default", "settings", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if res != client.ResultUnchanged || obj.GetObjectMeta().ResourceVersion != rv1 {
		t.Fatalf("same apply: %s rv %s (was %s)", res, obj.GetObjectMeta().ResourceVersion, rv1)
	}
	res, obj, err = e.c.Apply(ctx, configMap("default", "settings", "2"))
	if err != nil {
		t.Fatal(err)
	}
	if res != client.ResultConfigured || obj.(*manifests.ConfigMap).Data["v"] != "2" || obj.GetObjectMeta().ResourceVersion == rv1 {
		t.Fatalf("changed apply: %s %+v", res, obj)
	}
	// A stale resourceVersion is a conflict.
	stale := configMap("default", "settings", "3")
	stale.ResourceVersion = rv1
	_, _, err = e.c.Apply(ctx, stale)
	wantCode(t, err, client.CodeConflict, `Operation cannot be fulfilled on configmaps "settings": the object has been modified; please apply your changes to the latest version and try again`)
}

func TestApplyKeepsStatusAndBinding(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	in := pod("web", "hello:1")
	in.Status.Phase = "Running" // ignored on create
	_, created, err := e.c.Apply(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	p := created.(*manifests.Pod)
	if p.Status.Phase != "Pending" || p.Spec.RestartPolicy != "Always" {
		t.Fatalf("created pod: status %+v restartPolicy %q", p.Status, p.Spec.RestartPolicy)
	}
	// A controller binds it and the agent reports status.
	p.Spec.NodeName = "node-a"
	bound, err := e.st.Update(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	bp := bound.(*manifests.Pod)
	bp.Status.Phase = "Running"
	if _, err := e.st.Update(ctx, bp); err != nil {
		t.Fatal(err)
	}
	// Re-applying the manifest (no nodeName) changes nothing.
	res, obj, err := e.c.Apply(ctx, pod("web", "hello:1"))
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*manifests.Pod)
	if res != client.ResultUnchanged || got.Spec.NodeName != "node-a" || got.Status.Phase != "Running" {
		t.Fatalf("re-apply: %s node %q phase %q", res, got.Spec.NodeName, got.Status.Phase)
	}
	// Changing the image is an allowed update; binding and status stay.
	res, obj, err = e.c.Apply(ctx, pod("web", "hello:2"))
	if err != nil {
		t.Fatal(err)
	}
	got = obj.(*manifests.Pod)
	if res != client.ResultConfigured || got.Spec.Containers[0].Image != "hello:2" || got.Spec.NodeName != "node-a" || got.Status.Phase != "Running" {
		t.Fatalf("image change: %s %+v %+v", res, got.Spec, got.Status)
	}
	if got.Generation != bound.GetObjectMeta().Generation+1 {
		t.Fatalf("generation %d after a spec change, want %d", got.Generation, bound.GetObjectMeta().Generation+1)
	}
	// Changing an immutable field is rejected by ValidateUpdate.
	changed := pod("web", "hello:2")
	changed.Spec.Containers[0].Name = "other"
	_, _, err = e.c.Apply(ctx, changed)
	wantCode(t, err, client.CodeInvalid, "")
	if !strings.HasPrefix(err.Error(), `Pod "web" is invalid: `) {
		t.Fatalf("message %q", err)
	}
}

func TestApplyLabelsReplaced(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	cm := configMap("default", "l", "1")
	cm.Labels = map[string]string{"a": "1", "b": "2"}
	if _, _, err := e.c.Apply(ctx, cm); err != nil {
		t.Fatal(err)
	}
	cm.Labels = map[string]string{"a": "1"}
	res, obj, err := e.c.Apply(ctx, cm)
	if err != nil {
		t.Fatal(err)
	}
	if res != client.ResultConfigured || len(obj.GetObjectMeta().Labels) != 1 || obj.GetObjectMeta().Generation != 1 {
		t.Fatalf("label change: %s %+v", res, obj.GetObjectMeta())
	}
}

func TestApplyInvalid(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	p := pod("broken", "")
	_, _, err := e.c.Apply(ctx, p)
	wantCode(t, err, client.CodeInvalid, "")
	if !strings.HasPrefix(err.Error(), `Pod "broken" is invalid: `) || !strings.Contains(err.Error(), "spec.containers[0].image") {
		t.Fatalf("message %q", err)
	}
	if _, err := e.c.Get(ctx, "pods", "default", "broken"); !client.IsNotFound(err) {
		t.Fatalf("invalid pod was stored: %v", err)
	}
	// Unknown fields are rejected by the strict decoder.
	raw := json.RawMessage(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"dataa":{}}`)
	_, _, err = e.c.ApplyRaw(ctx, raw, false)
	wantCode(t, err, client.CodeInvalid, "")
	if !strings.Contains(err.Error(), "dataa") {
		t.Fatalf("message %q does not name the field", err)
	}
	resp := e.call(t, "apply", []byte(`{}`))
	if resp.Error == nil || resp.Error.Code != client.CodeInvalid {
		t.Fatalf("empty apply: %+v", resp)
	}
}

func TestApplyNeedsNamespace(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	_, _, err := e.c.Apply(ctx, configMap("team-a", "x", "1"))
	wantCode(t, err, client.CodeNotFound, `namespaces "team-a" not found`)
	ns := &manifests.Namespace{}
	ns.Name = "team-a"
	if _, _, err := e.c.Apply(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if res, _, err := e.c.Apply(ctx, configMap("team-a", "x", "1")); err != nil || res != client.ResultCreated {
		t.Fatalf("apply in new namespace: %s %v", res, err)
	}
}

func TestApplyDryRun(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	raw := encode(t, configMap("default", "dry", "1"))
	res, _, err := e.c.ApplyRaw(ctx, raw, true)
	if err != nil || res != client.ResultCreated {
		t.Fatalf("dry-run create: %s %v", res, err)
	}
	if _, err := e.c.Get(ctx, "configmaps", "default", "dry"); !client.IsNotFound(err) {
		t.Fatalf("dry run stored the object: %v", err)
	}
	if _, _, err := e.c.Apply(ctx, configMap("default", "dry", "1")); err != nil {
		t.Fatal(err)
	}
	raw = encode(t, configMap("default", "dry", "2"))
	res, obj, err := e.c.ApplyRaw(ctx, raw, true)
	if err != nil || res != client.ResultConfigured || obj.(*manifests.ConfigMap).Data["v"] != "2" {
		t.Fatalf("dry-run update: %s %v", res, err)
	}
	got, err := e.c.Get(ctx, "configmaps", "default", "dry")
	if err != nil || got.(*manifests.ConfigMap).Data["v"] != "1" {
		t.Fatalf("dry run changed the object: %v %v", got, err)
	}
}

func encode(t *testing.T, obj manifests.Object) json.RawMessage {
	t.Helper()
	raw, err := encodeObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// FuzzApply feeds arbitrary request bodies to the apply handler: it must
// answer every one with a result or a client error, never panic or fail
// internally.
func FuzzApply(f *testing.F) {
	for _, seed := range []string{
		`{"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}}`,
		`{"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}}`,
		`{"object":{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n"}},"dryRun":true}`,
		`{"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","resourceVersion":"x"}}}`,
		`{"object":null}`, `{"object":[]}`, `{}`, `[]`, `{"object":{"kind":"Widget"}}`,
	} {
		f.Add([]byte(seed))
	}
	e := newEnv(f, Options{})
	f.Fuzz(func(t *testing.T, body []byte) {
		ctx := ctxT(t)
		res, err := e.srv.apply(ctx, body)
		if err != nil {
			switch code := statusError(err).Code; code {
			case client.CodeInvalid, client.CodeNotFound, client.CodeConflict, client.CodeExists:
			default:
				t.Fatalf("apply %q: %v (code %s)", body, err, code)
			}
			return
		}
		ar, ok := res.(client.ApplyResult)
		if !ok {
			t.Fatalf("apply %q returned %T", body, res)
		}
		if _, err := manifests.FromJSON(ar.Object); err != nil {
			t.Fatalf("apply %q returned an undecodable object: %v", body, err)
		}
	})
}
