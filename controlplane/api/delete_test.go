package api

import (
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

func TestDelete(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	if _, _, err := e.c.Apply(ctx, configMap("default", "x", "1")); err != nil {
		t.Fatal(err)
	}
	obj, err := e.c.Delete(ctx, "configmaps", "default", "x")
	if err != nil {
		t.Fatal(err)
	}
	if obj.(*manifests.ConfigMap).Data["v"] != "1" {
		t.Fatalf("deleted object %+v", obj)
	}
	if _, err := e.c.Get(ctx, "configmaps", "default", "x"); !client.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
	_, err = e.c.Delete(ctx, "configmaps", "default", "x")
	wantCode(t, err, client.CodeNotFound, `configmaps "x" not found`)
}

func TestDeleteConditional(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	_, obj, err := e.c.Apply(ctx, configMap("default", "x", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.c.Apply(ctx, configMap("default", "x", "2")); err != nil {
		t.Fatal(err)
	}
	body := `{"resource":"configmaps","namespace":"default","name":"x","resourceVersion":"` + obj.GetObjectMeta().ResourceVersion + `"}`
	resp := e.call(t, messaging.VerbDelete, []byte(body))
	if resp.Error == nil || resp.Error.Code != client.CodeConflict {
		t.Fatalf("stale conditional delete: %+v", resp)
	}
	resp = e.call(t, messaging.VerbDelete, []byte(`{"resource":"configmaps","name":"x","resourceVersion":"abc"}`))
	if resp.Error == nil || resp.Error.Code != client.CodeInvalid {
		t.Fatalf("bad resourceVersion: %+v", resp)
	}
}

func TestDeleteNamespace(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	_, err := e.c.Delete(ctx, "namespaces", "", "default")
	wantCode(t, err, client.CodeForbidden, `namespaces "default" is forbidden: this namespace may not be deleted`)
	ns := &manifests.Namespace{}
	ns.Name = "team"
	if _, _, err := e.c.Apply(ctx, ns); err != nil {
		t.Fatal(err)
	}
	p := pod("p", "hello:1")
	p.Namespace = "team"
	for _, obj := range []manifests.Object{configMap("team", "a", "1"), p, configMap("default", "keep", "1")} {
		if _, _, err := e.c.Apply(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.c.Delete(ctx, "ns", "", "team"); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"configmaps", "pods"} {
		items, _, err := e.c.List(ctx, r, "team", "")
		if err != nil || len(items) != 0 {
			t.Fatalf("%s left in deleted namespace: %d %v", r, len(items), err)
		}
	}
	if _, err := e.c.Get(ctx, "configmaps", "default", "keep"); err != nil {
		t.Fatalf("other namespace touched: %v", err)
	}
	_, err = e.c.Delete(ctx, "ns", "", "team")
	wantCode(t, err, client.CodeNotFound, `namespaces "team" not found`)
}

func TestDeletePropagation(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	for _, c := range []struct{ policy, finalizer string }{
		{client.DeletePropagationForeground, manifests.FinalizerForeground},
		{client.DeletePropagationOrphan, manifests.FinalizerOrphan},
	} {
		name := "cm-" + strings.ToLower(c.policy)
		if _, _, err := e.c.Apply(ctx, configMap("default", name, "1")); err != nil {
			t.Fatal(err)
		}
		obj, err := e.c.DeleteWithOptions(ctx, client.DeleteRequest{Resource: "configmaps", Namespace: "default", Name: name, PropagationPolicy: c.policy})
		if err != nil {
			t.Fatalf("%s: %v", c.policy, err)
		}
		m := obj.GetObjectMeta()
		if m.DeletionTimestamp == nil || len(m.Finalizers) != 1 || m.Finalizers[0] != c.finalizer {
			t.Fatalf("%s: returned %+v", c.policy, m)
		}
		// Marked, not gone: the garbage collector finishes the deletion.
		got, err := e.c.Get(ctx, "configmaps", "default", name)
		if err != nil || got.GetObjectMeta().DeletionTimestamp == nil {
			t.Fatalf("%s: after delete: %v %+v", c.policy, err, got)
		}
		// Deleting again changes nothing.
		again, err := e.c.DeleteWithOptions(ctx, client.DeleteRequest{Resource: "configmaps", Namespace: "default", Name: name, PropagationPolicy: c.policy})
		if err != nil || again.GetObjectMeta().ResourceVersion != got.GetObjectMeta().ResourceVersion {
			t.Fatalf("%s: second delete: %v", c.policy, err)
		}
	}

	// An object with a finalizer is only marked by a background delete.
	cm := configMap("default", "held", "1")
	cm.Finalizers = []string{"example.com/hold"}
	if _, _, err := e.c.Apply(ctx, cm); err != nil {
		t.Fatal(err)
	}
	obj, err := e.c.Delete(ctx, "configmaps", "default", "held")
	if err != nil || obj.GetObjectMeta().DeletionTimestamp == nil {
		t.Fatalf("delete with finalizer: %v %+v", err, obj)
	}
	if _, err := e.c.Get(ctx, "configmaps", "default", "held"); err != nil {
		t.Fatalf("object with a finalizer deleted: %v", err)
	}

	_, err = e.c.DeleteWithOptions(ctx, client.DeleteRequest{Resource: "configmaps", Namespace: "default", Name: "held", PropagationPolicy: "Sideways"})
	wantCode(t, err, client.CodeInvalid, `propagationPolicy: Unsupported value: "Sideways": supported values: "Background", "Foreground", "Orphan"`)
}
