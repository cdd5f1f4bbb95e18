package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

// cache is a fixture Lister.
type cache map[string]manifests.Object

func (c cache) Get(key string) (manifests.Object, bool) { o, ok := c[key]; return o, ok }
func (c cache) List(manifests.Selector) []manifests.Object {
	var out []manifests.Object
	for _, o := range c {
		out = append(out, o)
	}
	return out
}

type event struct{ typ, reason, msg string }

type fakeRecorder struct {
	mu     sync.Mutex
	events []event
}

func (r *fakeRecorder) Eventf(_ context.Context, _ manifests.Object, typ, reason, format string, args ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{typ, reason, fmt.Sprintf(format, args...)})
	return nil
}

func storedPod(t *testing.T, st interface {
	Get(context.Context, string, string, string) (manifests.Object, error)
}, name string) *manifests.Pod {
	t.Helper()
	o, err := st.Get(context.Background(), "pods", "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*manifests.Pod)
}

func TestControllerSync(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	create := func(p *manifests.Pod) *manifests.Pod {
		p.APIVersion, p.Kind = "v1", "Pod"
		o, err := env.Store.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return o.(*manifests.Pod)
	}
	pods := cache{}
	nodes := cache{
		"a": node("a", labels("site", "a"), alloc("1", "100Mi", "10")),
		"b": node("b", labels("site", "b"), alloc("1", "100Mi", "10")),
	}
	rec := &fakeRecorder{}
	c := NewController(env.Store, pods, nodes, rec)

	// Binds to the node the selector picks, with PodScheduled True.
	p := create(pod("p1", selector("site", "b"), requests("", "60Mi")))
	pods["default/p1"] = p
	if err := c.Sync(ctx, "default/p1"); err != nil {
		t.Fatal(err)
	}
	got := storedPod(t, env.Store, "p1")
	if got.Spec.NodeName != "b" {
		t.Fatalf("bound to %q, want b", got.Spec.NodeName)
	}
	if cond := condition(got.Status, manifests.PodScheduled); cond == nil || cond.Status != manifests.ConditionTrue {
		t.Fatalf("PodScheduled = %+v", cond)
	}
	if len(rec.events) != 1 || rec.events[0] != (event{manifests.EventNormal, EventScheduled, "Successfully assigned default/p1 to b"}) {
		t.Fatalf("events %+v", rec.events)
	}

	// The cache does not show p1 bound yet: the binding is still counted,
	// so the next 60Mi pod for site b does not fit.
	p2 := create(pod("p2", selector("site", "b"), requests("", "60Mi")))
	pods["default/p2"] = p2
	err := c.Sync(ctx, "default/p2")
	if !errors.Is(err, controller.ErrRetry) {
		t.Fatalf("Sync(p2) = %v, want ErrRetry", err)
	}
	want := "0/2 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector."
	got = storedPod(t, env.Store, "p2")
	cond := condition(got.Status, manifests.PodScheduled)
	if got.Spec.NodeName != "" || cond == nil || cond.Status != manifests.ConditionFalse || cond.Reason != ReasonUnschedulable || cond.Message != want {
		t.Fatalf("p2: node %q PodScheduled %+v", got.Spec.NodeName, cond)
	}
	if got.Status.Phase != manifests.PodPending {
		t.Fatalf("p2 phase %q", got.Status.Phase)
	}
	if n := len(rec.events); n != 2 || rec.events[1] != (event{manifests.EventWarning, EventFailedScheduling, want}) {
		t.Fatalf("events %+v", rec.events)
	}

	// Retrying with the same outcome writes nothing and records nothing.
	pods["default/p2"] = got
	if err := c.Sync(ctx, "default/p2"); !errors.Is(err, controller.ErrRetry) {
		t.Fatalf("retry: %v", err)
	}
	if again := storedPod(t, env.Store, "p2"); again.ResourceVersion != got.ResourceVersion || len(rec.events) != 2 {
		t.Fatalf("an unchanged failure was written again (rv %s -> %s, %d events)", got.ResourceVersion, again.ResourceVersion, len(rec.events))
	}

	// p1 goes away: p2 fits now.
	gone := pods["default/p1"]
	delete(pods, "default/p1") // the informer updates its cache, then calls handlers
	c.PodChanged(gone, nil)
	if c.queue.Len() != 1 {
		t.Fatalf("deleting a bound pod queued %d pods, want p2", c.queue.Len())
	}
	if err := c.Sync(ctx, "default/p2"); err != nil {
		t.Fatal(err)
	}
	if got = storedPod(t, env.Store, "p2"); got.Spec.NodeName != "b" {
		t.Fatalf("p2 on %q after p1 left", got.Spec.NodeName)
	}
	if cond := condition(got.Status, manifests.PodScheduled); cond.Status != manifests.ConditionTrue || cond.Message != "" {
		t.Fatalf("PodScheduled after binding: %+v", cond)
	}

	// Bound pods, other schedulers' pods and missing pods are left alone.
	pods["default/p2"] = got
	other := create(pod("p3"))
	other.Spec.SchedulerName = "someone-else"
	pods["default/p3"] = other
	for _, k := range []string{"default/p2", "default/p3", "default/nope"} {
		if err := c.Sync(ctx, k); err != nil {
			t.Fatalf("Sync(%s): %v", k, err)
		}
	}
	if got := storedPod(t, env.Store, "p3"); got.Spec.NodeName != "" {
		t.Fatalf("p3 of another scheduler bound to %q", got.Spec.NodeName)
	}

	// A stale cached pod: the CAS fails and the error is returned for a retry.
	p4 := create(pod("p4"))
	fresh, _ := controller.Copy(p4)
	fresh.Labels = map[string]string{"x": "y"}
	if _, err := env.Store.Update(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	pods["default/p4"] = p4
	if err := c.Sync(ctx, "default/p4"); err == nil || errors.Is(err, controller.ErrRetry) {
		t.Fatalf("Sync with a stale pod = %v, want a conflict", err)
	}
}

func TestNodeChangeRequeuesPending(t *testing.T) {
	// p was found unschedulable already (no write is due).
	p := pod("p")
	p.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodScheduled, Status: manifests.ConditionFalse, Reason: ReasonUnschedulable, Message: "0/0 nodes are available."}}
	pods := cache{"default/p": p, "default/bound": pod("bound"), "default/new": pod("new")}
	pods["default/bound"].(*manifests.Pod).Spec.NodeName = "a"
	c := NewController(nil, pods, cache{}, nil)
	for _, p := range pods { // as the informer does
		c.PodChanged(nil, p)
	}
	if err := c.Sync(context.Background(), "default/p"); !errors.Is(err, controller.ErrRetry) {
		t.Fatalf("Sync(p) with no nodes = %v, want ErrRetry", err)
	}
	for c.queue.Len() > 0 { // drain what the additions queued
		k, _ := c.queue.Get(context.Background())
		c.queue.Done(k)
	}
	c.NodeChanged(nil, node("a"))
	if c.queue.Len() != 1 {
		t.Fatalf("queued %d, want only the unschedulable pod", c.queue.Len())
	}
	// Moved, not copied: until a decision finds no node for p again,
	// more node changes (a label applied to every node) do not queue it.
	k, _ := c.queue.Get(context.Background())
	c.queue.Done(k)
	c.NodeChanged(nil, node("b"))
	if c.queue.Len() != 0 {
		t.Fatalf("a second node change queued %d, want 0 (p was moved already)", c.queue.Len())
	}
}

// TestRunBindsConcurrently runs the controller as the control plane does
// (informers, one decision worker, concurrent binders) on more pods than
// fit: the bindings in flight are counted, so no node gets more pods than
// it allows, and a freed slot goes to a waiting pod.
func TestRunBindsConcurrently(t *testing.T) {
	env := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, name := range []string{"a", "b", "c"} {
		n := node(name, alloc("4", "4Gi", "10"))
		n.APIVersion, n.Kind = "v1", "Node"
		if _, err := env.Store.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	const nPods = 35
	for i := range nPods {
		p := pod(fmt.Sprintf("p%02d", i), ownedBy("rs-1"), podLabels("app", "web"))
		p.APIVersion, p.Kind = "v1", "Pod"
		if _, err := env.Store.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	podInf := controller.NewInformer(env.Store, "pods")
	nodeInf := controller.NewInformer(env.Store, "nodes")
	c := NewController(env.Store, podInf, nodeInf, &fakeRecorder{})
	podInf.AddHandler(c.PodChanged)
	nodeInf.AddHandler(c.NodeChanged)
	go func() { _ = podInf.Run(ctx) }()
	go func() { _ = nodeInf.Run(ctx) }()
	if err := podInf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := nodeInf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	placement := func() (map[string][]string, int) {
		on := map[string][]string{}
		unbound := 0
		objs, _, err := env.Store.List(ctx, "pods", "default", manifests.Selector{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			p := o.(*manifests.Pod)
			if p.Spec.NodeName == "" {
				unbound++
				continue
			}
			on[p.Spec.NodeName] = append(on[p.Spec.NodeName], p.Name)
		}
		return on, unbound
	}
	check := func(wantUnbound int) error {
		on, unbound := placement()
		for n, ps := range on {
			if len(ps) > 10 {
				t.Fatalf("node %s got %d pods, allows 10: %v", n, len(ps), ps)
			}
		}
		if unbound != wantUnbound || len(on["a"]) != 10 || len(on["b"]) != 10 || len(on["c"]) != 10 {
			return fmt.Errorf("%d unbound (want %d), per node a %d b %d c %d", unbound, wantUnbound, len(on["a"]), len(on["b"]), len(on["c"]))
		}
		return nil
	}
	controllertest.Eventually(t, 20*time.Second, func() error { return check(nPods - 30) })
	// The binders wrote the Unschedulable condition of the pods left over.
	controllertest.Eventually(t, 20*time.Second, func() error {
		objs, _, err := env.Store.List(ctx, "pods", "default", manifests.Selector{})
		if err != nil {
			return err
		}
		for _, o := range objs {
			p := o.(*manifests.Pod)
			if cond := condition(p.Status, manifests.PodScheduled); p.Spec.NodeName == "" && (cond == nil || cond.Reason != ReasonUnschedulable) {
				return fmt.Errorf("pod %s unbound, condition %+v", p.Name, cond)
			}
		}
		return nil
	})

	// Two pods leave node a: two waiting pods take their places.
	on, _ := placement()
	for _, name := range on["a"][:2] {
		if _, err := env.Store.Delete(ctx, "pods", "default", name, 0); err != nil {
			t.Fatal(err)
		}
	}
	controllertest.Eventually(t, 20*time.Second, func() error { return check(nPods - 30 - 2) })
}

// A pod whose nodeSelector only some nodes match is decided among those
// (cached by selector): the choice and the FitError are those of a scan
// of every node, and a node that gets or loses the label, comes or goes
// is seen by the next decision.
func TestSelectorNodesFollowNodeChanges(t *testing.T) {
	env := controllertest.Start(t)
	ctx := context.Background()
	pods := cache{}
	nodes := cache{}
	for _, name := range []string{"a", "b", "c", "d"} {
		nodes[name] = node(name, labels("site", "x"), alloc("1", "100Mi", "10"))
	}
	nodes["b"] = node("b", labels("site", "edge"), alloc("1", "100Mi", "10"))
	c := NewController(env.Store, pods, nodes, &fakeRecorder{})
	setNode := func(n *manifests.Node) {
		old := nodes[n.Name]
		nodes[n.Name] = n
		c.NodeChanged(old, n)
	}
	sched := func(name string) (string, error) {
		t.Helper()
		p := pod(name, selector("site", "edge"), requests("", "60Mi"))
		p.APIVersion, p.Kind = "v1", "Pod"
		o, err := env.Store.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		pods["default/"+name] = o
		err = c.Sync(ctx, "default/"+name)
		return storedPod(t, env.Store, name).Spec.NodeName, err
	}
	if got, err := sched("p1"); err != nil || got != "b" {
		t.Fatalf("p1 on %q (%v), want b", got, err)
	}
	// b is full (60Mi of 100Mi): the message counts every node.
	if _, err := sched("p2"); !errors.Is(err, controller.ErrRetry) {
		t.Fatalf("p2: %v, want ErrRetry", err)
	}
	want := "0/4 nodes are available: 3 node(s) didn't match Pod's node affinity/selector, 1 Insufficient memory."
	if cond := condition(storedPod(t, env.Store, "p2").Status, manifests.PodScheduled); cond == nil || cond.Message != want {
		t.Fatalf("p2 PodScheduled %+v, want message %q", cond, want)
	}
	// d gets the label: the next decision sees it.
	setNode(node("d", labels("site", "edge"), alloc("1", "100Mi", "10")))
	pods["default/p2"] = storedPod(t, env.Store, "p2") // as the informer would
	if err := c.Sync(ctx, "default/p2"); err != nil {
		t.Fatal(err)
	}
	if got := storedPod(t, env.Store, "p2").Spec.NodeName; got != "d" {
		t.Fatalf("p2 on %q after d got the label, want d", got)
	}
	// d loses it and a new node e comes with it.
	setNode(node("d", labels("site", "x"), alloc("1", "100Mi", "10")))
	setNode(node("e", labels("site", "edge"), alloc("1", "100Mi", "10")))
	if got, err := sched("p3"); err != nil || got != "e" {
		t.Fatalf("p3 on %q (%v), want e", got, err)
	}
	// e goes: nothing fits, out of 4 nodes again.
	gone := nodes["e"]
	delete(nodes, "e")
	c.NodeChanged(gone, nil)
	if _, err := sched("p4"); !errors.Is(err, controller.ErrRetry) {
		t.Fatalf("p4: %v, want ErrRetry", err)
	}
	want = "0/4 nodes are available: 3 node(s) didn't match Pod's node affinity/selector, 1 Insufficient memory."
	if cond := condition(storedPod(t, env.Store, "p4").Status, manifests.PodScheduled); cond == nil || cond.Message != want {
		t.Fatalf("p4 PodScheduled %+v, want message %q", cond, want)
	}
}
