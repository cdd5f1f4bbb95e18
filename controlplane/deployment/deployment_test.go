package deployment

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Eventf(_ context.Context, _ manifests.Object, _, reason, format string, args ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, reason+": "+fmt.Sprintf(format, args...))
	return nil
}

func (r *recorder) has(substr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if strings.Contains(e, substr) {
			return true
		}
	}
	return false
}

type fixture struct {
	t      *testing.T
	ctx    context.Context
	env    *controllertest.Env
	deploy *controller.Informer
	rsets  *controller.Informer
	pods   *controller.Informer
	rec    *recorder
	c      *Controller
	now    time.Time
}

func newFixture(t *testing.T) *fixture {
	env := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fixture{t: t, ctx: ctx, env: env, rec: &recorder{},
		deploy: controller.NewInformer(env.Store, "deployments"),
		rsets:  controller.NewInformer(env.Store, "replicasets"),
		pods:   controller.NewInformer(env.Store, "pods"),
		now:    time.Now(),
	}
	f.c = New(env.Store, f.deploy, f.rsets, f.pods, f.rec)
	f.c.SetClock(func() time.Time { return f.now })
	for _, inf := range []*controller.Informer{f.deploy, f.rsets, f.pods} {
		go inf.Run(ctx)
		if err := inf.WaitForSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func newDeployment(name string, replicas int32, image string) *manifests.Deployment {
	labels := map[string]string{"app": name}
	d := &manifests.Deployment{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.DeploymentSpec{
			Replicas: &replicas,
			Selector: &manifests.LabelSelector{MatchLabels: labels},
			Template: manifests.PodTemplateSpec{
				ObjectMeta: manifests.ObjectMeta{Labels: labels},
				Spec:       manifests.PodSpec{Containers: []manifests.Container{{Name: "app", Image: image}}},
			},
		},
	}
	manifests.Default(d)
	return d
}

func rev(o manifests.Object) uint64 {
	n, _ := strconv.ParseUint(o.GetObjectMeta().ResourceVersion, 10, 64)
	return n
}

// waitCached waits until the matching informer holds obj's revision.
func (f *fixture) waitCached(obj manifests.Object) {
	f.t.Helper()
	inf := f.pods
	switch obj.(type) {
	case *manifests.Deployment:
		inf = f.deploy
	case *manifests.ReplicaSet:
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

// settle waits until the caches show every stored deployment and replicaset.
func (f *fixture) settle() {
	f.t.Helper()
	for _, res := range []string{"deployments", "replicasets"} {
		objs, _, err := f.env.Store.List(f.ctx, res, "default", manifests.Selector{})
		if err != nil {
			f.t.Fatal(err)
		}
		for _, o := range objs {
			f.waitCached(o)
		}
		inf := f.deploy
		if res == "replicasets" {
			inf = f.rsets
		}
		controllertest.Eventually(f.t, 5*time.Second, func() error {
			if n := len(inf.List(manifests.Selector{})); n != len(objs) {
				return fmt.Errorf("%d %s cached, %d stored", n, res, len(objs))
			}
			return nil
		})
	}
}

func (f *fixture) create(obj manifests.Object) manifests.Object {
	f.t.Helper()
	got, err := f.env.Store.Create(f.ctx, obj)
	if err != nil {
		f.t.Fatal(err)
	}
	f.waitCached(got)
	return got
}

func (f *fixture) sync(name string) {
	f.t.Helper()
	f.settle()
	if err := f.c.Sync(f.ctx, "default/"+name); err != nil {
		f.t.Fatalf("Sync(%s): %v", name, err)
	}
	f.settle()
}

func (f *fixture) deployment(name string) *manifests.Deployment {
	f.t.Helper()
	o, err := f.env.Store.Get(f.ctx, "deployments", "default", name)
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*manifests.Deployment)
}

func (f *fixture) update(obj manifests.Object) {
	f.t.Helper()
	got, err := f.env.Store.Update(f.ctx, obj)
	if err != nil {
		f.t.Fatal(err)
	}
	f.waitCached(got)
}

// replicaSets returns the stored replicasets, oldest first.
func (f *fixture) replicaSets() []*manifests.ReplicaSet {
	f.t.Helper()
	objs, _, err := f.env.Store.List(f.ctx, "replicasets", "default", manifests.Selector{})
	if err != nil {
		f.t.Fatal(err)
	}
	out := make([]*manifests.ReplicaSet, len(objs))
	for i, o := range objs {
		out[i] = o.(*manifests.ReplicaSet)
	}
	sortByCreation(out)
	return out
}

// runReplicaSets plays the ReplicaSet controller: every replicaset's
// status shows spec.replicas pods, all available (or only avail of them).
func (f *fixture) runReplicaSets(avail func(rs *manifests.ReplicaSet) int32) {
	f.t.Helper()
	for _, rs := range f.replicaSets() {
		n := rsReplicas(rs)
		a := n
		if avail != nil {
			a = avail(rs)
		}
		want := manifests.ReplicaSetStatus{Replicas: n, FullyLabeledReplicas: n, ReadyReplicas: a, AvailableReplicas: a, ObservedGeneration: rs.Generation}
		if fmt.Sprint(rs.Status) == fmt.Sprint(want) {
			continue
		}
		rs.Status = want
		f.update(rs)
	}
}

// newUnavailable makes the pods of revisions after the first unavailable.
func newUnavailable(rs *manifests.ReplicaSet) int32 {
	if Revision(rs) > 1 {
		return 0
	}
	return rsReplicas(rs)
}

func (f *fixture) sizes() string {
	var parts []string
	rss := f.replicaSets()
	sortByRevision(rss)
	for _, rs := range rss {
		parts = append(parts, fmt.Sprintf("%s=%d", rs.Annotations[manifests.RevisionAnnotation], rsReplicas(rs)))
	}
	return strings.Join(parts, " ")
}

func TestSyncCreatesReplicaSet(t *testing.T) {
	f := newFixture(t)
	d := f.create(newDeployment("web", 3, "fake://run")).(*manifests.Deployment)
	f.sync("web")
	rss := f.replicaSets()
	if len(rss) != 1 {
		t.Fatalf("%d replicasets, want 1", len(rss))
	}
	rs := rss[0]
	hash := ComputeHash(&d.Spec.Template, nil)
	if rs.Name != "web-"+hash || rs.Labels[manifests.DefaultDeploymentUniqueLabelKey] != hash ||
		rs.Spec.Template.Labels[manifests.DefaultDeploymentUniqueLabelKey] != hash || rs.Spec.Selector.MatchLabels[manifests.DefaultDeploymentUniqueLabelKey] != hash {
		t.Errorf("replicaset %s labels %v selector %v", rs.Name, rs.Labels, rs.Spec.Selector)
	}
	if ref := manifests.GetControllerOf(rs); ref == nil || ref.UID != d.UID || ref.Kind != "Deployment" {
		t.Errorf("controller %+v", ref)
	}
	if rsReplicas(rs) != 3 || Revision(rs) != 1 || rs.Annotations[manifests.DesiredReplicasAnnotation] != "3" || rs.Annotations[manifests.MaxReplicasAnnotation] != "4" {
		t.Errorf("replicas %d annotations %v", rsReplicas(rs), rs.Annotations)
	}
	if err := manifests.Validate(rs); err != nil {
		t.Errorf("created replicaset invalid: %v", err)
	}
	if !f.rec.has("ScalingReplicaSet: Scaled up replica set web-" + hash + " from 0 to 3") {
		t.Errorf("events %v", f.rec.events)
	}
	got := f.deployment("web")
	if Revision(got) != 1 {
		t.Errorf("deployment revision %q", got.Annotations[manifests.RevisionAnnotation])
	}
	if c := getCondition(&got.Status, manifests.DeploymentProgressing); c == nil || c.Reason != ReasonNewReplicaSetCreated {
		t.Errorf("progressing %+v", c)
	}

	// Once the pods are available the rollout is complete.
	f.runReplicaSets(nil)
	f.sync("web")
	got = f.deployment("web")
	st := got.Status
	if st.Replicas != 3 || st.UpdatedReplicas != 3 || st.AvailableReplicas != 3 || st.ReadyReplicas != 3 || st.UnavailableReplicas != 0 || st.ObservedGeneration != got.Generation {
		t.Errorf("status %+v", st)
	}
	if c := getCondition(&st, manifests.DeploymentProgressing); c == nil || c.Reason != ReasonNewReplicaSetAvailable || c.Status != "True" {
		t.Errorf("progressing %+v", c)
	}
	if c := getCondition(&st, manifests.DeploymentAvailable); c == nil || c.Status != "True" || c.Reason != ReasonMinimumReplicasAvail {
		t.Errorf("available %+v", c)
	}
}

func TestRollingUpdateRespectsSurgeAndUnavailable(t *testing.T) {
	f := newFixture(t)
	f.create(newDeployment("web", 4, "fake://run")) // 25%: maxSurge 1, maxUnavailable 1
	f.sync("web")
	f.runReplicaSets(nil)
	f.sync("web")

	d := f.deployment("web")
	d.Spec.Template.Spec.Containers[0].Image = "fake://run?v=2"
	f.update(d)
	// Step by step, with new pods becoming available only when the
	// controller has moved on: total never above 5, available never
	// below 3.
	steps := 0
	for ; steps < 20; steps++ {
		f.sync("web")
		var total, avail int32
		for _, rs := range f.replicaSets() {
			total += rsReplicas(rs)
			avail += min(rs.Status.AvailableReplicas, rsReplicas(rs))
		}
		if total > 5 {
			t.Fatalf("step %d: %d replicas > replicas+maxSurge (%s)", steps, total, f.sizes())
		}
		if avail < 3 {
			t.Fatalf("step %d: %d available < replicas-maxUnavailable (%s)", steps, avail, f.sizes())
		}
		f.runReplicaSets(nil)
		st := f.deployment("web").Status
		if st.UpdatedReplicas == 4 && st.Replicas == 4 && st.AvailableReplicas == 4 {
			break
		}
	}
	if got := f.sizes(); got != "1=0 2=4" {
		t.Fatalf("after %d steps: revision=replicas %q, want 1=0 2=4", steps, got)
	}
	f.sync("web")
	if got := f.deployment("web"); Revision(got) != 2 || !DeploymentComplete(got, &got.Status) {
		t.Errorf("deployment revision %d status %+v", Revision(got), got.Status)
	}
}

func TestRollingUpdateFirstStep(t *testing.T) {
	f := newFixture(t)
	f.create(newDeployment("web", 4, "fake://run"))
	f.sync("web")
	f.runReplicaSets(nil)
	f.sync("web")
	d := f.deployment("web")
	d.Spec.Template.Spec.Containers[0].Image = "fake://run?v=2"
	f.update(d)
	// The new RS gets 1 (maxSurge), the old one loses 1 (maxUnavailable).
	f.sync("web")
	if got := f.sizes(); got != "1=3 2=1" {
		t.Fatalf("after first sync %q, want 1=3 2=1", got)
	}
	// While the old RS still has 4 pods (status), the new one may not grow:
	// 4+1 pods exist, replicas+maxSurge = 5.
	f.sync("web")
	if got := f.sizes(); got != "1=3 2=1" {
		t.Fatalf("grew while the old pods exist: %q, want 1=3 2=1", got)
	}
	// Once the old RS's pod is gone, the new RS grows to the surge limit
	// (3+2 = replicas+maxSurge); its pods are not available yet.
	f.runReplicaSets(newUnavailable)
	f.sync("web")
	if got := f.sizes(); got != "1=3 2=2" {
		t.Fatalf("after second sync %q, want 1=3 2=2", got)
	}
	// Nothing may move until new pods become available.
	f.sync("web")
	if got := f.sizes(); got != "1=3 2=2" {
		t.Fatalf("after third sync %q, want 1=3 2=2", got)
	}
	f.runReplicaSets(nil)
	f.sync("web")
	if got := f.sizes(); got != "1=1 2=2" {
		t.Fatalf("after the new pods are available %q, want 1=1 2=2", got)
	}
}

func TestRollbackReusesOldReplicaSet(t *testing.T) {
	f := newFixture(t)
	f.create(newDeployment("web", 2, "fake://run"))
	f.sync("web")
	f.runReplicaSets(nil)
	f.sync("web")
	first := f.replicaSets()[0]
	d := f.deployment("web")
	oldTemplate := manifests.DeepCopy(d).(*manifests.Deployment).Spec.Template
	d.Spec.Template.Spec.Containers[0].Image = "fake://run?v=2"
	f.update(d)
	for range 10 {
		f.sync("web")
		f.runReplicaSets(nil)
	}
	if got := f.sizes(); got != "1=0 2=2" {
		t.Fatalf("rollout: %q", got)
	}
	// Undo: the client copies the old template back.
	d = f.deployment("web")
	d.Spec.Template = oldTemplate
	f.update(d)
	for range 10 {
		f.sync("web")
		f.runReplicaSets(nil)
	}
	rss := f.replicaSets()
	sortByRevision(rss)
	if len(rss) != 2 || rss[1].UID != first.UID || Revision(rss[1]) != 3 || rsReplicas(rss[1]) != 2 || rsReplicas(rss[0]) != 0 {
		t.Fatalf("after undo: %s", f.sizes())
	}
	if got := f.deployment("web"); Revision(got) != 3 {
		t.Errorf("deployment revision %d, want 3", Revision(got))
	}
}

func TestRecreate(t *testing.T) {
	f := newFixture(t)
	d := newDeployment("db", 2, "fake://run")
	d.Spec.Strategy = manifests.DeploymentStrategy{Type: manifests.RecreateDeploymentStrategyType}
	f.create(d)
	f.sync("db")
	f.runReplicaSets(nil)
	f.sync("db")
	old := f.replicaSets()[0]
	// One old pod still exists.
	pod := &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: "db-old-1", Namespace: "default", Labels: old.Spec.Template.Labels},
		Spec:       old.Spec.Template.Spec,
	}
	ref, _ := manifests.NewControllerRef(old)
	pod.OwnerReferences = []manifests.OwnerReference{ref}
	pod = f.create(pod).(*manifests.Pod)

	d = f.deployment("db")
	d.Spec.Template.Spec.Containers[0].Image = "fake://run?v=2"
	f.update(d)
	f.sync("db")
	if got := f.sizes(); got != "1=0" {
		t.Fatalf("old not scaled to 0 first: %q", got)
	}
	f.runReplicaSets(nil) // old RS status: 0 replicas, but its pod is still there
	f.sync("db")
	if got := f.sizes(); got != "1=0" {
		t.Fatalf("new replicaset created while old pods run: %q", got)
	}
	if _, err := f.env.Store.Delete(f.ctx, "pods", "default", pod.Name, 0); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, func() error {
		if _, ok := f.pods.Get("default/" + pod.Name); ok {
			return fmt.Errorf("pod still cached")
		}
		return nil
	})
	f.sync("db")
	if got := f.sizes(); got != "1=0 2=2" {
		t.Fatalf("after old pods are gone: %q", got)
	}
}

func TestPausedMakesNoProgress(t *testing.T) {
	f := newFixture(t)
	f.create(newDeployment("web", 2, "fake://run"))
	f.sync("web")
	f.runReplicaSets(nil)
	d := f.deployment("web")
	d.Spec.Paused = true
	d.Spec.Template.Spec.Containers[0].Image = "fake://run?v=2"
	f.update(d)
	f.sync("web")
	if got := f.sizes(); got != "1=2" {
		t.Fatalf("paused deployment rolled: %q", got)
	}
	if c := getCondition(&f.deployment("web").Status, manifests.DeploymentProgressing); c == nil || c.Reason != ReasonDeploymentPaused || c.Status != "Unknown" {
		t.Errorf("progressing %+v", c)
	}
	// Scaling still works while paused.
	d = f.deployment("web")
	three := int32(3)
	d.Spec.Replicas = &three
	f.update(d)
	f.sync("web")
	if got := f.sizes(); got != "1=3" {
		t.Fatalf("paused deployment not scaled: %q", got)
	}
	d = f.deployment("web")
	d.Spec.Paused = false
	f.update(d)
	f.sync("web")
	if got := f.sizes(); got != "1=3 2=1" {
		t.Fatalf("resumed: %q", got)
	}
	if c := getCondition(&f.deployment("web").Status, manifests.DeploymentProgressing); c == nil || c.Status != "True" {
		t.Errorf("progressing after resume %+v", c)
	}
}

func TestProportionalScalingDuringRollout(t *testing.T) {
	f := newFixture(t)
	f.create(newDeployment("web", 10, "fake://run")) // maxSurge 3, maxUnavailable 2
	f.sync("web")
	f.runReplicaSets(nil)
	f.sync("web")
	d := f.deployment("web")
	d.Spec.Template.Spec.Containers[0].Image = "fake://run?v=2"
	f.update(d)
	f.sync("web")
	f.runReplicaSets(newUnavailable)
	f.sync("web")
	if got := f.sizes(); got != "1=8 2=5" {
		t.Fatalf("mid-rollout %q", got)
	}
	d = f.deployment("web")
	twenty := int32(20)
	d.Spec.Replicas = &twenty
	f.update(d)
	f.sync("web")
	// 13 replicas (10+3 surge) become 25 (20+5 surge) in proportion.
	if got := f.sizes(); got != "1=15 2=10" {
		t.Fatalf("proportional scaling %q", got)
	}
}

func TestProgressDeadlineExceeded(t *testing.T) {
	f := newFixture(t)
	d := newDeployment("web", 2, "fake://run")
	ten := int32(10)
	d.Spec.ProgressDeadlineSeconds = &ten
	f.create(d)
	f.sync("web")
	f.runReplicaSets(func(*manifests.ReplicaSet) int32 { return 0 }) // never available
	f.sync("web")
	if c := getCondition(&f.deployment("web").Status, manifests.DeploymentProgressing); c == nil || c.Status != "True" {
		t.Fatalf("progressing %+v", c)
	}
	f.now = f.now.Add(11 * time.Second)
	f.sync("web")
	st := f.deployment("web").Status
	c := getCondition(&st, manifests.DeploymentProgressing)
	if c == nil || c.Status != "False" || c.Reason != ReasonProgressDeadlineExceed {
		t.Fatalf("progressing %+v", c)
	}
	if a := getCondition(&st, manifests.DeploymentAvailable); a == nil || a.Status != "False" {
		t.Errorf("available %+v", a)
	}
}

func TestRevisionHistoryCleanup(t *testing.T) {
	f := newFixture(t)
	d := newDeployment("web", 1, "fake://run")
	one := int32(1)
	d.Spec.RevisionHistoryLimit = &one
	f.create(d)
	for v := range 4 {
		f.sync("web")
		for range 6 {
			f.runReplicaSets(nil)
			f.sync("web")
		}
		if v < 3 {
			d = f.deployment("web")
			d.Spec.Template.Spec.Containers[0].Image = fmt.Sprintf("fake://run?v=%d", v+2)
			f.update(d)
		}
	}
	if got := f.sizes(); got != "3=0 4=1" {
		t.Fatalf("after 4 revisions with revisionHistoryLimit 1: %q", got)
	}
}

func TestComputeHash(t *testing.T) {
	a := newDeployment("a", 1, "img:1").Spec.Template
	b := newDeployment("a", 1, "img:2").Spec.Template
	ha, hb := ComputeHash(&a, nil), ComputeHash(&a, nil)
	if ha != hb || ha == ComputeHash(&b, nil) {
		t.Errorf("hash not a function of the template: %s %s %s", ha, hb, ComputeHash(&b, nil))
	}
	one := int32(1)
	if ComputeHash(&a, &one) == ha {
		t.Error("collisionCount ignored")
	}
	for _, r := range ha {
		if !strings.ContainsRune(safeAlphanums, r) {
			t.Errorf("hash %q has unsafe %q", ha, r)
		}
	}
	c := *manifests.DeepCopy(&manifests.ReplicaSet{Spec: manifests.ReplicaSetSpec{Template: a}}).(*manifests.ReplicaSet)
	c.Spec.Template.Labels[manifests.DefaultDeploymentUniqueLabelKey] = ha
	if !EqualIgnoreHash(&a, &c.Spec.Template) || EqualIgnoreHash(&a, &b) {
		t.Error("EqualIgnoreHash")
	}
}

func TestResolveFenceposts(t *testing.T) {
	pct := func(s string) *manifests.IntOrString { v := manifests.FromString(s); return &v }
	num := func(n int32) *manifests.IntOrString { v := manifests.FromInt(n); return &v }
	for _, c := range []struct {
		surge, unavail *manifests.IntOrString
		desired        int32
		ws, wu         int32
	}{
		{pct("25%"), pct("25%"), 10, 3, 2},
		{pct("25%"), pct("25%"), 6, 2, 1},
		{pct("25%"), pct("25%"), 1, 1, 0},
		{num(0), num(0), 3, 0, 1},
		{pct("0%"), pct("10%"), 5, 0, 1},
		{num(2), pct("50%"), 5, 2, 2},
	} {
		s, u, err := ResolveFenceposts(c.surge, c.unavail, c.desired)
		if err != nil || s != c.ws || u != c.wu {
			t.Errorf("ResolveFenceposts(%s, %s, %d) = %d, %d, %v; want %d, %d", c.surge, c.unavail, c.desired, s, u, err, c.ws, c.wu)
		}
	}
}
