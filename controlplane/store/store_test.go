package store

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/messaging/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// newStore starts an in-process server and returns a store on a fresh
// objects bucket.
func newStore(t *testing.T) (*Store, jetstream.KeyValue) {
	t.Helper()
	b := natstest.Start(t, "store-test").Buckets
	return New(b.Objects), b.Objects
}

func configMap(ns, name string, data map[string]string, labels map[string]string) *manifests.ConfigMap {
	cm := &manifests.ConfigMap{Data: data}
	cm.Name, cm.Namespace, cm.Labels = name, ns, labels
	return cm
}

func rv(t *testing.T, obj manifests.Object) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(obj.GetObjectMeta().ResourceVersion, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", obj.GetObjectMeta().ResourceVersion, err)
	}
	return n
}

func TestCreateGet(t *testing.T) {
	s, kv := newStore(t)
	ctx := context.Background()
	in := configMap("default", "settings", map[string]string{"a": "1"}, nil)
	got, err := s.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	m := got.GetObjectMeta()
	if m.UID == "" || m.CreationTimestamp.IsZero() || m.Generation != 1 || m.ResourceVersion == "" {
		t.Fatalf("create did not set metadata: %+v", m)
	}
	if in.UID != "" || in.ResourceVersion != "" {
		t.Fatalf("create modified its argument: %+v", in.ObjectMeta)
	}
	if got.GetTypeMeta().Kind != "ConfigMap" || got.GetTypeMeta().APIVersion != "v1" {
		t.Fatalf("kind not set: %+v", got.GetTypeMeta())
	}
	// resourceVersion is the KV revision and is not stored in the value.
	e, err := kv.Get(ctx, messaging.ObjectKey("configmaps", "default", "settings"))
	if err != nil {
		t.Fatal(err)
	}
	if strconv.FormatUint(e.Revision(), 10) != m.ResourceVersion {
		t.Fatalf("resourceVersion %s, KV revision %d", m.ResourceVersion, e.Revision())
	}
	stored, err := manifests.FromJSON(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if stored.GetObjectMeta().ResourceVersion != "" {
		t.Fatalf("resourceVersion stored in the value")
	}

	read, err := s.Get(ctx, "configmaps", "default", "settings")
	if err != nil {
		t.Fatal(err)
	}
	cm := read.(*manifests.ConfigMap)
	if cm.Data["a"] != "1" || cm.UID != m.UID || cm.ResourceVersion != m.ResourceVersion {
		t.Fatalf("get returned %+v", cm)
	}
	// Singular and short names resolve too.
	if _, err := s.Get(ctx, "cm", "default", "settings"); err != nil {
		t.Fatalf("get by short name: %v", err)
	}

	_, err = s.Create(ctx, in)
	if !isCode(err, client.CodeExists) || err.Error() != `configmaps "settings" already exists` {
		t.Fatalf("second create: %v", err)
	}
	_, err = s.Get(ctx, "configmaps", "default", "missing")
	if !client.IsNotFound(err) || err.Error() != `configmaps "missing" not found` {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := s.Get(ctx, "widgets", "default", "x"); !client.IsNotFound(err) {
		t.Fatalf("unknown resource: %v", err)
	}
}

func isCode(err error, code string) bool { return client.CodeOf(err) == code }

func TestClusterScopedIgnoresNamespace(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	n := &manifests.Namespace{}
	n.Name = "team-a"
	n.Namespace = "ignored"
	got, err := s.Create(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetObjectMeta().Namespace != "" {
		t.Fatalf("cluster-scoped object kept namespace %q", got.GetObjectMeta().Namespace)
	}
	if _, err := s.Get(ctx, "namespaces", "whatever", "team-a"); err != nil {
		t.Fatal(err)
	}
	items, _, err := s.List(ctx, "ns", "other", manifests.Selector{})
	if err != nil || len(items) != 1 {
		t.Fatalf("list namespaces: %d items, %v", len(items), err)
	}
}

func TestNamespacedNeedsNamespace(t *testing.T) {
	s, _ := newStore(t)
	if _, err := s.Create(context.Background(), configMap("", "x", nil, nil)); !client.IsInvalid(err) {
		t.Fatalf("create without namespace: %v", err)
	}
}

func TestUpdateCAS(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	created, err := s.Create(ctx, configMap("default", "settings", map[string]string{"a": "1"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	// Labels only: generation stays.
	upd := created.(*manifests.ConfigMap)
	upd.Labels = map[string]string{"x": "y"}
	v2, err := s.Update(ctx, upd)
	if err != nil {
		t.Fatal(err)
	}
	if v2.GetObjectMeta().Generation != 1 || rv(t, v2) <= rv(t, created) {
		t.Fatalf("metadata update: %+v", v2.GetObjectMeta())
	}
	if v2.GetObjectMeta().UID != created.GetObjectMeta().UID {
		t.Fatal("uid changed")
	}
	// Data change bumps generation.
	cm := v2.(*manifests.ConfigMap)
	cm.Data = map[string]string{"a": "2"}
	cm.UID = ""
	cm.CreationTimestamp = time.Time{}
	v3, err := s.Update(ctx, cm)
	if err != nil {
		t.Fatal(err)
	}
	if v3.GetObjectMeta().Generation != 2 || v3.GetObjectMeta().UID != created.GetObjectMeta().UID ||
		!v3.GetObjectMeta().CreationTimestamp.Equal(created.GetObjectMeta().CreationTimestamp) {
		t.Fatalf("data update: %+v", v3.GetObjectMeta())
	}
	// Stale resourceVersion: Conflict with the Kubernetes message.
	_, err = s.Update(ctx, upd)
	want := `Operation cannot be fulfilled on configmaps "settings": the object has been modified; please apply your changes to the latest version and try again`
	if !client.IsConflict(err) || err.Error() != want {
		t.Fatalf("stale update: %v", err)
	}
	// Missing resourceVersion: Invalid.
	cm.ResourceVersion = ""
	if _, err := s.Update(ctx, cm); !client.IsInvalid(err) {
		t.Fatalf("update without resourceVersion: %v", err)
	}
	// Missing object: NotFound.
	gone := configMap("default", "gone", nil, nil)
	gone.ResourceVersion = "5"
	if _, err := s.Update(ctx, gone); !client.IsNotFound(err) {
		t.Fatalf("update missing: %v", err)
	}
}

func TestConcurrentUpdatesOneWins(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	created, err := s.Create(ctx, configMap("default", "c", map[string]string{"n": "0"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			cm := configMap("default", "c", map[string]string{"n": fmt.Sprint(i + 1)}, nil)
			cm.ResourceVersion = created.GetObjectMeta().ResourceVersion
			_, err := s.Update(ctx, cm)
			errs <- err
		}()
	}
	wins := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			wins++
		case !client.IsConflict(err):
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d updates won, want 1", wins)
	}
}

func TestDelete(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	created, err := s.Create(ctx, configMap("default", "d", map[string]string{"k": "v"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "configmaps", "default", "d", rv(t, created)+100); !client.IsConflict(err) {
		t.Fatalf("conditional delete with wrong revision: %v", err)
	}
	old, err := s.Delete(ctx, "configmaps", "default", "d", rv(t, created))
	if err != nil {
		t.Fatal(err)
	}
	if old.(*manifests.ConfigMap).Data["k"] != "v" {
		t.Fatalf("delete returned %+v", old)
	}
	if _, err := s.Get(ctx, "configmaps", "default", "d"); !client.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := s.Delete(ctx, "configmaps", "default", "d", 0); !client.IsNotFound(err) {
		t.Fatalf("second delete: %v", err)
	}
	// The name can be used again.
	again, err := s.Create(ctx, configMap("default", "d", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if again.GetObjectMeta().UID == created.GetObjectMeta().UID {
		t.Fatal("re-created object kept the old uid")
	}
}

func TestListSelectorNamespaceAndRevision(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	for _, c := range []struct{ ns, name, env string }{
		{"default", "a", "prod"}, {"default", "b", "dev"}, {"other", "c", "prod"},
	} {
		if _, err := s.Create(ctx, configMap(c.ns, c.name, nil, map[string]string{"env": c.env})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(ctx, "configmaps", "default", "b", 0); err != nil {
		t.Fatal(err)
	}
	// Another resource in the bucket is not listed.
	if _, err := s.Create(ctx, &manifests.Secret{ObjectMeta: manifests.ObjectMeta{Name: "s", Namespace: "default"}}); err != nil {
		t.Fatal(err)
	}
	names := func(items []manifests.Object) []string {
		var out []string
		for _, o := range items {
			out = append(out, o.GetObjectMeta().Namespace+"/"+o.GetObjectMeta().Name)
		}
		return out
	}
	all, rev, err := s.List(ctx, "configmaps", "", manifests.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(names(all)); got != "[default/a other/c]" {
		t.Fatalf("all namespaces: %s", got)
	}
	// Revision covers every write so far (5 writes: 3 creates, 1 delete, 1 create).
	if rev != 5 {
		t.Fatalf("list revision %d, want 5", rev)
	}
	def, _, err := s.List(ctx, "configmaps", "default", manifests.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(names(def)); got != "[default/a]" {
		t.Fatalf("default namespace: %s", got)
	}
	sel, err := manifests.ParseSelector("env=prod")
	if err != nil {
		t.Fatal(err)
	}
	prod, _, err := s.List(ctx, "configmaps", "", sel)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(names(prod)); got != "[default/a other/c]" {
		t.Fatalf("env=prod: %s", got)
	}
	none, _, err := s.List(ctx, "pods", "", manifests.Selector{})
	if err != nil || len(none) != 0 {
		t.Fatalf("empty list: %v %v", none, err)
	}
}

// next receives one event or fails after a timeout.
func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event within 5s")
	}
	return Event{}
}

func TestWatch(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := s.Create(ctx, configMap("default", "a", map[string]string{"v": "1"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, configMap("default", "gone", nil, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "configmaps", "default", "gone", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, configMap("other", "elsewhere", nil, nil)); err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctx, "configmaps", "default")
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, ch)
	if ev.Type != client.Added || ev.Object.GetObjectMeta().Name != "a" || ev.Revision != rv(t, a) {
		t.Fatalf("first event %s %v rev %d", ev.Type, ev.Object, ev.Revision)
	}
	ev = next(t, ch)
	if ev.Type != Synced || ev.Object != nil {
		t.Fatalf("want Synced, got %s", ev.Type)
	}
	cm := a.(*manifests.ConfigMap)
	cm.Data = map[string]string{"v": "2"}
	upd, err := s.Update(ctx, cm)
	if err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if ev.Type != client.Modified || ev.Object.(*manifests.ConfigMap).Data["v"] != "2" || ev.Revision != rv(t, upd) {
		t.Fatalf("modified event %s %+v", ev.Type, ev.Object)
	}
	if _, err := s.Create(ctx, configMap("other", "not-seen", nil, nil)); err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(ctx, configMap("default", "b", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if ev.Type != client.Added || ev.Object.GetObjectMeta().Name != "b" || ev.Revision != rv(t, b) {
		t.Fatalf("added event %s %v", ev.Type, ev.Object)
	}
	if _, err := s.Delete(ctx, "configmaps", "default", "a", 0); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if ev.Type != client.Deleted || ev.Object.(*manifests.ConfigMap).Data["v"] != "2" {
		t.Fatalf("deleted event %s %+v", ev.Type, ev.Object)
	}
	if rv(t, ev.Object) != ev.Revision || ev.Revision <= rv(t, b) {
		t.Fatalf("deleted event revision %d object rv %s", ev.Revision, ev.Object.GetObjectMeta().ResourceVersion)
	}
	cancel()
	for range ch { // drains, then closes
	}
}

func TestWatchAllNamespacesEmpty(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Watch(ctx, "pods", "")
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Type != Synced {
		t.Fatalf("want Synced first on an empty bucket, got %s", ev.Type)
	}
	p := &manifests.Pod{}
	p.Name, p.Namespace = "p", "ns1"
	if _, err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Type != client.Added || ev.Object.GetObjectMeta().Namespace != "ns1" {
		t.Fatalf("got %s %v", ev.Type, ev.Object)
	}
}

func TestWatchAll(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.Create(ctx, configMap("default", "before", nil, nil)); err != nil {
		t.Fatal(err)
	}
	ch, err := s.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Type != client.Added || ev.Object.GetObjectMeta().Name != "before" {
		t.Fatalf("got %s %v", ev.Type, ev.Object)
	}
	if ev := next(t, ch); ev.Type != Synced {
		t.Fatalf("want Synced, got %s", ev.Type)
	}
	n := &manifests.Node{}
	n.Name = "node-a.local"
	if _, err := s.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	ev := next(t, ch)
	if ev.Type != client.Added || ev.Object.GetTypeMeta().Kind != "Node" || ev.Object.GetObjectMeta().Name != "node-a.local" {
		t.Fatalf("got %s %v", ev.Type, ev.Object)
	}
}

func TestCreateGenerateName(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	ev := &manifests.Event{Reason: "Scheduled"}
	ev.GenerateName, ev.Namespace = "web.", "default"
	seen := map[string]bool{}
	for range 5 {
		got, err := s.Create(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		name := got.GetObjectMeta().Name
		if len(name) != len("web.")+5 || name[:4] != "web." || seen[name] {
			t.Fatalf("generated name %q (seen before: %v)", name, seen[name])
		}
		seen[name] = true
		if _, err := s.Get(ctx, "events", "default", name); err != nil {
			t.Fatal(err)
		}
	}
	if ev.Name != "" {
		t.Fatal("Create modified its argument")
	}
	bad := &manifests.Event{}
	bad.Namespace = "default"
	if _, err := s.Create(ctx, bad); !client.IsInvalid(err) {
		t.Fatalf("create without name or generateName: %v", err)
	}
}

// countingKV counts the reads of a bucket.
type countingKV struct {
	jetstream.KeyValue
	gets atomic.Int32
}

func (c *countingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	c.gets.Add(1)
	return c.KeyValue.Get(ctx, key)
}

// TestUpdateFrom: given the stored object at the update's
// resourceVersion, UpdateFrom does not read it again and keeps uid,
// creationTimestamp and generation from it as Update does; a stale or
// foreign from is read over, and the write still compares and swaps.
func TestUpdateFrom(t *testing.T) {
	s, kv := newStore(t)
	ckv := &countingKV{KeyValue: kv}
	s.kv = ckv
	ctx := context.Background()
	created, err := s.Create(ctx, configMap("default", "settings", map[string]string{"a": "1"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	next := manifests.DeepCopy(created).(*manifests.ConfigMap)
	next.Data = map[string]string{"a": "2"}
	next.UID, next.CreationTimestamp = "", time.Time{}
	ckv.gets.Store(0)
	v2, err := s.UpdateFrom(ctx, next, created)
	if err != nil {
		t.Fatal(err)
	}
	if n := ckv.gets.Load(); n != 0 {
		t.Errorf("UpdateFrom with the stored object read the bucket %d times, want 0", n)
	}
	m := v2.GetObjectMeta()
	if m.Generation != 2 || m.UID != created.GetObjectMeta().UID || !m.CreationTimestamp.Equal(created.GetObjectMeta().CreationTimestamp) || rv(t, v2) <= rv(t, created) {
		t.Fatalf("UpdateFrom: %+v", m)
	}
	got, err := s.Get(ctx, "configmaps", "default", "settings")
	if err != nil || got.(*manifests.ConfigMap).Data["a"] != "2" || got.GetObjectMeta().ResourceVersion != m.ResourceVersion {
		t.Fatalf("stored after UpdateFrom: %+v, %v", got, err)
	}

	// A from at the same (old) revision as a stale write: the compare and
	// swap refuses it.
	stale := manifests.DeepCopy(created).(*manifests.ConfigMap)
	stale.Data = map[string]string{"a": "3"}
	if _, err := s.UpdateFrom(ctx, stale, created); !client.IsConflict(err) {
		t.Fatalf("stale UpdateFrom: %v, want Conflict", err)
	}
	// A from of another revision or object is read over.
	cur := manifests.DeepCopy(v2).(*manifests.ConfigMap)
	cur.Labels = map[string]string{"x": "y"}
	other := configMap("default", "other", nil, nil)
	other.ResourceVersion = cur.ResourceVersion
	for _, from := range []manifests.Object{created, other, nil} {
		ckv.gets.Store(0)
		if _, err := s.UpdateFrom(ctx, manifests.DeepCopy(cur), from); err != nil {
			t.Fatal(err)
		}
		if n := ckv.gets.Load(); n != 1 {
			t.Errorf("UpdateFrom with from %v read the bucket %d times, want 1", from != nil, n)
		}
		got, _ := s.Get(ctx, "configmaps", "default", "settings")
		cur.ResourceVersion = got.GetObjectMeta().ResourceVersion
	}
}
