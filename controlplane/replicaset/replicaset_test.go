package replicaset

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

type recorder struct {
	mu     sync.Mutex
	events []string // "Reason: message"
}

func (r *recorder) Eventf(_ context.Context, _ manifests.Object, _, reason, format string, args ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, reason+": "+fmt.Sprintf(format, args...))
	return nil
}

func (r *recorder) count(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if strings.HasPrefix(e, reason+":") {
			n++
		}
	}
	return n
}

type fixture struct {
	t     *testing.T
	ctx   context.Context
	env   *controllertest.Env
	rsets *controller.Informer
	pods  *controller.Informer
	rec   *recorder
	c     *Controller
}

func newFixture(t *testing.T) *fixture {
	env := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fixture{t: t, ctx: ctx, env: env, rec: &recorder{},
		rsets: controller.NewInformer(env.Store, "replicasets"),
		pods:  controller.NewInformer(env.Store, "pods"),
	}
	f.c = New(env.Store, f.rsets, f.pods, f.rec)
	for _, inf := range []*controller.Informer{f.rsets, f.pods} {
		go inf.Run(ctx)
		if err := inf.WaitForSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func newRS(name string, replicas int32, labels map[string]string) *manifests.ReplicaSet {
	rs := &manifests.ReplicaSet{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &manifests.LabelSelector{MatchLabels: labels},
			Template: manifests.PodTemplateSpec{
				ObjectMeta: manifests.ObjectMeta{Labels: labels},
				Spec:       manifests.PodSpec{Containers: []manifests.Container{{Name: "app", Image: "fake://run"}}},
			},
		},
	}
	manifests.Default(rs)
	return rs
}

func (f *fixture) create(obj manifests.Object) manifests.Object {
	f.t.Helper()
	manifests.Default(obj)
	got, err := f.env.Store.Create(f.ctx, obj)
	if err != nil {
		f.t.Fatal(err)
	}
	f.waitCached(got)
	return got
}

// waitCached waits until the informers hold obj's revision.
func (f *fixture) waitCached(obj manifests.Object) {
	f.t.Helper()
	inf := f.pods
	if _, ok := obj.(*manifests.ReplicaSet); ok {
		inf = f.rsets
	}
	controllertest.Eventually(f.t, 5*time.Second, func() error {
		o, ok := inf.Get(controller.Key(obj))
		if !ok || rev(o) < rev(obj) {
			return fmt.Errorf("%s not cached yet", controller.Key(obj))
		}
		return nil
	})
}

func rev(o manifests.Object) uint64 {
	n, _ := strconv.ParseUint(o.GetObjectMeta().ResourceVersion, 10, 64)
	return n
}

// sync runs one sync of key. A conflict on its own status write (the
// ReplicaSet cache not yet showing the previous sync's write) is what the
// work queue retries; here the sync is retried until the cache catches up.
func (f *fixture) sync(key string) {
	f.t.Helper()
	controllertest.Eventually(f.t, 5*time.Second, func() error {
		err := f.c.Sync(f.ctx, key)
		if err != nil && !client.IsConflict(err) {
			f.t.Fatalf("Sync(%s): %v", key, err)
		}
		return err
	})
}

// storedPods lists the pods in the store (not the cache).
func (f *fixture) storedPods() []*manifests.Pod {
	f.t.Helper()
	objs, _, err := f.env.Store.List(f.ctx, "pods", "default", manifests.Selector{})
	if err != nil {
		f.t.Fatal(err)
	}
	out := make([]*manifests.Pod, len(objs))
	for i, o := range objs {
		out[i] = o.(*manifests.Pod)
	}
	return out
}

// waitPodCache waits until the pod cache shows exactly the stored pods.
func (f *fixture) waitPodCache() {
	f.t.Helper()
	controllertest.Eventually(f.t, 5*time.Second, func() error {
		stored := f.storedPods()
		cached := f.pods.List(manifests.Selector{})
		if len(stored) != len(cached) {
			return fmt.Errorf("cache has %d pods, store %d", len(cached), len(stored))
		}
		for _, p := range stored {
			o, ok := f.pods.Get(controller.Key(p))
			if !ok || o.GetObjectMeta().ResourceVersion != p.ResourceVersion {
				return fmt.Errorf("pod %s not cached", p.Name)
			}
		}
		return nil
	})
}

func (f *fixture) storedRS(name string) *manifests.ReplicaSet {
	f.t.Helper()
	o, err := f.env.Store.Get(f.ctx, "replicasets", "default", name)
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*manifests.ReplicaSet)
}

// setReady marks a stored pod bound, running and ready since readySince.
func (f *fixture) setReady(p *manifests.Pod, node string, readySince time.Time) *manifests.Pod {
	f.t.Helper()
	cp := manifests.DeepCopy(p).(*manifests.Pod)
	cp.Spec.NodeName = node
	cp.Status.Phase = manifests.PodRunning
	cp.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodReady, Status: manifests.ConditionTrue, LastTransitionTime: readySince}}
	got, err := f.env.Store.Update(f.ctx, cp)
	if err != nil {
		f.t.Fatal(err)
	}
	f.waitCached(got)
	return got.(*manifests.Pod)
}

func TestSyncCreatesAndScalesDown(t *testing.T) {
	f := newFixture(t)
	rs := f.create(newRS("web-abc", 3, map[string]string{"app": "web"})).(*manifests.ReplicaSet)
	f.sync("default/web-abc")
	pods := f.storedPods()
	if len(pods) != 3 {
		t.Fatalf("%d pods after first sync, want 3", len(pods))
	}
	for _, p := range pods {
		ref := manifests.GetControllerOf(p)
		if ref == nil || ref.UID != rs.UID || ref.Kind != "ReplicaSet" || !strings.HasPrefix(p.Name, "web-abc-") || len(p.Name) != len("web-abc-")+5 {
			t.Errorf("pod %s: controller %+v", p.Name, ref)
		}
		if p.Labels["app"] != "web" || p.Spec.Containers[0].Image != "fake://run" {
			t.Errorf("pod %s not from template: %+v", p.Name, p)
		}
	}
	// An immediate second sync, before the cache shows the new pods, must
	// not create more (expectations).
	f.sync("default/web-abc")
	if n := len(f.storedPods()); n != 3 {
		t.Fatalf("%d pods after second sync, want 3", n)
	}
	if n := f.rec.count(EventSuccessfulCreate); n != 3 {
		t.Errorf("%d SuccessfulCreate events, want 3", n)
	}
	f.waitPodCache()
	f.sync("default/web-abc")
	st := f.storedRS("web-abc").Status
	if st.Replicas != 3 || st.FullyLabeledReplicas != 3 || st.ReadyReplicas != 0 || st.ObservedGeneration != 1 {
		t.Errorf("status = %+v", st)
	}

	// Two ready pods, one unscheduled: scaling to 1 deletes the
	// unscheduled one and the ready pod that was ready for less time.
	pods = f.storedPods()
	now := time.Now()
	old := f.setReady(pods[0], "n1", now.Add(-time.Hour))
	f.setReady(pods[1], "n1", now.Add(-time.Minute))
	cur := f.storedRS("web-abc")
	one := int32(1)
	cur.Spec.Replicas = &one
	upd, err := f.env.Store.Update(f.ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	f.waitCached(upd)
	f.sync("default/web-abc")
	left := f.storedPods()
	if len(left) != 1 || left[0].Name != old.Name {
		t.Fatalf("left %v, want only %s", names(left), old.Name)
	}
	if n := f.rec.count(EventSuccessfulDelete); n != 2 {
		t.Errorf("%d SuccessfulDelete events, want 2", n)
	}
	f.waitPodCache()
	f.sync("default/web-abc")
	st = f.storedRS("web-abc").Status
	if st.Replicas != 1 || st.ReadyReplicas != 1 || st.AvailableReplicas != 1 || st.ObservedGeneration != 2 {
		t.Errorf("status = %+v", st)
	}
}

func names(pods []*manifests.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

func TestSyncAdoptsAndReleases(t *testing.T) {
	f := newFixture(t)
	orphan := f.create(&manifests.Pod{
		ObjectMeta: manifests.ObjectMeta{Name: "stray", Namespace: "default", Labels: map[string]string{"app": "db"}},
		Spec:       manifests.PodSpec{Containers: []manifests.Container{{Name: "a", Image: "fake://run"}}},
	}).(*manifests.Pod)
	other := f.create(&manifests.Pod{
		ObjectMeta: manifests.ObjectMeta{Name: "other", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec:       manifests.PodSpec{Containers: []manifests.Container{{Name: "a", Image: "fake://run"}}},
	}).(*manifests.Pod)
	rs := f.create(newRS("db", 2, map[string]string{"app": "db"})).(*manifests.ReplicaSet)
	f.sync("default/db")
	pods := f.storedPods()
	if len(pods) != 3 {
		t.Fatalf("pods %v, want stray, other and one new", names(pods))
	}
	for _, p := range pods {
		ref := manifests.GetControllerOf(p)
		switch {
		case p.Name == other.Name:
			if ref != nil {
				t.Errorf("non-matching pod adopted")
			}
		case ref == nil || ref.UID != rs.UID:
			t.Errorf("pod %s not owned: %+v", p.Name, ref)
		}
	}
	// Relabel the adopted pod: it is released and replaced.
	f.waitPodCache()
	var stray *manifests.Pod
	for _, p := range f.storedPods() {
		if p.Name == orphan.Name {
			stray = p
		}
	}
	stray.Labels = map[string]string{"app": "debug"}
	upd, err := f.env.Store.Update(f.ctx, stray)
	if err != nil {
		t.Fatal(err)
	}
	f.waitCached(upd)
	f.sync("default/db")
	owned := 0
	for _, p := range f.storedPods() {
		ref := manifests.GetControllerOf(p)
		if p.Name == "stray" && ref != nil {
			t.Errorf("relabelled pod still owned")
		}
		if ref != nil && ref.UID == rs.UID {
			owned++
		}
	}
	if owned != 2 {
		t.Errorf("%d owned pods, want 2", owned)
	}
}

func TestSyncDeletedReplicaSetDoesNotCreate(t *testing.T) {
	f := newFixture(t)
	rs := newRS("gone", 2, map[string]string{"app": "gone"})
	now := time.Now()
	rs.DeletionTimestamp = &now
	rs.Finalizers = []string{manifests.FinalizerForeground}
	f.create(rs)
	f.sync("default/gone")
	if n := len(f.storedPods()); n != 0 {
		t.Fatalf("%d pods created for a ReplicaSet being deleted", n)
	}
	f.sync("default/missing") // not in the cache: nothing to do
}

func TestPodsToDeleteOrder(t *testing.T) {
	now := time.Now()
	mk := func(name, node, phase string, readyFor time.Duration, created time.Duration) *manifests.Pod {
		p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: name, CreationTimestamp: now.Add(-created)}}
		p.Spec.NodeName = node
		p.Status.Phase = phase
		if readyFor > 0 {
			p.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodReady, Status: manifests.ConditionTrue, LastTransitionTime: now.Add(-readyFor)}}
		}
		return p
	}
	pods := []*manifests.Pod{
		mk("ready-long", "n", manifests.PodRunning, time.Hour, 2*time.Hour),
		mk("unscheduled", "", manifests.PodPending, 0, 3*time.Hour),
		mk("ready-short", "n", manifests.PodRunning, time.Minute, 2*time.Hour),
		mk("pending", "n", manifests.PodPending, 0, time.Hour),
		mk("notready-old", "n", manifests.PodRunning, 0, 5*time.Hour),
		mk("notready-new", "n", manifests.PodRunning, 0, time.Minute),
	}
	got := names2(PodsToDelete(pods, len(pods), now))
	want := "unscheduled pending notready-new notready-old ready-short ready-long"
	if got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	if got := names2(PodsToDelete(pods, 2, now)); got != "unscheduled pending" {
		t.Errorf("first two %q", got)
	}
}

func names2(pods []*manifests.Pod) string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return strings.Join(out, " ")
}

func TestCalculateStatusMinReadySeconds(t *testing.T) {
	now := time.Now()
	rs := newRS("r", 3, map[string]string{"app": "r", "tier": "x"})
	rs.Generation = 4
	rs.Spec.MinReadySeconds = 30
	ready := func(since time.Duration, labels map[string]string) *manifests.Pod {
		p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Labels: labels}}
		p.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodReady, Status: manifests.ConditionTrue, LastTransitionTime: now.Add(-since)}}
		return p
	}
	full := map[string]string{"app": "r", "tier": "x"}
	pods := []*manifests.Pod{ready(time.Minute, full), ready(10*time.Second, full), {ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"app": "r"}}}}
	s := CalculateStatus(rs, pods, nil, now)
	want := manifests.ReplicaSetStatus{Replicas: 3, FullyLabeledReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 1, ObservedGeneration: 4}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("status %+v, want %+v", s, want)
	}
	s = CalculateStatus(rs, pods, errors.New("quota"), now)
	if len(s.Conditions) != 1 || s.Conditions[0].Reason != "FailedCreate" || s.Conditions[0].Status != "True" {
		t.Errorf("conditions %+v", s.Conditions)
	}
}
