package sim_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

func getPod(ctx context.Context, c *sim.Cluster, name string) (*manifests.Pod, error) {
	obj, err := c.Client.Get(ctx, "pods", "default", name)
	if err != nil {
		return nil, err
	}
	pod, ok := obj.(*manifests.Pod)
	if !ok {
		return nil, fmt.Errorf("get pod %s: got %T", name, obj)
	}
	return pod, nil
}

func nodeReady(ctx context.Context, c *sim.Cluster, name string) (bool, error) {
	obj, err := c.Client.Get(ctx, "nodes", "", name)
	if err != nil {
		return false, err
	}
	return sim.NodeIsReady(obj.(*manifests.Node)), nil
}

func TestFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{
		Nodes:             5,
		Labels:            func(i int) map[string]string { return map[string]string{"site": fmt.Sprintf("site-%d", i%2)} },
		HeartbeatInterval: 100 * time.Millisecond,
		NodeGrace:         time.Second,
	})

	// Start waited for every node to be Ready; check the nodes as registered.
	objs, _, err := c.Client.List(ctx, "nodes", "", "site=site-0")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("nodes with site=site-0: %d, want 3", len(objs))
	}
	for _, o := range objs {
		n := o.(*manifests.Node)
		if !sim.NodeIsReady(n) {
			t.Errorf("node %s not Ready after Start", n.Name)
		}
		var handlers []string
		for _, h := range n.Status.RuntimeHandlers {
			handlers = append(handlers, h.Name)
		}
		if fmt.Sprint(handlers) != "[fake oci wasm]" {
			t.Errorf("node %s runtime handlers %v, want [fake oci wasm]", n.Name, handlers)
		}
	}

	// A pod on handler fake and one on wasm (whose image is passed to the
	// fake runtime as is) both run.
	fakeRC, wasmRC := "fake", "wasm"
	for name, rc := range map[string]*string{"p-fake": &fakeRC, "p-wasm": &wasmRC} {
		pod := &manifests.Pod{
			ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
			Spec: manifests.PodSpec{
				RuntimeClassName: rc,
				Containers:       []manifests.Container{{Name: "main", Image: "fake://run"}},
			},
		}
		if _, _, err := c.Client.Apply(ctx, pod); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
	}
	var node string
	for _, name := range []string{"p-fake", "p-wasm"} {
		controllertest.Eventually(t, 20*time.Second, func() error {
			pod, err := getPod(ctx, c, name)
			if err != nil {
				return err
			}
			if pod.Status.Phase != manifests.PodRunning {
				return fmt.Errorf("pod %s on %q: phase %q", name, pod.Spec.NodeName, pod.Status.Phase)
			}
			if name == "p-fake" {
				node = pod.Spec.NodeName
			}
			return nil
		})
	}
	idx := -1
	for i := range c.Nodes() {
		if c.Node(i).Name == node {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("pod p-fake bound to %q, not a simulated node", node)
	}
	if n, err := c.Node(idx).Running(ctx); err != nil || n < 1 {
		t.Fatalf("node %s running containers: %d, %v; want >= 1", node, n, err)
	}

	// Offline: the node goes NotReady, its pod keeps running on the device.
	c.StopNode(idx)
	controllertest.Eventually(t, 10*time.Second, func() error {
		ready, err := nodeReady(ctx, c, node)
		if err != nil {
			return err
		}
		if ready {
			return fmt.Errorf("node %s still Ready", node)
		}
		return nil
	})
	if n, err := c.Node(idx).Running(ctx); err != nil || n < 1 {
		t.Fatalf("offline node %s running containers: %d, %v; want >= 1", node, n, err)
	}
	// The other nodes stay Ready.
	for i := range c.Nodes() {
		if i == idx {
			continue
		}
		if ready, err := nodeReady(ctx, c, c.Node(i).Name); err != nil || !ready {
			t.Errorf("node %s: ready=%v, %v; want Ready", c.Node(i).Name, ready, err)
		}
	}

	// Back online: Ready again, and the pod still reported Running.
	c.StartNode(idx)
	controllertest.Eventually(t, 10*time.Second, func() error {
		ready, err := nodeReady(ctx, c, node)
		if err != nil {
			return err
		}
		if !ready {
			return fmt.Errorf("node %s not Ready again", node)
		}
		return nil
	})
	pod, err := getPod(ctx, c, "p-fake")
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != manifests.PodRunning {
		t.Errorf("pod p-fake after the node returned: phase %q, want Running", pod.Status.Phase)
	}

	// The agent restarts (crash, upgrade): the new one takes the running
	// container over instead of starting it again.
	before, err := c.Node(idx).RunningIDs(ctx)
	if err != nil || len(before) == 0 {
		t.Fatalf("running containers on %s: %v, %v", node, before, err)
	}
	if err := c.RestartAgent(idx); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, func() error {
		ready, err := nodeReady(ctx, c, node)
		if err != nil || !ready {
			return fmt.Errorf("node %s after agent restart: ready=%v, %v", node, ready, err)
		}
		pod, err := getPod(ctx, c, "p-fake")
		if err != nil {
			return err
		}
		if pod.Status.Phase != manifests.PodRunning || len(pod.Status.ContainerStatuses) != 1 || pod.Status.ContainerStatuses[0].RestartCount != 0 {
			return fmt.Errorf("pod p-fake after agent restart: %+v", pod.Status)
		}
		return nil
	})
	if after, err := c.Node(idx).RunningIDs(ctx); err != nil || !slices.Equal(after, before) {
		t.Errorf("running containers on %s: %v before the agent restart, %v after (%v)", node, before, after, err)
	}

	// A device joins.
	i, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	if i != 5 || c.Nodes() != 6 {
		t.Fatalf("AddNode: index %d, %d nodes", i, c.Nodes())
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := c.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	if ready, err := nodeReady(ctx, c, sim.NodeName(5)); err != nil || !ready {
		t.Errorf("added node: ready=%v, %v", ready, err)
	}
}

func TestNewGivesUpWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err := sim.New(ctx, sim.Options{Nodes: 2, Dir: t.TempDir()})
	if err == nil {
		c.Close()
		t.Fatal("New with a cancelled context: want an error")
	}
}

func TestCloseTwice(t *testing.T) {
	c, err := sim.New(context.Background(), sim.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.AddNode(); err == nil {
		t.Error("AddNode after Close: want an error")
	}
}
