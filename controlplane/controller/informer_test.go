package controller_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

func configMap(ns, name string, labels map[string]string) *manifests.ConfigMap {
	cm := &manifests.ConfigMap{Data: map[string]string{"k": "v"}}
	cm.APIVersion, cm.Kind = "v1", "ConfigMap"
	cm.Namespace, cm.Name, cm.Labels = ns, name, labels
	return cm
}

type recorded struct {
	mu  sync.Mutex
	ops []string
}

func (r *recorded) handler(old, new manifests.Object) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case old == nil:
		r.ops = append(r.ops, "add "+controller.Key(new))
	case new == nil:
		r.ops = append(r.ops, "delete "+controller.Key(old))
	default:
		r.ops = append(r.ops, "update "+controller.Key(new))
	}
}

func (r *recorded) has(op string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.ops {
		if o == op {
			return nil
		}
	}
	return fmt.Errorf("no %q in %v", op, r.ops)
}

func TestInformer(t *testing.T) {
	env := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := env.Store
	if _, err := st.Create(ctx, configMap("default", "a", map[string]string{"app": "x"})); err != nil {
		t.Fatal(err)
	}
	inf := controller.NewInformer(st, "configmaps")
	var rec recorded
	inf.AddHandler(rec.handler)
	done := make(chan error, 1)
	go func() { done <- inf.Run(ctx) }()
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if !inf.HasSynced() {
		t.Fatal("HasSynced false after WaitForSync")
	}
	if _, ok := inf.Get("default/a"); !ok {
		t.Fatal("existing object not in the cache after sync")
	}
	if err := rec.has("add default/a"); err != nil {
		t.Fatal(err)
	}

	b, err := st.Create(ctx, configMap("other", "b", map[string]string{"app": "y"}))
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, func() error { return rec.has("add other/b") })
	sel, _ := manifests.ParseSelector("app=y")
	if got := inf.List(sel); len(got) != 1 || got[0].GetObjectMeta().Name != "b" {
		t.Fatalf("List(app=y) = %v", got)
	}
	if got := inf.List(manifests.Selector{}); len(got) != 2 {
		t.Fatalf("List() = %d objects, want 2", len(got))
	}

	bc := b.(*manifests.ConfigMap)
	bc.Data["k"] = "v2"
	if _, err := st.Update(ctx, bc); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, func() error {
		if err := rec.has("update other/b"); err != nil {
			return err
		}
		o, _ := inf.Get("other/b")
		if o.(*manifests.ConfigMap).Data["k"] != "v2" {
			return fmt.Errorf("cache holds %v", o)
		}
		return nil
	})
	if _, err := st.Delete(ctx, "configmaps", "default", "a", 0); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, func() error { return rec.has("delete default/a") })
	if _, ok := inf.Get("default/a"); ok {
		t.Fatal("deleted object still cached")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestKey(t *testing.T) {
	if k := controller.Key(configMap("ns", "n", nil)); k != "ns/n" {
		t.Fatalf("Key = %q", k)
	}
	n := &manifests.Node{}
	n.Name = "node-a"
	if k := controller.Key(n); k != "node-a" {
		t.Fatalf("Key(node) = %q", k)
	}
	if ns, name := controller.SplitKey("ns/n"); ns != "ns" || name != "n" {
		t.Fatalf("SplitKey = %q %q", ns, name)
	}
}

func TestCopy(t *testing.T) {
	cm := configMap("ns", "n", map[string]string{"a": "b"})
	cp, err := controller.Copy(cm)
	if err != nil {
		t.Fatal(err)
	}
	cp.Labels["a"] = "changed"
	cp.Data["k"] = "changed"
	if cm.Labels["a"] != "b" || cm.Data["k"] != "v" {
		t.Fatalf("Copy shares maps with the original: %+v", cm)
	}
}

// TestListControlledBy follows objects as their controller changes, and
// as they are deleted.
func TestListControlledBy(t *testing.T) {
	env := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := env.Store
	owned := func(name, uid string) *manifests.ConfigMap {
		cm := configMap("default", name, nil)
		if uid != "" {
			yes := true
			cm.OwnerReferences = []manifests.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs-" + uid, UID: uid, Controller: &yes}}
		}
		return cm
	}
	for _, cm := range []*manifests.ConfigMap{owned("a", "u1"), owned("b", "u1"), owned("c", "u2"), owned("d", "")} {
		if _, err := st.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	inf := controller.NewInformer(st, "configmaps")
	go inf.Run(ctx)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	names := func(uid string) string {
		var out []string
		for _, o := range inf.ListControlledBy(uid) {
			out = append(out, o.GetObjectMeta().Name)
		}
		return fmt.Sprint(out)
	}
	want := func(uid, names0 string) {
		t.Helper()
		controllertest.Eventually(t, 5*time.Second, func() error {
			if got := names(uid); got != names0 {
				return fmt.Errorf("controlled by %s: %s, want %s", uid, got, names0)
			}
			return nil
		})
	}
	want("u1", "[a b]")
	want("u2", "[c]")
	// b moves to u2 (an adoption), then a is deleted.
	o, _ := inf.Get("default/b")
	b := manifests.DeepCopy(o).(*manifests.ConfigMap)
	b.OwnerReferences[0].UID = "u2"
	if _, err := st.Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	want("u2", "[b c]")
	want("u1", "[a]")
	if _, err := st.Delete(ctx, "configmaps", "default", "a", 0); err != nil {
		t.Fatal(err)
	}
	want("u1", "[]")
}
