package statefulset

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

type fixture struct {
	t                        *testing.T
	ctx                      context.Context
	st                       *store.Store
	sets, pods, claims, revs *controllertest.Cache
	c                        *Controller
	rec                      *controllertest.Recorder
}

func newFixture(t *testing.T) *fixture {
	env := controllertest.Start(t)
	f := &fixture{t: t, ctx: context.Background(), st: env.Store, sets: &controllertest.Cache{}, pods: &controllertest.Cache{}, claims: &controllertest.Cache{}, revs: &controllertest.Cache{}, rec: &controllertest.Recorder{}}
	f.c = New(env.Store, f.sets, f.pods, f.claims, f.revs, f.rec)
	return f
}

func (f *fixture) refresh() {
	f.sets.Load(f.t, f.st, "statefulsets")
	f.pods.Load(f.t, f.st, "pods")
	f.claims.Load(f.t, f.st, "persistentvolumeclaims")
	f.revs.Load(f.t, f.st, "controllerrevisions")
}

// sync refreshes the caches, syncs once and refreshes them again.
func (f *fixture) sync() {
	f.t.Helper()
	f.refresh()
	if err := f.c.Sync(f.ctx, "default/web"); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

// apply creates or updates the StatefulSet "web" after change.
func (f *fixture) apply(change func(*manifests.StatefulSet)) *manifests.StatefulSet {
	f.t.Helper()
	ss := &manifests.StatefulSet{}
	if o, ok := f.sets.Get("default/web"); ok {
		ss = manifests.DeepCopy(o).(*manifests.StatefulSet)
	} else {
		ss.APIVersion, ss.Kind, ss.Namespace, ss.Name = "apps/v1", "StatefulSet", "default", "web"
		ss.Spec.ServiceName = "nginx"
		ss.Spec.Replicas = new(int32(3))
		ss.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}}
		ss.Spec.Template.Labels = map[string]string{"app": "nginx"}
		ss.Spec.Template.Spec.Containers = []manifests.Container{{Name: "nginx", Image: "nginx:1"}}
	}
	if change != nil {
		change(ss)
	}
	manifests.Default(ss)
	if err := manifests.Validate(ss); err != nil {
		f.t.Fatal(err)
	}
	var out manifests.Object
	var err error
	if ss.ResourceVersion == "" {
		out, err = f.st.Create(f.ctx, ss)
	} else {
		out, err = f.st.Update(f.ctx, ss)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
	return out.(*manifests.StatefulSet)
}

func withClaims(ss *manifests.StatefulSet) {
	ss.Spec.Template.Spec.Containers[0].VolumeMounts = []manifests.VolumeMount{{Name: "www", MountPath: "/data"}}
	c := manifests.PersistentVolumeClaim{}
	c.Name = "www"
	c.Spec.AccessModes = []string{manifests.ReadWriteOnce}
	c.Spec.Resources.Requests = manifests.ResourceList{"storage": manifests.Quantity("1Gi")}
	ss.Spec.VolumeClaimTemplates = []manifests.PersistentVolumeClaim{c}
}

func (f *fixture) pod(name string) *manifests.Pod {
	o, ok := f.pods.Get("default/" + name)
	if !ok {
		return nil
	}
	return o.(*manifests.Pod)
}

// names returns "name:image" of every pod, sorted.
func (f *fixture) names() string {
	var out []string
	for _, o := range f.pods.List(manifests.Selector{}) {
		p := o.(*manifests.Pod)
		out = append(out, p.Name+":"+p.Spec.Containers[0].Image)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func (f *fixture) expect(step, want string) {
	f.t.Helper()
	if got := f.names(); got != want {
		f.t.Fatalf("%s: pods %q, want %q", step, got, want)
	}
}

// ready marks the named pods (every pod when none is named) Running and
// Ready, as agents report.
func (f *fixture) ready(names ...string) {
	f.t.Helper()
	for _, o := range f.pods.List(manifests.Selector{}) {
		p := manifests.DeepCopy(o).(*manifests.Pod)
		if len(names) > 0 && !contains(names, p.Name) || manifests.IsPodReady(p) {
			continue
		}
		p.Status.Phase = manifests.PodRunning
		p.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodReady, Status: manifests.ConditionTrue}}
		if _, err := f.st.Update(f.ctx, p); err != nil {
			f.t.Fatal(err)
		}
	}
	f.refresh()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (f *fixture) status() manifests.StatefulSetStatus {
	f.t.Helper()
	o, err := f.st.Get(f.ctx, "statefulsets", "default", "web")
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*manifests.StatefulSet).Status
}

func (f *fixture) deletePod(name string) {
	f.t.Helper()
	if _, err := f.st.Delete(f.ctx, "pods", "default", name, 0); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

// OrderedReady: web-1 is created only once web-0 is running and ready,
// each pod gets its stable identity.
func TestOrderedCreate(t *testing.T) {
	f := newFixture(t)
	ss := f.apply(nil)
	f.sync()
	f.expect("first sync", "web-0:nginx:1")
	f.sync()
	f.expect("web-0 not ready", "web-0:nginx:1")
	f.ready()
	f.sync()
	f.expect("web-0 ready", "web-0:nginx:1 web-1:nginx:1")
	f.ready("web-1")
	f.sync()
	f.expect("web-1 ready", "web-0:nginx:1 web-1:nginx:1 web-2:nginx:1")
	f.ready()
	f.sync()

	p := f.pod("web-2")
	rev := Revision(ss)
	if p.Spec.Hostname != "web-2" || p.Spec.Subdomain != "nginx" || p.Labels[manifests.StatefulSetPodNameLabel] != "web-2" ||
		p.Labels[manifests.PodIndexLabel] != "2" || p.Labels[manifests.ControllerRevisionHashLabel] != rev || p.Labels["app"] != "nginx" {
		t.Errorf("identity of web-2: hostname %q subdomain %q labels %v (revision %s)", p.Spec.Hostname, p.Spec.Subdomain, p.Labels, rev)
	}
	if ref := manifests.GetControllerOf(p); ref == nil || ref.Kind != "StatefulSet" || ref.UID != ss.UID {
		t.Errorf("controller of web-2 = %+v", ref)
	}
	st := f.status()
	if st.Replicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.CurrentReplicas != 3 || st.UpdatedReplicas != 3 ||
		st.CurrentRevision != rev || st.UpdateRevision != rev || st.ObservedGeneration != ss.Generation {
		t.Errorf("status = %+v", st)
	}
	if !f.rec.Has(EventSuccessfulCreate) {
		t.Errorf("events %v", f.rec.Reasons())
	}
}

// Scale-down removes the highest ordinal first, one at a time, waiting
// until the removed pod is gone.
func TestScaleDownReverseOrder(t *testing.T) {
	f := newFixture(t)
	f.apply(nil)
	for range 3 {
		f.sync()
		f.ready()
	}
	f.expect("scaled up", "web-0:nginx:1 web-1:nginx:1 web-2:nginx:1")
	f.apply(func(ss *manifests.StatefulSet) { ss.Spec.Replicas = new(int32(0)) })

	// A stale cache still showing web-2 after its deletion: web-1 waits.
	f.refresh()
	if err := f.c.Sync(f.ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	f.sets.Load(t, f.st, "statefulsets")
	if err := f.c.Sync(f.ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	f.expect("first step", "web-0:nginx:1 web-1:nginx:1")
	f.sync()
	f.expect("second step", "web-0:nginx:1")
	f.sync()
	f.expect("third step", "")
	if st := f.status(); st.Replicas != 0 {
		t.Errorf("status = %+v", st)
	}
}

// An unhealthy pod holds an OrderedReady scale-down.
func TestScaleDownWaitsForHealthy(t *testing.T) {
	f := newFixture(t)
	f.apply(nil)
	for range 3 {
		f.sync()
		f.ready()
	}
	p := manifests.DeepCopy(f.pod("web-0")).(*manifests.Pod)
	p.Status.Conditions[0].Status = manifests.ConditionFalse
	if _, err := f.st.Update(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	f.apply(func(ss *manifests.StatefulSet) { ss.Spec.Replicas = new(int32(1)) })
	f.sync()
	f.expect("web-0 unready", "web-0:nginx:1 web-1:nginx:1 web-2:nginx:1")
	f.ready()
	f.sync()
	f.expect("web-0 ready again", "web-0:nginx:1 web-1:nginx:1")
}

// A rolling update replaces pods from the highest ordinal down, one at a
// time, and stops at the partition.
func TestRollingUpdatePartition(t *testing.T) {
	f := newFixture(t)
	old := f.apply(nil)
	for range 3 {
		f.sync()
		f.ready()
	}
	f.sync()
	oldRev := Revision(old)
	ss := f.apply(func(ss *manifests.StatefulSet) {
		ss.Spec.Template.Spec.Containers[0].Image = "nginx:2"
		ss.Spec.UpdateStrategy.RollingUpdate.Partition = new(int32(1))
	})
	newRev := Revision(ss)

	f.sync()
	f.expect("web-2 replaced first", "web-0:nginx:1 web-1:nginx:1")
	f.sync()
	f.expect("web-2 recreated", "web-0:nginx:1 web-1:nginx:1 web-2:nginx:2")
	f.sync()
	f.expect("web-1 waits for web-2", "web-0:nginx:1 web-1:nginx:1 web-2:nginx:2")
	f.ready()
	f.sync()
	f.expect("web-1 replaced", "web-0:nginx:1 web-2:nginx:2")
	f.sync()
	f.ready()
	f.sync()
	f.expect("partition holds web-0", "web-0:nginx:1 web-1:nginx:2 web-2:nginx:2")
	st := f.status()
	if st.CurrentRevision != oldRev || st.UpdateRevision != newRev || st.UpdatedReplicas != 2 || st.CurrentReplicas != 1 {
		t.Errorf("status with partition 1 = %+v", st)
	}

	// A pod below the partition that is deleted comes back at the
	// current revision.
	f.deletePod("web-0")
	f.sync()
	f.expect("web-0 recreated at the current revision", "web-0:nginx:1 web-1:nginx:2 web-2:nginx:2")
	if p := f.pod("web-0"); p.Labels[manifests.ControllerRevisionHashLabel] != oldRev || p.Spec.Hostname != "web-0" || p.Spec.NodeName != "" {
		t.Errorf("web-0 recreated with revision %q hostname %q node %q", p.Labels[manifests.ControllerRevisionHashLabel], p.Spec.Hostname, p.Spec.NodeName)
	}
	f.ready()

	f.apply(func(ss *manifests.StatefulSet) { ss.Spec.UpdateStrategy.RollingUpdate.Partition = new(int32(0)) })
	f.sync()
	f.sync()
	f.ready()
	f.sync()
	f.expect("partition 0", "web-0:nginx:2 web-1:nginx:2 web-2:nginx:2")
	if st := f.status(); st.CurrentRevision != newRev || st.CurrentReplicas != 3 || st.UpdatedReplicas != 3 {
		t.Errorf("status after the update = %+v", st)
	}
}

// OnDelete replaces nothing by itself; a deleted pod comes back at the
// update revision.
func TestOnDelete(t *testing.T) {
	f := newFixture(t)
	f.apply(func(ss *manifests.StatefulSet) {
		ss.Spec.UpdateStrategy = manifests.StatefulSetUpdateStrategy{Type: manifests.OnDeleteStatefulSetStrategyType}
	})
	for range 3 {
		f.sync()
		f.ready()
	}
	f.apply(func(ss *manifests.StatefulSet) { ss.Spec.Template.Spec.Containers[0].Image = "nginx:2" })
	f.sync()
	f.sync()
	f.expect("no update", "web-0:nginx:1 web-1:nginx:1 web-2:nginx:1")
	f.deletePod("web-1")
	f.sync()
	f.expect("web-1 recreated", "web-0:nginx:1 web-1:nginx:2 web-2:nginx:1")
}

// A deleted or failed pod is recreated under the same name.
func TestPodRecreatedWithSameName(t *testing.T) {
	f := newFixture(t)
	f.apply(nil)
	for range 3 {
		f.sync()
		f.ready()
	}
	uid := f.pod("web-1").UID
	f.deletePod("web-1")
	f.sync()
	if p := f.pod("web-1"); p == nil || p.UID == uid {
		t.Fatalf("web-1 not recreated: %+v", p)
	}
	f.ready()

	p := manifests.DeepCopy(f.pod("web-2")).(*manifests.Pod)
	uid = p.UID
	p.Status.Phase = manifests.PodFailed
	if _, err := f.st.Update(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if p := f.pod("web-2"); p == nil || p.UID == uid || p.Status.Phase != manifests.PodPending {
		t.Fatalf("failed web-2 not recreated: %+v", p)
	}
	if !f.rec.Has(EventRecreatingPod) {
		t.Errorf("events %v", f.rec.Reasons())
	}
}

// Claims are created per template and ordinal before the pod, mounted
// by it, reused when the pod is recreated and kept on scale-down
// (Retain).
func TestClaimsPerOrdinal(t *testing.T) {
	f := newFixture(t)
	f.apply(withClaims)
	for range 3 {
		f.sync()
		f.ready()
	}
	claimUID := map[string]string{}
	for i, name := range []string{"www-web-0", "www-web-1", "www-web-2"} {
		o, ok := f.claims.Get("default/" + name)
		if !ok {
			t.Fatalf("claim %s missing", name)
		}
		c := o.(*manifests.PersistentVolumeClaim)
		claimUID[name] = c.UID
		if c.Labels["app"] != "nginx" || len(c.OwnerReferences) != 0 || c.Spec.Resources.Requests["storage"] != "1Gi" {
			t.Errorf("claim %s: labels %v owners %v spec %+v", name, c.Labels, c.OwnerReferences, c.Spec)
		}
		p := f.pod("web-" + string(rune('0'+i)))
		if len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].PersistentVolumeClaim == nil || p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != name {
			t.Errorf("pod %s volumes %+v", p.Name, p.Spec.Volumes)
		}
	}

	f.deletePod("web-1")
	f.sync()
	p := f.pod("web-1")
	if p == nil || p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "www-web-1" {
		t.Fatalf("recreated web-1: %+v", p)
	}
	if o, _ := f.claims.Get("default/www-web-1"); o == nil || o.GetObjectMeta().UID != claimUID["www-web-1"] {
		t.Errorf("claim www-web-1 replaced: %+v", o)
	}
	f.ready()

	// A claim deleted under a pod that still exists is made again.
	if _, err := f.st.Delete(f.ctx, "persistentvolumeclaims", "default", "www-web-0", 0); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if _, ok := f.claims.Get("default/www-web-0"); !ok {
		t.Error("claim www-web-0 not recreated")
	}

	f.apply(func(ss *manifests.StatefulSet) { ss.Spec.Replicas = new(int32(1)) })
	f.sync()
	f.sync()
	f.sync()
	f.expect("scaled down", "web-0:nginx:1")
	for _, name := range []string{"www-web-1", "www-web-2"} {
		if _, ok := f.claims.Get("default/" + name); !ok {
			t.Errorf("claim %s deleted under Retain", name)
		}
	}
	// Scaling up again reattaches the same claims.
	f.apply(func(ss *manifests.StatefulSet) { ss.Spec.Replicas = new(int32(2)) })
	f.sync()
	if o, _ := f.claims.Get("default/www-web-1"); o == nil || o.GetObjectMeta().UID != claimUID["www-web-1"] {
		t.Errorf("claim www-web-1 after scale-up: %+v", o)
	}
	if p := f.pod("web-1"); p == nil || p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "www-web-1" {
		t.Errorf("web-1 after scale-up: %+v", p)
	}
}

// whenScaled Delete removes the claims of removed ordinals once their pods
// are gone; whenDeleted Delete makes the set the claims' owner.
func TestClaimRetentionDelete(t *testing.T) {
	f := newFixture(t)
	ss := f.apply(func(ss *manifests.StatefulSet) {
		withClaims(ss)
		ss.Spec.PersistentVolumeClaimRetentionPolicy = &manifests.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: "Delete", WhenScaled: "Delete"}
	})
	for range 3 {
		f.sync()
		f.ready()
	}
	o, ok := f.claims.Get("default/www-web-2")
	if !ok {
		t.Fatal("claim www-web-2 missing")
	}
	if refs := o.GetObjectMeta().OwnerReferences; len(refs) != 1 || refs[0].UID != ss.UID || refs[0].Kind != "StatefulSet" {
		t.Errorf("owners of www-web-2 = %+v", refs)
	}
	f.apply(func(ss *manifests.StatefulSet) { ss.Spec.Replicas = new(int32(2)) })
	f.sync()
	f.expect("scaled down", "web-0:nginx:1 web-1:nginx:1")
	f.sync()
	if _, ok := f.claims.Get("default/www-web-2"); ok {
		t.Error("claim www-web-2 kept under whenScaled Delete")
	}
	if _, ok := f.claims.Get("default/www-web-1"); !ok {
		t.Error("claim www-web-1 deleted")
	}

	// Switching whenDeleted to Retain drops the owner reference.
	f.apply(func(ss *manifests.StatefulSet) { ss.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted = "Retain" })
	f.sync()
	if o, _ := f.claims.Get("default/www-web-0"); o == nil || len(o.GetObjectMeta().OwnerReferences) != 0 {
		t.Errorf("www-web-0 after Retain: %+v", o)
	}
}

// Parallel creates and removes every pod at once.
func TestParallel(t *testing.T) {
	f := newFixture(t)
	f.apply(func(ss *manifests.StatefulSet) {
		ss.Spec.PodManagementPolicy = manifests.ParallelPodManagement
		ss.Spec.Ordinals = &manifests.StatefulSetOrdinals{Start: 5}
	})
	f.sync()
	f.expect("all at once", "web-5:nginx:1 web-6:nginx:1 web-7:nginx:1")
	f.apply(func(ss *manifests.StatefulSet) { ss.Spec.Replicas = new(int32(1)) })
	f.sync()
	f.expect("scaled down at once (pods not even ready)", "web-5:nginx:1")
}

// Each template gets a ControllerRevision owned by the set; going back to
// an earlier template renumbers its revision; old ones are pruned beyond
// revisionHistoryLimit.
func TestRevisions(t *testing.T) {
	f := newFixture(t)
	f.apply(func(ss *manifests.StatefulSet) {
		ss.Spec.Replicas = new(int32(1))
		ss.Spec.RevisionHistoryLimit = new(int32(1))
	})
	rev := func() (names []string, nums map[string]int64) {
		nums = map[string]int64{}
		for _, o := range f.revs.List(manifests.Selector{}) {
			r := o.(*manifests.ControllerRevision)
			names = append(names, r.Name)
			nums[r.Name] = r.Revision
		}
		return names, nums
	}
	var revNames []string
	for i, image := range []string{"nginx:1", "nginx:2", "nginx:3"} {
		ss := f.apply(func(ss *manifests.StatefulSet) { ss.Spec.Template.Spec.Containers[0].Image = image })
		revNames = append(revNames, Revision(ss))
		f.sync()
		f.sync()
		f.ready()
		f.sync()
		o, ok := f.revs.Get("default/" + Revision(ss))
		if !ok {
			t.Fatalf("%s: no revision %s", image, Revision(ss))
		}
		r := o.(*manifests.ControllerRevision)
		if r.Revision != int64(i+1) || r.Data.Spec.Template.Spec.Containers[0].Image != image || manifests.GetControllerOf(r).UID != ss.UID {
			t.Errorf("%s: revision %+v", image, r)
		}
	}
	f.expect("updated", "web-0:nginx:3")
	f.sync() // the update revision is now the current one: nginx:1 is history
	names, _ := rev()
	sort.Strings(names)
	want := append([]string(nil), revNames[1:]...)
	sort.Strings(want)
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("revisions kept %v, want the last two of %v", names, revNames)
	}
	if _, ok := f.revs.Get("default/" + revNames[0]); ok {
		t.Errorf("revision %s not pruned (limit 1)", revNames[0])
	}
	f.apply(func(ss *manifests.StatefulSet) { ss.Spec.Template.Spec.Containers[0].Image = "nginx:2" })
	f.sync()
	if _, nums := rev(); nums[revNames[1]] != 4 {
		t.Errorf("revision numbers after going back to nginx:2: %v", nums)
	}
}

// A pod of the wanted name that is not the set's blocks the ordinal with
// an event naming it, instead of being taken over.
func TestForeignPodNotAdopted(t *testing.T) {
	f := newFixture(t)
	p := &manifests.Pod{}
	p.APIVersion, p.Kind, p.Namespace, p.Name = "v1", "Pod", "default", "web-0"
	p.Spec.Containers = []manifests.Container{{Name: "x", Image: "other:1"}}
	manifests.Default(p)
	if _, err := f.st.Create(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	f.apply(nil)
	f.refresh()
	err := f.c.Sync(f.ctx, "default/web")
	if err == nil || !strings.Contains(err.Error(), "create pod web-0 of statefulset web: a pod of that name exists and is not the set's") {
		t.Fatalf("sync: %v", err)
	}
	f.refresh()
	f.expect("nothing created", "web-0:other:1")
	if !strings.Contains(f.rec.Find(EventFailedCreate), "web-0") {
		t.Errorf("events %v", f.rec.Reasons())
	}
}
