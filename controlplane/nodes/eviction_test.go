package nodes

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

func taintsOf(t *testing.T, st Store, name string) []string {
	t.Helper()
	obj, err := st.Get(context.Background(), "nodes", "", name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tn := range obj.(*manifests.Node).Spec.Taints {
		out = append(out, tn.Key+":"+tn.Effect)
	}
	return out
}

func podOn(node, name string, tols ...manifests.Toleration) *manifests.Pod {
	p := &manifests.Pod{}
	p.APIVersion, p.Kind = "v1", "Pod"
	p.Name, p.Namespace = name, "default"
	p.Spec.NodeName = node
	p.Spec.Containers = []manifests.Container{{Name: "c", Image: "fake://run"}}
	p.Spec.Tolerations = tols
	return p
}

func tolerateUnreachable(secs *int64) manifests.Toleration {
	return manifests.Toleration{Key: TaintUnreachable, Operator: "Exists", Effect: "NoExecute", TolerationSeconds: secs}
}

func i64(n int64) *int64 { return &n }

func TestLifecycleTaintsAndEviction(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	nodes := cache{"edge-1": createNode(t, env.Store, env.Store, "edge-1")}
	pods := cache{}
	for _, p := range []*manifests.Pod{
		podOn("edge-1", "autonomous"),                                    // no toleration: stays
		podOn("edge-1", "reschedule", tolerateUnreachable(i64(2))),       // leaves 2s after the taint
		podOn("edge-1", "forever", tolerateUnreachable(nil)),             // tolerates forever: stays
		podOn("edge-1", "dedicated", manifests.Toleration{Key: "maint"}), // not the right value: evicted by "maint"
		podOn("edge-2", "elsewhere", tolerateUnreachable(i64(0))),        // another node
	} {
		o, err := env.Store.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		pods[p.Namespace+"/"+p.Name] = o
	}
	rec := &fakeRecorder{}
	c := New(env.Store, nodes, rec, Options{Grace: 40 * time.Second, UnreachableGrace: 5 * time.Minute, Now: clock, Pods: pods})
	sync := func() {
		t.Helper()
		if err := c.Sync(ctx, "edge-1"); err != nil {
			t.Fatal(err)
		}
		nodes["edge-1"], _ = env.Store.Get(ctx, "nodes", "", "edge-1")
	}
	remaining := func() []string {
		var out []string
		for _, k := range []string{"autonomous", "reschedule", "forever", "dedicated", "elsewhere"} {
			if _, err := env.Store.Get(ctx, "pods", "default", k); err == nil {
				out = append(out, k)
			} else if !client.IsNotFound(err) {
				t.Fatal(err)
			} else {
				delete(pods, "default/"+k) // as the informer would
			}
		}
		return out
	}
	expect := func(step string, status string, taints []string, left []string) {
		t.Helper()
		cond, _ := ready(t, env.Store, "edge-1")
		if cond.Status != status {
			t.Fatalf("%s: Ready=%s, want %s", step, cond.Status, status)
		}
		if got := taintsOf(t, env.Store, "edge-1"); fmt.Sprint(got) != fmt.Sprint(taints) {
			t.Fatalf("%s: taints %v, want %v", step, got, taints)
		}
		if got := remaining(); fmt.Sprint(got) != fmt.Sprint(left) {
			t.Fatalf("%s: pods %v, want %v", step, got, left)
		}
	}
	all := []string{"autonomous", "reschedule", "forever", "dedicated", "elsewhere"}

	c.ObserveLease("edge-1", now)
	sync()
	expect("fresh lease", manifests.ConditionTrue, nil, all)

	now = now.Add(41 * time.Second)
	sync()
	expect("silent for the grace period", manifests.ConditionUnknown, []string{TaintNotReady + ":NoSchedule"}, all)

	now = now.Add(5 * time.Minute)
	sync()
	expect("silent for the unreachable grace too", manifests.ConditionUnknown,
		[]string{TaintUnreachable + ":NoSchedule", TaintUnreachable + ":NoExecute"}, all)

	now = now.Add(1 * time.Second)
	sync()
	expect("1s of the taint", manifests.ConditionUnknown,
		[]string{TaintUnreachable + ":NoSchedule", TaintUnreachable + ":NoExecute"}, all)

	now = now.Add(1 * time.Second)
	sync()
	expect("2s of the taint: the tolerating pod goes", manifests.ConditionUnknown,
		[]string{TaintUnreachable + ":NoSchedule", TaintUnreachable + ":NoExecute"},
		[]string{"autonomous", "forever", "dedicated", "elsewhere"})
	if got := rec.list(); !slices.Contains(got, EventTaintManagerEviction) || !slices.Contains(got, EventNodeUnreachable) {
		t.Fatalf("events %v", got)
	}

	// An operator's own NoExecute taint evicts what does not tolerate it at once.
	n := nodes["edge-1"].(*manifests.Node)
	n.Spec.Taints = append(n.Spec.Taints, manifests.Taint{Key: "maint", Value: "now", Effect: "NoExecute"})
	if _, err := env.Store.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	nodes["edge-1"], _ = env.Store.Get(ctx, "nodes", "", "edge-1")
	// The node comes back: lifecycle taints go, the operator's stays.
	c.ObserveLease("edge-1", now)
	sync()
	expect("back", manifests.ConditionTrue, []string{"maint:NoExecute"}, []string{"elsewhere"})
}

func TestEvictAt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	added := now.Add(-10 * time.Second)
	unreach := manifests.Taint{Key: TaintUnreachable, Effect: "NoExecute", TimeAdded: &added}
	other := manifests.Taint{Key: "x", Value: "1", Effect: "NoExecute", TimeAdded: &added}
	soft := manifests.Taint{Key: "y", Effect: "NoSchedule", TimeAdded: &added}
	tests := []struct {
		name   string
		tols   []manifests.Toleration
		taints []manifests.Taint
		want   time.Duration // after now; -1: never
	}{
		{"unreachable, no toleration: stays", nil, []manifests.Taint{unreach, soft}, -1},
		{"unreachable tolerated forever", []manifests.Toleration{tolerateUnreachable(nil)}, []manifests.Taint{unreach}, -1},
		{"unreachable tolerated 30s", []manifests.Toleration{tolerateUnreachable(i64(30))}, []manifests.Taint{unreach}, 20 * time.Second},
		{"unreachable tolerated 5s: overdue", []manifests.Toleration{tolerateUnreachable(i64(5))}, []manifests.Taint{unreach}, -5 * time.Second},
		{"other NoExecute untolerated: now", nil, []manifests.Taint{other}, 0},
		{"other NoExecute tolerated by Equal for 60s", []manifests.Toleration{{Key: "x", Operator: "Equal", Value: "1", TolerationSeconds: i64(60)}}, []manifests.Taint{other}, 50 * time.Second},
		{"the earliest wins", []manifests.Toleration{tolerateUnreachable(i64(30)), {Key: "x", Operator: "Exists", TolerationSeconds: i64(15)}}, []manifests.Taint{unreach, other}, 5 * time.Second},
		{"longest toleration counts", []manifests.Toleration{tolerateUnreachable(i64(30)), tolerateUnreachable(i64(100))}, []manifests.Taint{unreach}, 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := podOn("n", "p", tt.tols...)
			at, ok := evictAt(p, tt.taints, now)
			if tt.want == -1 {
				if ok {
					t.Fatalf("evict at %v, want never", at)
				}
				return
			}
			if !ok || at.Sub(now) != tt.want {
				t.Fatalf("evict at %v (%v), want now%+v", at.Sub(now), ok, tt.want)
			}
		})
	}
}

// TestRestartDoesNotFlap starts a controller (a restart, or a new leader)
// that finds old leases: a Ready node stays Ready for the grace period
// from the start, an Unreachable node stays Unreachable (its pods are not
// evicted again, nor its taints dropped) until a heartbeat is seen being
// written.
func TestRestartDoesNotFlap(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	up := createNode(t, env.Store, env.Store, "ready")
	up.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: manifests.ConditionTrue}}
	added := now.Add(-time.Hour)
	gone := createNode(t, env.Store, env.Store, "gone")
	gone.Spec.Taints = []manifests.Taint{{Key: TaintUnreachable, Effect: "NoSchedule", TimeAdded: &added}, {Key: TaintUnreachable, Effect: "NoExecute", TimeAdded: &added}}
	gone.Status.Conditions = []manifests.NodeCondition{{Type: manifests.NodeReady, Status: manifests.ConditionUnknown}}
	nodes := cache{}
	for _, n := range []*manifests.Node{up, gone} {
		o, err := env.Store.Update(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.Name] = o
	}
	c := New(env.Store, nodes, &fakeRecorder{}, Options{Grace: 40 * time.Second, UnreachableGrace: time.Minute, Now: clock})
	// The watch replays leases written long ago.
	c.observe("ready", now.Add(-10*time.Minute), true)
	c.observe("gone", now.Add(-2*time.Hour), true)
	syncBoth := func() {
		t.Helper()
		for _, n := range []string{"ready", "gone"} {
			if err := c.Sync(ctx, n); err != nil {
				t.Fatal(err)
			}
			nodes[n], _ = env.Store.Get(ctx, "nodes", "", n)
		}
	}
	syncBoth()
	if cond, _ := ready(t, env.Store, "ready"); cond.Status != manifests.ConditionTrue {
		t.Fatalf("ready node after restart: %+v", cond)
	}
	if got := taintsOf(t, env.Store, "gone"); len(got) != 2 {
		t.Fatalf("unreachable node after restart: taints %v", got)
	}
	// Still no heartbeat after the grace period: the ready node goes NotReady.
	now = now.Add(41 * time.Second)
	syncBoth()
	if cond, _ := ready(t, env.Store, "ready"); cond.Status != manifests.ConditionUnknown {
		t.Fatalf("silent node: %+v", cond)
	}
	// A heartbeat seen being written brings the unreachable node back.
	c.ObserveLease("gone", now)
	syncBoth()
	if cond, _ := ready(t, env.Store, "gone"); cond.Status != manifests.ConditionTrue || len(taintsOf(t, env.Store, "gone")) != 0 {
		t.Fatalf("node back: %+v %v", cond, taintsOf(t, env.Store, "gone"))
	}
}
