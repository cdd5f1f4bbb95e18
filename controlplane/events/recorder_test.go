package events_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/manifests"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func listEvents(t *testing.T, st interface {
	List(context.Context, string, string, manifests.Selector) ([]manifests.Object, uint64, error)
}) []*manifests.Event {
	t.Helper()
	objs, _, err := st.List(context.Background(), "events", "", manifests.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*manifests.Event
	for _, o := range objs {
		out = append(out, o.(*manifests.Event))
	}
	return out
}

func TestRecorder(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	rec := events.NewRecorder(env.Store, events.Options{Component: "test-controller", Now: clk.Now})

	pod := &manifests.Pod{}
	pod.Namespace, pod.Name, pod.UID = "apps", "web", "uid-1"
	if err := rec.Eventf(ctx, pod, manifests.EventWarning, "FailedScheduling", "0/%d nodes are available", 2); err != nil {
		t.Fatal(err)
	}
	evs := listEvents(t, env.Store)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Namespace != "apps" || ev.InvolvedObject.Kind != "Pod" || ev.InvolvedObject.Name != "web" || ev.InvolvedObject.UID != "uid-1" ||
		ev.Reason != "FailedScheduling" || ev.Message != "0/2 nodes are available" || ev.Type != manifests.EventWarning ||
		ev.Count != 1 || ev.Source.Component != "test-controller" || !ev.FirstTimestamp.Equal(clk.Now()) {
		t.Fatalf("event: %+v", ev)
	}
	if len(ev.Name) <= len("web.") || ev.Name[:4] != "web." {
		t.Fatalf("event name %q, want web.<hex>", ev.Name)
	}

	// The same event again within the window: count 2, one object.
	clk.Add(time.Minute)
	if err := rec.Eventf(ctx, pod, manifests.EventWarning, "FailedScheduling", "0/%d nodes are available", 2); err != nil {
		t.Fatal(err)
	}
	evs = listEvents(t, env.Store)
	if len(evs) != 1 || evs[0].Count != 2 || !evs[0].LastTimestamp.Equal(clk.Now()) || !evs[0].FirstTimestamp.Equal(ev.FirstTimestamp) {
		t.Fatalf("after a repeat: %d events, first %+v", len(evs), evs[0])
	}
	// Another message: a new event. Past the window: a new event too.
	if err := rec.Eventf(ctx, pod, manifests.EventWarning, "FailedScheduling", "0/3 nodes are available"); err != nil {
		t.Fatal(err)
	}
	clk.Add(11 * time.Minute)
	if err := rec.Eventf(ctx, pod, manifests.EventWarning, "FailedScheduling", "0/%d nodes are available", 2); err != nil {
		t.Fatal(err)
	}
	if evs = listEvents(t, env.Store); len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}

	// Events about cluster-scoped objects go to "default".
	node := &manifests.Node{}
	node.Name = "node-a"
	if err := rec.Eventf(ctx, node, manifests.EventNormal, "NodeReady", "Node node-a status is now: NodeReady"); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range listEvents(t, env.Store) {
		if e.InvolvedObject.Kind == "Node" {
			found = e.Namespace == "default" && e.InvolvedObject.Name == "node-a"
		}
	}
	if !found {
		t.Fatal("node event not in namespace default")
	}

	// GC: after the TTL only the recent ones are left.
	clk.Add(time.Hour - 5*time.Minute)
	n, err := rec.CollectGarbage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("GC deleted %d events, want 2 (the two older than 1h)", n)
	}
	if evs = listEvents(t, env.Store); len(evs) != 2 {
		t.Fatalf("%d events after GC, want 2", len(evs))
	}

	// A repeat of an event GC deleted creates a new one.
	clk.Add(2 * time.Hour)
	if _, err := rec.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rec.Eventf(ctx, node, manifests.EventNormal, "NodeReady", "Node node-a status is now: NodeReady"); err != nil {
		t.Fatal(err)
	}
	if evs = listEvents(t, env.Store); len(evs) != 1 || evs[0].Count != 1 {
		t.Fatalf("after GC and a repeat: %d events", len(evs))
	}
}

func TestRecorderErrors(t *testing.T) {
	env := controllertest.Start(t)
	rec := events.NewRecorder(env.Store, events.Options{})
	type notAKind struct {
		manifests.TypeMeta
		manifests.ObjectMeta
	}
	if err := rec.Eventf(context.Background(), &notAKind{}, manifests.EventNormal, "X", "x"); err == nil {
		t.Fatal("event about an unregistered type: want an error")
	}
}
