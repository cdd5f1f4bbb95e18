package gc

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

type fixture struct {
	t   *testing.T
	ctx context.Context
	st  *store.Store

	mu      sync.Mutex
	deleted []string // "Kind/name" in deletion order
}

// newFixture starts a store, informers for the workload kinds and the
// collector, and records the order of deletions.
func newFixture(t *testing.T) *fixture {
	env := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fixture{t: t, ctx: ctx, st: env.Store}
	ch, err := env.Store.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range ch {
			if ev.Type == client.Deleted {
				f.mu.Lock()
				f.deleted = append(f.deleted, ev.Object.GetTypeMeta().Kind+"/"+ev.Object.GetObjectMeta().Name)
				f.mu.Unlock()
			}
		}
	}()
	listers := map[string]Lister{}
	var infs []*controller.Informer
	for _, res := range []string{"deployments", "replicasets", "pods", "configmaps"} {
		inf := controller.NewInformer(env.Store, res)
		listers[res] = inf
		infs = append(infs, inf)
	}
	c := New(env.Store, listers)
	for i, res := range []string{"deployments", "replicasets", "pods", "configmaps"} {
		infs[i].AddHandler(c.Handler(res))
		go infs[i].Run(ctx)
	}
	for _, inf := range infs {
		if err := inf.WaitForSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	go c.Run(ctx, 2)
	return f
}

func (f *fixture) create(obj manifests.Object, owners ...manifests.Object) manifests.Object {
	f.t.Helper()
	for _, o := range owners {
		ref, err := manifests.NewControllerRef(o)
		if err != nil {
			f.t.Fatal(err)
		}
		if len(obj.GetObjectMeta().OwnerReferences) > 0 {
			ref.Controller = nil
		}
		obj.GetObjectMeta().OwnerReferences = append(obj.GetObjectMeta().OwnerReferences, ref)
	}
	if err := manifests.SetKind(obj); err != nil {
		f.t.Fatal(err)
	}
	got, err := f.st.Create(f.ctx, obj)
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

func (f *fixture) exists(resource, name string) bool {
	f.t.Helper()
	_, err := f.st.Get(f.ctx, resource, "default", name)
	if err != nil && !client.IsNotFound(err) {
		f.t.Fatal(err)
	}
	return err == nil
}

func (f *fixture) waitGone(resource, name string) {
	f.t.Helper()
	controllertest.Eventually(f.t, 10*time.Second, func() error {
		if f.exists(resource, name) {
			return fmt.Errorf("%s %s still exists", resource, name)
		}
		return nil
	})
}

// tree creates deployment web -> replicaset web-1 -> pods web-1-a, web-1-b.
func (f *fixture) tree() (d, rs manifests.Object) {
	d = f.create(&manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default"}})
	rs = f.create(&manifests.ReplicaSet{ObjectMeta: manifests.ObjectMeta{Name: "web-1", Namespace: "default"}}, d)
	for _, n := range []string{"web-1-a", "web-1-b"} {
		f.create(&manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: n, Namespace: "default"}}, rs)
	}
	return d, rs
}

func TestBackground(t *testing.T) {
	f := newFixture(t)
	d, _ := f.tree()
	keeper := f.create(&manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "keeper", Namespace: "default"}})
	// A pod with two owners survives the loss of one.
	f.create(&manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "shared", Namespace: "default"}}, d, keeper)
	if _, err := Delete(f.ctx, f.st, d, PropagationBackground, time.Now()); err != nil {
		t.Fatal(err)
	}
	f.waitGone("replicasets", "web-1")
	f.waitGone("pods", "web-1-a")
	f.waitGone("pods", "web-1-b")
	controllertest.Eventually(t, 10*time.Second, func() error {
		o, err := f.st.Get(f.ctx, "pods", "default", "shared")
		if err != nil {
			return err
		}
		if refs := o.GetObjectMeta().OwnerReferences; len(refs) != 1 || refs[0].Name != "keeper" {
			return fmt.Errorf("shared pod owners %+v", refs)
		}
		return nil
	})
}

func TestForeground(t *testing.T) {
	f := newFixture(t)
	d, _ := f.tree()
	marked, err := Delete(f.ctx, f.st, d, PropagationForeground, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if m := marked.GetObjectMeta(); m.DeletionTimestamp == nil || len(m.Finalizers) != 1 || m.Finalizers[0] != manifests.FinalizerForeground {
		t.Fatalf("marked %+v", m)
	}
	f.waitGone("deployments", "web")
	// Dependents go first, the owner last.
	controllertest.Eventually(t, 5*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.deleted) < 4 {
			return fmt.Errorf("deletions seen: %v", f.deleted)
		}
		return nil
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.deleted) != 4 || f.deleted[3] != "Deployment/web" || f.deleted[2] != "ReplicaSet/web-1" {
		t.Fatalf("deletion order %v", f.deleted)
	}
}

func TestOrphan(t *testing.T) {
	f := newFixture(t)
	_, rs := f.tree()
	if _, err := Delete(f.ctx, f.st, rs, PropagationOrphan, time.Now()); err != nil {
		t.Fatal(err)
	}
	f.waitGone("replicasets", "web-1")
	for _, n := range []string{"web-1-a", "web-1-b"} {
		o, err := f.st.Get(f.ctx, "pods", "default", n)
		if err != nil {
			t.Fatalf("orphaned pod %s: %v", n, err)
		}
		if refs := o.GetObjectMeta().OwnerReferences; len(refs) != 0 {
			t.Errorf("pod %s still has owners %+v", n, refs)
		}
	}
	if !f.exists("deployments", "web") {
		t.Error("owner's owner deleted")
	}
}

func TestFinalizerHoldsObject(t *testing.T) {
	f := newFixture(t)
	cm := f.create(&manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "held", Namespace: "default", Finalizers: []string{"example.com/hold"}}})
	marked, err := Delete(f.ctx, f.st, cm, PropagationBackground, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if marked.GetObjectMeta().DeletionTimestamp == nil || !f.exists("configmaps", "held") {
		t.Fatalf("object with a finalizer not just marked: %+v", marked.GetObjectMeta())
	}
	// Once its finalizer is removed, the collector deletes it.
	marked.GetObjectMeta().Finalizers = nil
	if _, err := f.st.Update(f.ctx, marked); err != nil {
		t.Fatal(err)
	}
	f.waitGone("configmaps", "held")
}

func TestOwnerNewerThanCache(t *testing.T) {
	f := newFixture(t)
	// The owner exists in the store; even if the collector sees the
	// dependent first, it checks the store before deleting.
	d := f.create(&manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "fresh", Namespace: "default"}})
	f.create(&manifests.ReplicaSet{ObjectMeta: manifests.ObjectMeta{Name: "fresh-1", Namespace: "default"}}, d)
	// A dependent of an owner that never existed goes.
	ghost := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "ghost", Namespace: "default", UID: "no-such-uid"}}
	f.create(&manifests.ReplicaSet{ObjectMeta: manifests.ObjectMeta{Name: "ghost-1", Namespace: "default"}}, ghost)
	f.waitGone("replicasets", "ghost-1")
	if !f.exists("replicasets", "fresh-1") {
		t.Fatal("dependent of a live owner deleted")
	}
}
