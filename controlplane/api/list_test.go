package api

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
)

func TestList(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := ctxT(t)
	ns := &manifests.Namespace{}
	ns.Name = "other"
	if _, _, err := e.c.Apply(ctx, ns); err != nil {
		t.Fatal(err)
	}
	var lastRV string
	for _, c := range []struct{ ns, name, tier string }{{"default", "a", "web"}, {"default", "b", "db"}, {"other", "c", "web"}} {
		cm := configMap(c.ns, c.name, "1")
		cm.Labels = map[string]string{"tier": c.tier}
		_, obj, err := e.c.Apply(ctx, cm)
		if err != nil {
			t.Fatal(err)
		}
		lastRV = obj.GetObjectMeta().ResourceVersion
	}
	names := func(items []manifests.Object) string {
		var s []string
		for _, o := range items {
			s = append(s, o.GetObjectMeta().Namespace+"/"+o.GetObjectMeta().Name)
		}
		return fmt.Sprint(s)
	}
	items, rv, err := e.c.List(ctx, "cm", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(items); got != "[default/a default/b other/c]" {
		t.Fatalf("all: %s", got)
	}
	n, _ := strconv.ParseUint(rv, 10, 64)
	last, _ := strconv.ParseUint(lastRV, 10, 64)
	if n < last {
		t.Fatalf("list revision %s older than the last write %s", rv, lastRV)
	}
	items, _, err = e.c.List(ctx, "configmaps", "default", "tier=web")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(items); got != "[default/a]" {
		t.Fatalf("default tier=web: %s", got)
	}
	items, _, err = e.c.List(ctx, "configmaps", "", "tier in (web,db),tier!=db")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(items); got != "[default/a other/c]" {
		t.Fatalf("set selector: %s", got)
	}
	// Cluster-scoped kinds ignore the namespace.
	items, _, err = e.c.List(ctx, "namespaces", "default", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(items); got != "[/default /edge-system /other]" {
		t.Fatalf("namespaces: %s", got)
	}
	empty, _, err := e.c.List(ctx, "pods", "", "")
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty list: %v %v", empty, err)
	}
	_, _, err = e.c.List(ctx, "configmaps", "", "tier in (")
	wantCode(t, err, client.CodeInvalid, "")
	_, _, err = e.c.List(ctx, "gizmos", "", "")
	wantCode(t, err, client.CodeNotFound, "")
}
