package controller_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

// scriptedWatcher plays one scripted watch per call, then blocks.
type scriptedWatcher struct {
	mu      sync.Mutex
	scripts [][]store.Event
}

func (w *scriptedWatcher) Watch(ctx context.Context, _, _ string) (<-chan store.Event, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan store.Event, 16)
	if len(w.scripts) == 0 {
		go func() { <-ctx.Done(); close(ch) }()
		return ch, nil
	}
	for _, ev := range w.scripts[0] {
		ch <- ev
	}
	w.scripts = w.scripts[1:]
	close(ch) // the watch breaks after its script
	return ch, nil
}

func withRV(cm *manifests.ConfigMap, rv string) *manifests.ConfigMap {
	cm.ResourceVersion = rv
	return cm
}

func TestInformerRestartedWatch(t *testing.T) {
	w := &scriptedWatcher{scripts: [][]store.Event{
		{
			{Type: client.Added, Object: withRV(configMap("ns", "a", nil), "1")},
			{Type: client.Added, Object: withRV(configMap("ns", "b", nil), "2")},
			{Type: store.Synced},
		},
		{
			// b was deleted while the watch was down; a is replayed unchanged.
			{Type: client.Added, Object: withRV(configMap("ns", "a", nil), "1")},
			{Type: store.Synced},
		},
	}}
	inf := controller.NewInformer(w, "configmaps")
	var rec recorded
	inf.AddHandler(rec.handler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go inf.Run(ctx)
	controllertest.Eventually(t, 5*time.Second, func() error { return rec.has("delete ns/b") })
	if _, ok := inf.Get("ns/a"); !ok {
		t.Fatal("a dropped from the cache")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"add ns/a", "add ns/b", "delete ns/b"}
	if len(rec.ops) != len(want) {
		t.Fatalf("handler calls %v, want %v", rec.ops, want)
	}
	for i := range want {
		if rec.ops[i] != want[i] {
			t.Fatalf("handler calls %v, want %v", rec.ops, want)
		}
	}
}
