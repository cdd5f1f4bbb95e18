package rollout

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/daemonset"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

// fixture runs the controller's caches over a real store, without the
// DaemonSet controller: the test plays it, creating pods and their status,
// and drives Sync with a fake clock.
type fixture struct {
	t   *testing.T
	ctx context.Context
	st  *store.Store
	c   *Controller
	// name is the rollout syncUntil syncs (probe-v2 when empty).
	name string

	mu  sync.Mutex
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	env := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	infs := map[string]*controller.Informer{}
	for _, r := range []string{"rollouts", "daemonsets", "deployments", "replicasets", "pods", "nodes"} {
		infs[r] = controller.NewInformer(env.Store, r)
		go infs[r].Run(ctx)
	}
	f := &fixture{t: t, ctx: ctx, st: env.Store, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f.c = New(env.Store, Listers{
		Rollouts: infs["rollouts"], DaemonSets: infs["daemonsets"], Deployments: infs["deployments"],
		ReplicaSets: infs["replicasets"], Pods: infs["pods"], Nodes: infs["nodes"],
	}, nil)
	f.c.SetClock(func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now })
	for _, inf := range infs {
		if err := inf.WaitForSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fixture) create(obj manifests.Object) manifests.Object {
	f.t.Helper()
	manifests.Default(obj)
	out, err := f.st.Create(f.ctx, obj)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *fixture) node(name string, ready bool) {
	f.t.Helper()
	st := manifests.ConditionTrue
	if !ready {
		st = "False"
	}
	n := &manifests.Node{ObjectMeta: manifests.ObjectMeta{Name: name}}
	n.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: st}}
	cur, err := f.st.Get(f.ctx, "nodes", "", name)
	if err != nil {
		f.create(n)
		return
	}
	n.ResourceVersion = cur.GetObjectMeta().ResourceVersion
	if _, err := f.st.Update(f.ctx, n); err != nil {
		f.t.Fatal(err)
	}
}

// pod creates the daemon pod of ds on node, of revision hash, ready or
// crashing.
func (f *fixture) pod(ds *manifests.DaemonSet, node, hash string, ready, crashing bool) {
	f.t.Helper()
	ref, err := manifests.NewControllerRef(ds)
	if err != nil {
		f.t.Fatal(err)
	}
	p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{
		Name: "probe-" + node + "-" + hash, Namespace: "default", OwnerReferences: []manifests.OwnerReference{ref},
		Labels: map[string]string{"app": "probe", daemonset.RevisionHashLabel: hash},
	}}
	p.Spec.NodeName = node
	p.Spec.Containers = []manifests.Container{{Name: "c", Image: "fake://run"}}
	p.Status.Phase = manifests.PodRunning
	st := "False"
	if ready {
		st = manifests.ConditionTrue
	}
	p.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodReady, Status: st, LastTransitionTime: f.c.now().Add(-time.Hour)}}
	if crashing {
		p.Status.ContainerStatuses = []manifests.ContainerStatus{{Name: "c", RestartCount: 1}}
	}
	f.create(p)
}

// syncUntil syncs the rollout until check passes: the caches catch up
// with the store between syncs.
func (f *fixture) syncUntil(check func(ro *manifests.Rollout) error) *manifests.Rollout {
	f.t.Helper()
	var ro *manifests.Rollout
	name := f.name
	if name == "" {
		name = "probe-v2"
	}
	controllertest.Eventually(f.t, 10*time.Second, func() error {
		if err := f.c.Sync(f.ctx, "default/"+name); err != nil && !strings.Contains(err.Error(), "retry later") {
			return err
		}
		o, err := f.st.Get(f.ctx, "rollouts", "default", name)
		if err != nil {
			return err
		}
		ro = o.(*manifests.Rollout)
		return check(ro)
	})
	return ro
}

func (f *fixture) podsByNode() map[string][]string {
	f.t.Helper()
	list, _, err := f.st.List(f.ctx, "pods", "default", manifests.Selector{})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, o := range list {
		p := o.(*manifests.Pod)
		out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p.Labels[daemonset.RevisionHashLabel])
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

func (f *fixture) ds() *manifests.DaemonSet {
	f.t.Helper()
	o, err := f.st.Get(f.ctx, "daemonsets", "default", "probe")
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*manifests.DaemonSet)
}

func phaseWave(phase string, wave int32) func(ro *manifests.Rollout) error {
	return func(ro *manifests.Rollout) error {
		if ro.Status.Phase != phase || ro.Status.CurrentWave != wave {
			return fmt.Errorf("phase %s wave %d (%s), want %s wave %d", ro.Status.Phase, ro.Status.CurrentWave, ro.Status.Message, phase, wave)
		}
		return nil
	}
}

// TestWavesGateOfflineAndTolerance walks a rollout step by step: the
// health gate's readySeconds as the controller sees them, a tolerated
// crashing node, an offline node skipped after waitSeconds and converged
// when it returns, the previous update strategy restored at the end.
func TestWavesGateOfflineAndTolerance(t *testing.T) {
	f := newFixture(t)
	for i := range 4 {
		f.node(fmt.Sprintf("n%d", i), i != 3)
	}
	ds := f.create(&manifests.DaemonSet{
		ObjectMeta: manifests.ObjectMeta{Name: "probe", Namespace: "default"},
		Spec: manifests.DaemonSetSpec{
			Selector: &manifests.LabelSelector{MatchLabels: map[string]string{"app": "probe"}},
			Template: manifests.PodTemplateSpec{ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"app": "probe"}},
				Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "c", Image: "fake://run"}}}},
		},
	}).(*manifests.DaemonSet)
	oldHash := daemonset.TemplateHash(&ds.Spec.Template)
	for i := range 4 {
		f.pod(ds, fmt.Sprintf("n%d", i), oldHash, true, false)
	}
	objs, err := manifests.Decode([]byte(`
apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: probe-v2, namespace: default}
spec:
  targetRef: {kind: DaemonSet, name: probe}
  template:
    metadata: {labels: {app: probe}, annotations: {version: "2"}}
    spec: {containers: [{name: c, image: "fake://run"}]}
  waves: [{count: 2}, {}]
  healthGate: {readySeconds: 10, timeoutSeconds: 60}
  failurePolicy: {maxFailedNodes: 1}
  offlinePolicy: {waitSeconds: 30}
`))
	if err != nil {
		t.Fatal(err)
	}
	f.create(objs[0])
	controllertest.Eventually(t, 10*time.Second, func() error {
		if len(f.c.podsByNode(ds)) != 4 || len(f.c.rollouts.List(manifests.Selector{})) != 1 {
			return fmt.Errorf("caches not synced")
		}
		return nil
	})

	// Start: plan, then the target gets the template with OnDelete, then
	// wave 1's old pods go.
	ro := f.syncUntil(func(ro *manifests.Rollout) error {
		if ds := f.ds(); daemonset.TemplateHash(&ds.Spec.Template) != ro.Status.Revision || ds.Spec.UpdateStrategy.Type != manifests.OnDeleteDaemonSetStrategyType {
			return fmt.Errorf("target not updated yet")
		}
		if got := f.podsByNode(); len(got["n0"]) != 0 || len(got["n1"]) != 0 {
			return fmt.Errorf("pods %v", got)
		}
		return nil
	})
	newHash := ro.Status.Revision
	if strings.Join(ro.Status.Waves[0].NodeNames, ",") != "n0,n1" || strings.Join(ro.Status.Waves[1].NodeNames, ",") != "n2,n3" {
		t.Fatalf("plan %+v", ro.Status.Waves)
	}
	if got := f.podsByNode(); len(got["n2"]) != 1 || len(got["n3"]) != 1 {
		t.Fatalf("wave 2 touched early: %v", got)
	}

	// n0 ready (its condition says so for an hour, but the controller has
	// not seen it for readySeconds yet), n1 crashing: tolerated.
	f.pod(ds, "n0", newHash, true, false)
	f.pod(ds, "n1", newHash, false, true)
	f.syncUntil(func(ro *manifests.Rollout) error {
		if w := ro.Status.Waves[0]; w.Updated != 2 || w.Failed != 1 {
			return fmt.Errorf("wave 1 %+v", w)
		}
		return phaseWave(manifests.RolloutProgressing, 0)(ro)
	})
	f.advance(11 * time.Second)
	f.syncUntil(phaseWave(manifests.RolloutProgressing, 1))

	// Wave 2: n2's old pod goes, offline n3's stays.
	f.syncUntil(func(*manifests.Rollout) error {
		if got := f.podsByNode(); len(got["n2"]) != 0 || len(got["n3"]) != 1 || got["n3"][0] != oldHash {
			return fmt.Errorf("pods %v", got)
		}
		return nil
	})
	f.pod(ds, "n2", newHash, true, false)
	f.syncUntil(func(ro *manifests.Rollout) error {
		if w := ro.Status.Waves[1]; w.Updated != 1 || w.Offline != 1 {
			return fmt.Errorf("wave 2 %+v", w)
		}
		return nil
	})
	f.advance(11 * time.Second)
	f.syncUntil(func(ro *manifests.Rollout) error {
		if w := ro.Status.Waves[1]; w.Ready != 1 {
			return fmt.Errorf("wave 2 %+v", w)
		}
		return nil
	})
	if ro := f.syncUntil(phaseWave(manifests.RolloutProgressing, 1)); ro.Status.Waves[1].Ready != 1 {
		t.Fatalf("wave 2 %+v", ro.Status.Waves[1])
	}
	f.advance(20 * time.Second) // 31s since wave 2 started: n3 is skipped
	ro = f.syncUntil(phaseWave(manifests.RolloutCompleted, 2))
	if w := ro.Status.Waves[1]; w.Offline != 1 || w.CompletedAt.IsZero() {
		t.Fatalf("wave 2 %+v", w)
	}
	// Completion restores the strategy; n3 keeps its old pod while offline.
	f.syncUntil(func(*manifests.Rollout) error {
		if ds := f.ds(); ds.Spec.UpdateStrategy.Type != manifests.RollingUpdateDaemonSetStrategyType || daemonset.TemplateHash(&ds.Spec.Template) != newHash {
			return fmt.Errorf("target strategy %q", ds.Spec.UpdateStrategy.Type)
		}
		return nil
	})
	if got := f.podsByNode(); len(got["n3"]) != 1 {
		t.Fatalf("offline node's pod touched: %v", got)
	}
	// n3 returns: its old pod is replaced.
	f.node("n3", true)
	f.syncUntil(func(*manifests.Rollout) error {
		if got := f.podsByNode(); len(got["n3"]) != 0 {
			return fmt.Errorf("pods %v", got)
		}
		return nil
	})
}
