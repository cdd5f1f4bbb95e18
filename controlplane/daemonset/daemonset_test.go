package daemonset

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

type fixture struct {
	t                  *testing.T
	ctx                context.Context
	st                 *store.Store
	dsets, pods, nodes *controllertest.Cache
	c                  *Controller
	rec                *controllertest.Recorder
}

func newFixture(t *testing.T) *fixture {
	env := controllertest.Start(t)
	f := &fixture{t: t, ctx: context.Background(), st: env.Store, dsets: &controllertest.Cache{}, pods: &controllertest.Cache{}, nodes: &controllertest.Cache{}, rec: &controllertest.Recorder{}}
	f.c = New(env.Store, f.dsets, f.pods, f.nodes, f.rec)
	return f
}

func (f *fixture) refresh() {
	f.dsets.Load(f.t, f.st, "daemonsets")
	f.pods.Load(f.t, f.st, "pods")
	f.nodes.Load(f.t, f.st, "nodes")
}

// sync refreshes the caches and syncs, until a sync changes nothing more.
func (f *fixture) sync() {
	f.t.Helper()
	f.refresh()
	if err := f.c.Sync(f.ctx, "default/agent"); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

func (f *fixture) node(name string, labels map[string]string, taints ...manifests.Taint) {
	f.t.Helper()
	n := &manifests.Node{}
	n.APIVersion, n.Kind, n.Name, n.Labels = "v1", "Node", name, labels
	n.Spec.Taints = taints
	n.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: manifests.ConditionTrue}}
	if o, ok := f.nodes.Get(name); ok {
		n.ResourceVersion = o.GetObjectMeta().ResourceVersion
		if _, err := f.st.Update(f.ctx, n); err != nil {
			f.t.Fatal(err)
		}
	} else if _, err := f.st.Create(f.ctx, n); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

func (f *fixture) daemonSet(image string, strategy string) *manifests.DaemonSet {
	f.t.Helper()
	ds := &manifests.DaemonSet{}
	if o, ok := f.dsets.Get("default/agent"); ok {
		ds = manifests.DeepCopy(o).(*manifests.DaemonSet)
	} else {
		ds.APIVersion, ds.Kind, ds.Namespace, ds.Name = "apps/v1", "DaemonSet", "default", "agent"
		ds.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}
		ds.Spec.Template.Labels = map[string]string{"app": "agent"}
		ds.Spec.Template.Spec.NodeSelector = map[string]string{"role": "edge"}
		ds.Spec.Template.Spec.Containers = []manifests.Container{{Name: "a", Image: image}}
	}
	ds.Spec.Template.Spec.Containers[0].Image = image
	ds.Spec.UpdateStrategy = manifests.DaemonSetUpdateStrategy{Type: strategy}
	manifests.Default(ds)
	if err := manifests.Validate(ds); err != nil {
		f.t.Fatal(err)
	}
	var out manifests.Object
	var err error
	if ds.ResourceVersion == "" {
		out, err = f.st.Create(f.ctx, ds)
	} else {
		out, err = f.st.Update(f.ctx, ds)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
	return out.(*manifests.DaemonSet)
}

// placed returns "node:image" of every daemon pod, sorted.
func (f *fixture) placed() []string {
	var out []string
	for _, o := range f.pods.List(manifests.Selector{}) {
		p := o.(*manifests.Pod)
		out = append(out, p.Spec.NodeName+":"+p.Spec.Containers[0].Image)
	}
	sort.Strings(out)
	return out
}

func (f *fixture) expectPlaced(step string, want ...string) {
	f.t.Helper()
	if got := f.placed(); strings.Join(got, " ") != strings.Join(want, " ") {
		f.t.Fatalf("%s: pods %v, want %v", step, got, want)
	}
}

func (f *fixture) status() manifests.DaemonSetStatus {
	o, err := f.st.Get(f.ctx, "daemonsets", "default", "agent")
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*manifests.DaemonSet).Status
}

// setReady marks every daemon pod Ready (as agents would report).
func (f *fixture) setReady() {
	f.t.Helper()
	for _, o := range f.pods.List(manifests.Selector{}) {
		p := manifests.DeepCopy(o).(*manifests.Pod)
		if manifests.IsPodReady(p) {
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

func TestSyncFollowsNodes(t *testing.T) {
	f := newFixture(t)
	edge := map[string]string{"role": "edge"}
	f.node("n1", edge)
	f.node("n2", edge, manifests.Taint{Key: "dedicated", Value: "db", Effect: "NoSchedule"})
	f.node("n3", map[string]string{"role": "core"})
	ds := f.daemonSet("fake://run", "")

	f.sync()
	f.expectPlaced("first sync", "n1:fake://run")
	// The cache does not show the pod yet: no second pod.
	f.pods.Clear()
	if err := f.c.Sync(f.ctx, "default/agent"); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	f.expectPlaced("sync before the cache caught up", "n1:fake://run")

	pod := f.pods.List(manifests.Selector{})[0].(*manifests.Pod)
	if ref := manifests.GetControllerOf(pod); ref == nil || ref.UID != ds.UID || ref.Kind != "DaemonSet" {
		t.Fatalf("owner %+v", pod.OwnerReferences)
	}
	if pod.Labels[RevisionHashLabel] != TemplateHash(&ds.Spec.Template) || pod.Labels["app"] != "agent" || !strings.HasPrefix(pod.Name, "agent-") {
		t.Fatalf("pod %s labels %v", pod.Name, pod.Labels)
	}
	var tolerated []string
	for _, tl := range pod.Spec.Tolerations {
		tolerated = append(tolerated, tl.Key+":"+tl.Effect)
	}
	for _, want := range []string{"node.kubernetes.io/not-ready:NoExecute", "node.kubernetes.io/unreachable:NoExecute", "node.edge.io/unreachable:NoExecute"} {
		if !strings.Contains(strings.Join(tolerated, " "), want) {
			t.Fatalf("tolerations %v lack %s", tolerated, want)
		}
	}
	f.sync() // status
	if st := f.status(); st.DesiredNumberScheduled != 1 || st.CurrentNumberScheduled != 1 || st.NumberReady != 0 || st.UpdatedNumberScheduled != 1 || st.ObservedGeneration != ds.Generation {
		t.Fatalf("status %+v", st)
	}

	// A node gains the label: it gets a pod.
	f.node("n3", edge)
	f.sync()
	f.expectPlaced("n3 labelled", "n1:fake://run", "n3:fake://run")

	// A node loses it: its pod goes.
	f.node("n1", map[string]string{"role": "retired"})
	f.sync()
	f.expectPlaced("n1 unlabelled", "n3:fake://run")

	// An unreachable node keeps its pod (automatic toleration); a node
	// not ready yet gets none.
	f.node("n3", edge, manifests.Taint{Key: "node.edge.io/unreachable", Effect: "NoSchedule"}, manifests.Taint{Key: "node.edge.io/unreachable", Effect: "NoExecute"})
	f.node("n4", edge, manifests.Taint{Key: "node.kubernetes.io/not-ready", Effect: "NoSchedule"})
	f.sync()
	f.expectPlaced("unreachable n3, not-ready n4", "n3:fake://run")
	f.setReady()
	f.sync()
	if st := f.status(); st.DesiredNumberScheduled != 1 || st.CurrentNumberScheduled != 1 || st.NumberReady != 1 || st.NumberAvailable != 1 || st.NumberMisscheduled != 0 {
		t.Fatalf("status %+v", st)
	}
	// An operator's NoExecute taint removes it.
	f.node("n3", edge, manifests.Taint{Key: "evict", Effect: "NoExecute"})
	f.sync()
	f.expectPlaced("NoExecute taint")

	// A node that goes away takes its pod with it.
	f.node("n5", edge)
	f.sync()
	f.expectPlaced("n5 joins", "n5:fake://run")
	if _, err := f.st.Delete(f.ctx, "nodes", "", "n5", 0); err != nil {
		t.Fatal(err)
	}
	f.sync()
	f.expectPlaced("n5 gone")
}

func TestRollingUpdate(t *testing.T) {
	f := newFixture(t)
	for i := range 4 {
		f.node(fmt.Sprintf("n%d", i), map[string]string{"role": "edge"})
	}
	f.daemonSet("fake://v1", "")
	f.sync()
	f.setReady()
	f.sync()
	f.expectPlaced("v1", "n0:fake://v1", "n1:fake://v1", "n2:fake://v1", "n3:fake://v1")

	f.daemonSet("fake://v2", "") // maxUnavailable 1 (default)
	for round := 0; ; round++ {
		if round > 10 {
			t.Fatalf("rollout did not finish: %v", f.placed())
		}
		f.sync()
		// Never more than one node without an available pod.
		n := 0
		for _, o := range f.pods.List(manifests.Selector{}) {
			if !manifests.IsPodReady(o.(*manifests.Pod)) {
				n++
			}
		}
		if missing := 4 - len(f.placed()); n+missing > 1 {
			t.Fatalf("round %d: %d unready and %d missing pods: %v", round, n, missing, f.placed())
		}
		f.sync() // recreate on the freed node
		f.setReady()
		if strings.Count(strings.Join(f.placed(), " "), "v2") == 4 {
			break
		}
	}
	f.sync()
	if st := f.status(); st.UpdatedNumberScheduled != 4 || st.NumberAvailable != 4 || st.DesiredNumberScheduled != 4 {
		t.Fatalf("status %+v", st)
	}
}

func TestRollingUpdateMaxUnavailable(t *testing.T) {
	f := newFixture(t)
	for i := range 4 {
		f.node(fmt.Sprintf("n%d", i), map[string]string{"role": "edge"})
	}
	ds := f.daemonSet("fake://v1", "")
	f.sync()
	f.setReady()
	ds = manifests.DeepCopy(ds).(*manifests.DaemonSet)
	o, _ := f.dsets.Get("default/agent")
	ds.ResourceVersion = o.GetObjectMeta().ResourceVersion
	ds.Spec.Template.Spec.Containers[0].Image = "fake://v2"
	half := manifests.FromString("50%")
	ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = &half
	if _, err := f.st.Update(f.ctx, ds); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if got := len(f.placed()); got != 2 {
		t.Fatalf("50%% of 4: %d pods left, want 2: %v", got, f.placed())
	}
}

func TestOnDelete(t *testing.T) {
	f := newFixture(t)
	f.node("n0", map[string]string{"role": "edge"})
	f.node("n1", map[string]string{"role": "edge"})
	f.daemonSet("fake://v1", manifests.OnDeleteDaemonSetStrategyType)
	f.sync()
	f.setReady()
	f.daemonSet("fake://v2", manifests.OnDeleteDaemonSetStrategyType)
	f.sync()
	f.sync()
	f.expectPlaced("OnDelete keeps old pods", "n0:fake://v1", "n1:fake://v1")
	if st := f.status(); st.UpdatedNumberScheduled != 0 || st.CurrentNumberScheduled != 2 {
		t.Fatalf("status %+v", st)
	}
	// The operator deletes one: it comes back at v2.
	p := f.pods.List(manifests.Selector{})[0].(*manifests.Pod)
	if _, err := f.st.Delete(f.ctx, "pods", p.Namespace, p.Name, 0); err != nil {
		t.Fatal(err)
	}
	f.sync()
	want := []string{p.Spec.NodeName + ":fake://v2", otherNode(p.Spec.NodeName) + ":fake://v1"}
	sort.Strings(want)
	f.expectPlaced("after a delete", want...)
	f.sync()
	if st := f.status(); st.UpdatedNumberScheduled != 1 {
		t.Fatalf("status %+v", st)
	}
}

func otherNode(n string) string {
	if n == "n0" {
		return "n1"
	}
	return "n0"
}

func TestFailedPodReplaced(t *testing.T) {
	f := newFixture(t)
	f.node("n0", map[string]string{"role": "edge"})
	f.daemonSet("fake://exit/1", "")
	f.sync()
	p := manifests.DeepCopy(f.pods.List(manifests.Selector{})[0]).(*manifests.Pod)
	p.Status.Phase = manifests.PodFailed
	if _, err := f.st.Update(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	f.sync()
	pods := f.pods.List(manifests.Selector{})
	if len(pods) != 1 || pods[0].GetObjectMeta().Name == p.Name {
		t.Fatalf("failed pod not replaced: %v", pods)
	}
}

// TestNodeChangedQueuesOnlyAffectedDaemonSets: a node change queues a
// DaemonSet only when it lets the DaemonSet's pods on or off the node
// (labels its nodeSelector reads, a taint it does not tolerate) or when
// the node comes, goes or changes readiness.
func TestNodeChangedQueuesOnlyAffectedDaemonSets(t *testing.T) {
	f := newFixture(t)
	f.daemonSet("fake://run", "") // nodeSelector role=edge
	mk := func(labels map[string]string, ready bool, taints ...manifests.Taint) *manifests.Node {
		n := &manifests.Node{}
		n.Name, n.Labels, n.Spec.Taints = "n1", labels, taints
		st := manifests.ConditionTrue
		if !ready {
			st = manifests.ConditionFalse
		}
		n.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: st}}
		return n
	}
	edge := map[string]string{"role": "edge"}
	edgeMore := map[string]string{"role": "edge", "zone": "a"}
	cases := []struct {
		name     string
		old, cur *manifests.Node
		queued   bool
	}{
		{"new node", nil, mk(edge, true), true},
		{"node gone", mk(edge, true), nil, true},
		{"heartbeat only", mk(edge, true), mk(edge, true), false},
		{"label the selector does not read", mk(edge, true), mk(edgeMore, true), false},
		{"label unrelated to a node it does not fit", mk(nil, true), mk(map[string]string{"zone": "a"}, true), false},
		{"gets the selected label", mk(nil, true), mk(edge, true), true},
		{"loses the selected label", mk(edge, true), mk(nil, true), true},
		{"readiness", mk(edge, true), mk(edge, false), true},
		{"NoSchedule taint", mk(edge, true), mk(edge, true, manifests.Taint{Key: "k", Effect: "NoSchedule"}), true},
		{"tolerated taint (daemon tolerations)", mk(edge, true), mk(edge, true, manifests.Taint{Key: "node.kubernetes.io/unreachable", Effect: "NoExecute"}), false},
	}
	for _, tc := range cases {
		for f.c.queue.Len() > 0 {
			k, _ := f.c.queue.Get(f.ctx)
			f.c.queue.Done(k)
		}
		var old, cur manifests.Object
		if tc.old != nil {
			old = tc.old
		}
		if tc.cur != nil {
			cur = tc.cur
		}
		f.c.NodeChanged(old, cur)
		if got := f.c.queue.Len() > 0; got != tc.queued {
			t.Errorf("%s: DaemonSet queued %v, want %v", tc.name, got, tc.queued)
		}
	}
}
