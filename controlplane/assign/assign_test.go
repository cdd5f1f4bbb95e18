package assign

import (
	"context"
	"errors"
	"testing"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

type cache map[string]manifests.Object

func (c cache) Get(key string) (manifests.Object, bool) { o, ok := c[key]; return o, ok }

func boundPod(name, node, rv string) *manifests.Pod {
	p := &manifests.Pod{}
	p.APIVersion, p.Kind = "v1", "Pod"
	p.Namespace, p.Name, p.UID, p.ResourceVersion = "default", name, "uid-"+name, rv
	p.Spec.NodeName = node
	p.Spec.Containers = []manifests.Container{{Name: "c", Image: "m:v1"}}
	p.Status.Phase = manifests.PodPending
	return p
}

func entry(t *testing.T, kv jetstream.KeyValue, key string) (*manifests.Pod, uint64) {
	t.Helper()
	e, err := kv.Get(context.Background(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	o, err := manifests.FromJSON(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	return o.(*manifests.Pod), e.Revision()
}

func TestSync(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	kv := env.Buckets.Assignments
	pods := cache{}
	c := New(kv, pods)
	key := messaging.AssignmentKey("node-a", "default", "web")

	// Unbound: nothing.
	pods["default/web"] = boundPod("web", "", "3")
	if err := c.Sync(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if p, _ := entry(t, kv, key); p != nil {
		t.Fatal("assignment for an unbound pod")
	}

	// Bound: the pod, without status, with its resourceVersion.
	pods["default/web"] = boundPod("web", "node-a", "4")
	if err := c.Sync(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	p, rev := entry(t, kv, key)
	if p == nil || p.Spec.NodeName != "node-a" || p.UID != "uid-web" || p.ResourceVersion != "4" || p.Status.Phase != "" || p.Kind != "Pod" {
		t.Fatalf("assignment %+v", p)
	}

	// A status-only change (new resourceVersion) does not rewrite it.
	st := boundPod("web", "node-a", "5")
	st.Status.Phase = manifests.PodRunning
	pods["default/web"] = st
	if err := c.Sync(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if _, rev2 := entry(t, kv, key); rev2 != rev {
		t.Fatalf("status change rewrote the assignment (rev %d -> %d)", rev, rev2)
	}
	// A label change does.
	lb := boundPod("web", "node-a", "6")
	lb.Labels = map[string]string{"v": "2"}
	pods["default/web"] = lb
	if err := c.Sync(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if p, rev2 := entry(t, kv, key); rev2 == rev || p.Labels["v"] != "2" || p.ResourceVersion != "6" {
		t.Fatalf("label change: rev %d -> %d, %+v", rev, rev2, p)
	}

	// Deleted: the key goes.
	delete(pods, "default/web")
	if err := c.Sync(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	if p, _ := entry(t, kv, key); p != nil {
		t.Fatal("assignment left after the pod was deleted")
	}
}

func TestLoadRemovesOrphans(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	kv := env.Buckets.Assignments
	// Left by an earlier control plane: one pod that still exists (same
	// content), one that was deleted meanwhile, one on the wrong node.
	keep := boundPod("keep", "node-a", "7")
	val, _ := Value(keep)
	for key, v := range map[string][]byte{
		messaging.AssignmentKey("node-a", "default", "keep"):  val,
		messaging.AssignmentKey("node-a", "default", "gone"):  val,
		messaging.AssignmentKey("node-b", "default", "moved"): val,
	} {
		if _, err := kv.Put(ctx, key, v); err != nil {
			t.Fatal(err)
		}
	}
	_, keepRev := entry(t, kv, messaging.AssignmentKey("node-a", "default", "keep"))
	pods := cache{"default/keep": keep, "default/moved": boundPod("moved", "node-c", "8")}
	c := New(kv, pods)
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if c.queue.Len() != 3 {
		t.Fatalf("Load queued %d pods, want 3", c.queue.Len())
	}
	for c.queue.Len() > 0 {
		k, _ := c.queue.Get(ctx)
		if err := c.Sync(ctx, k); err != nil {
			t.Fatal(err)
		}
		c.queue.Done(k)
	}
	if p, rev := entry(t, kv, messaging.AssignmentKey("node-a", "default", "keep")); p == nil || rev != keepRev {
		t.Fatalf("unchanged assignment rewritten or removed (rev %d -> %d)", keepRev, rev)
	}
	if p, _ := entry(t, kv, messaging.AssignmentKey("node-a", "default", "gone")); p != nil {
		t.Fatal("orphan assignment not removed")
	}
	if p, _ := entry(t, kv, messaging.AssignmentKey("node-b", "default", "moved")); p != nil {
		t.Fatal("assignment on the old node not removed")
	}
	if p, _ := entry(t, kv, messaging.AssignmentKey("node-c", "default", "moved")); p == nil {
		t.Fatal("assignment on the new node missing")
	}
}
