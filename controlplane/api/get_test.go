package api

import (
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

func TestGet(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	if _, _, err := e.c.Apply(ctx, configMap("default", "settings", "1")); err != nil {
		t.Fatal(err)
	}
	for _, resource := range []string{"configmaps", "configmap", "cm", "ConfigMap"} {
		obj, err := e.c.Get(ctx, resource, "default", "settings")
		if err != nil {
			t.Fatalf("get %s: %v", resource, err)
		}
		if obj.(*manifests.ConfigMap).Data["v"] != "1" || obj.GetTypeMeta().Kind != "ConfigMap" {
			t.Fatalf("get %s: %+v", resource, obj)
		}
	}
	// A namespaced get without namespace reads the default namespace.
	if _, err := e.c.Get(ctx, "configmaps", "", "settings"); err != nil {
		t.Fatalf("get without namespace: %v", err)
	}
	// Cluster-scoped kinds ignore the namespace.
	if _, err := e.c.Get(ctx, "ns", "whatever", "default"); err != nil {
		t.Fatalf("get namespace: %v", err)
	}
	_, err := e.c.Get(ctx, "configmaps", "default", "x")
	wantCode(t, err, client.CodeNotFound, `configmaps "x" not found`)
	_, err = e.c.Get(ctx, "widgets", "default", "x")
	wantCode(t, err, client.CodeNotFound, `the server doesn't have a resource type "widgets"`)
	resp := e.call(t, messaging.VerbGet, []byte(`{"resource":"pods"}`))
	if resp.Error == nil || resp.Error.Code != client.CodeInvalid {
		t.Fatalf("get without name: %+v", resp)
	}
}
