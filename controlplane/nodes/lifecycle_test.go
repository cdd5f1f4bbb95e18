package nodes

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
)

// cache is a fixture NodeLister.
type cache map[string]manifests.Object

func (c cache) Get(key string) (manifests.Object, bool) { o, ok := c[key]; return o, ok }
func (c cache) List(manifests.Selector) []manifests.Object {
	var out []manifests.Object
	for _, o := range c {
		out = append(out, o)
	}
	return out
}

type fakeRecorder struct {
	mu      sync.Mutex
	reasons []string
}

func (r *fakeRecorder) Eventf(_ context.Context, _ manifests.Object, _, reason, _ string, _ ...any) error {
	r.mu.Lock()
	r.reasons = append(r.reasons, reason)
	r.mu.Unlock()
	return nil
}

func (r *fakeRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reasons...)
}

func createNode(t *testing.T, st Store, c interface {
	Create(context.Context, manifests.Object) (manifests.Object, error)
}, name string) *manifests.Node {
	t.Helper()
	n := &manifests.Node{}
	n.APIVersion, n.Kind, n.Name = "v1", "Node", name
	obj, err := c.Create(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*manifests.Node)
}

func ready(t *testing.T, st Store, name string) (manifests.NodeCondition, string) {
	t.Helper()
	obj, err := st.Get(context.Background(), "nodes", "", name)
	if err != nil {
		t.Fatal(err)
	}
	n := obj.(*manifests.Node)
	for _, c := range n.Status.Conditions {
		if c.Type == manifests.NodeReady {
			return c, n.ResourceVersion
		}
	}
	return manifests.NodeCondition{}, n.ResourceVersion
}

func TestSync(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	node := createNode(t, env.Store, env.Store, "node-a")
	nodes := cache{"node-a": node}
	rec := &fakeRecorder{}
	c := New(env.Store, nodes, rec, Options{Grace: 40 * time.Second, Now: clock})

	// A fresh lease: Ready True.
	c.ObserveLease("node-a", now.Add(-5*time.Second))
	if err := c.Sync(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	cond, rv := ready(t, env.Store, "node-a")
	if cond.Status != manifests.ConditionTrue || cond.Reason != ReasonReady || !cond.LastTransitionTime.Equal(now) {
		t.Fatalf("Ready = %+v", cond)
	}

	// Nothing changed: no write (the cache is now the stored node).
	stored, _ := env.Store.Get(ctx, "nodes", "", "node-a")
	nodes["node-a"] = stored
	if err := c.Sync(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	if _, rv2 := ready(t, env.Store, "node-a"); rv2 != rv {
		t.Fatalf("Sync wrote without a change (rv %s -> %s)", rv, rv2)
	}

	// The lease ages past the grace period: Unknown.
	now = now.Add(41 * time.Second)
	if err := c.Sync(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	cond, _ = ready(t, env.Store, "node-a")
	if cond.Status != manifests.ConditionUnknown || cond.Reason != ReasonUnknown || cond.Message != MessageUnknown {
		t.Fatalf("Ready = %+v", cond)
	}

	// A stale cache (older resourceVersion) still converges: conflict, re-read, write.
	nodes["node-a"], _ = env.Store.Get(ctx, "nodes", "", "node-a")
	other, _ := controller.Copy(nodes["node-a"].(*manifests.Node))
	other.Labels = map[string]string{"site": "a"}
	if _, err := env.Store.Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	c.ObserveLease("node-a", now)
	if err := c.Sync(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	if cond, _ = ready(t, env.Store, "node-a"); cond.Status != manifests.ConditionTrue {
		t.Fatalf("Ready = %+v", cond)
	}
	if got := rec.list(); len(got) != 3 || got[0] != EventNodeReady || got[1] != EventNodeNotReady || got[2] != EventNodeReady {
		t.Fatalf("events %v", got)
	}

	// A node never heard of since start gets the grace period from start.
	nodes["node-b"] = createNode(t, env.Store, env.Store, "node-b")
	c2 := New(env.Store, nodes, rec, Options{Grace: 40 * time.Second, Now: clock})
	if err := c2.Sync(ctx, "node-b"); err != nil {
		t.Fatal(err)
	}
	if cond, _ = ready(t, env.Store, "node-b"); cond.Status != manifests.ConditionTrue {
		t.Fatalf("node-b right after start: %+v", cond)
	}
	now = now.Add(time.Minute)
	nodes["node-b"], _ = env.Store.Get(ctx, "nodes", "", "node-b")
	if err := c2.Sync(ctx, "node-b"); err != nil {
		t.Fatal(err)
	}
	if cond, _ = ready(t, env.Store, "node-b"); cond.Status != manifests.ConditionUnknown {
		t.Fatalf("node-b without a lease after the grace period: %+v", cond)
	}

	// A node missing from the cache is ignored.
	if err := c.Sync(ctx, "ghost"); err != nil {
		t.Fatal(err)
	}
}

func TestRunFollowsLeases(t *testing.T) {
	env := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	createNode(t, env.Store, env.Store, "node-a")
	inf := controller.NewInformer(env.Store, "nodes")
	c := New(env.Store, inf, &fakeRecorder{}, Options{Grace: 400 * time.Millisecond})
	inf.AddHandler(c.NodeChanged)
	go inf.Run(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, inf.WaitForSync, env.Buckets.Heartbeats, env.Buckets.Leases) }()

	lease, _ := json.Marshal(client.Lease{Node: "node-a", DurationSeconds: 1})
	put := func() {
		if _, err := env.Buckets.Leases.Put(ctx, messaging.LeaseKey("node-a"), lease); err != nil {
			t.Fatal(err)
		}
	}
	put()
	want := func(status string) func() error {
		return func() error {
			cond, _ := ready(t, env.Store, "node-a")
			if cond.Status != status {
				return fmt.Errorf("Ready=%q, want %q", cond.Status, status)
			}
			return nil
		}
	}
	controllertest.Eventually(t, 5*time.Second, want(manifests.ConditionTrue))
	// Heartbeats stop: Unknown after the grace period.
	controllertest.Eventually(t, 5*time.Second, want(manifests.ConditionUnknown))
	put()
	controllertest.Eventually(t, 5*time.Second, want(manifests.ConditionTrue))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}
