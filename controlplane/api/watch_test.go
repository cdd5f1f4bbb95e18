package api

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go"
)

func nextEvent(t *testing.T, ch <-chan client.Event) client.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event within 5s")
	}
	return client.Event{}
}

func TestWatchFanout(t *testing.T) {
	e := newEnv(t, Options{})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	if _, _, err := e.c.Apply(ctx, configMap("default", "before", "1")); err != nil {
		t.Fatal(err)
	}
	ch, err := e.c.Watch(ctx, "configmaps", "default", "")
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ch); ev.Type != client.Added || ev.Object.GetObjectMeta().Name != "before" {
		t.Fatalf("listed: %s %v", ev.Type, ev.Object)
	}
	// A write through the API.
	if _, _, err := e.c.Apply(ctx, configMap("default", "before", "2")); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, ch)
	if ev.Type != client.Modified || ev.Object.(*manifests.ConfigMap).Data["v"] != "2" {
		t.Fatalf("modified: %s %+v", ev.Type, ev.Object)
	}
	// A write straight to the store, as a controller does.
	if _, err := e.st.Create(ctx, configMap("default", "by-controller", "1")); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, ch)
	if ev.Type != client.Added || ev.Object.GetObjectMeta().Name != "by-controller" {
		t.Fatalf("added: %s %v", ev.Type, ev.Object)
	}
	// Other namespaces are not seen by this watch.
	if _, err := e.st.Create(ctx, configMap("edge-system", "elsewhere", "1")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Delete(ctx, "configmaps", "default", "before"); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, ch)
	if ev.Type != client.Deleted || ev.Object.GetObjectMeta().Name != "before" || ev.Object.(*manifests.ConfigMap).Data["v"] != "2" {
		t.Fatalf("deleted: %s %+v", ev.Type, ev.Object)
	}
}

func TestWatchClusterScoped(t *testing.T) {
	e := newEnv(t, Options{})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	ch, err := e.c.Watch(ctx, "nodes", "", "role=edge")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"plain", "edge-1"} {
		n := &manifests.Node{}
		n.Name = name
		if name == "edge-1" {
			n.Labels = map[string]string{"role": "edge"}
		}
		if _, _, err := e.c.Apply(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if ev := nextEvent(t, ch); ev.Type != client.Added || ev.Object.GetObjectMeta().Name != "edge-1" {
		t.Fatalf("want edge-1 added, got %s %v", ev.Type, ev.Object)
	}
}

func TestFanoutWatchesAgain(t *testing.T) {
	e := newEnv(t, Options{})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	obj := func(name string, rev uint64) manifests.Object {
		cm := configMap("default", name, "1")
		cm.ResourceVersion = fmt.Sprint(rev)
		return cm
	}
	first := make(chan store.Event, 4)
	first <- store.Event{Type: store.Synced, Revision: 2}
	first <- store.Event{Type: client.Added, Object: obj("a", 5), Revision: 5}
	close(first)
	second := make(chan store.Event, 4)
	second <- store.Event{Type: client.Added, Object: obj("old", 3), Revision: 3}
	second <- store.Event{Type: client.Added, Object: obj("gap", 7), Revision: 7}
	second <- store.Event{Type: store.Synced, Revision: 7}
	second <- store.Event{Type: client.Deleted, Object: obj("z", 8), Revision: 8}
	rewatch := func(context.Context) (<-chan store.Event, error) { return second, nil }

	msgs := make(chan *nats.Msg, 8)
	sub, err := e.nc.ChanSubscribe(messaging.WatchFilter("configmaps", "*"), msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	go e.srv.fanout(ctx, first, rewatch, time.Millisecond)
	var got []string
	for len(got) < 3 {
		select {
		case m := <-msgs:
			var we client.WatchEvent
			if err := json.Unmarshal(m.Data, &we); err != nil {
				t.Fatal(err)
			}
			o, err := manifests.FromJSON(we.Object)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, we.Type+" "+o.GetObjectMeta().Name)
		case <-time.After(5 * time.Second):
			t.Fatalf("published %v, want 3 events", got)
		}
	}
	if fmt.Sprint(got) != "[ADDED a MODIFIED gap DELETED z]" {
		t.Fatalf("published %v", got)
	}
}
