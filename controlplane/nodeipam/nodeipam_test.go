package nodeipam

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/ipam"
	"github.com/edgeorch/edgeorch/manifests"
)

var _ Allocator = (*ipam.PodCIDRs)(nil)

func rev(o manifests.Object) uint64 {
	n, _ := strconv.ParseUint(o.GetObjectMeta().ResourceVersion, 10, 64)
	return n
}

func newController(t *testing.T, env *controllertest.Env) (*Controller, *controller.Informer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nodes := controller.NewInformer(env.Store, "nodes")
	alloc, err := ipam.NewPodCIDRs(env.Buckets.Leases, "10.244.0.0/22", 24)
	if err != nil {
		t.Fatal(err)
	}
	c := New(env.Store, nodes, alloc)
	c.RegisterGrace = 0
	nodes.AddHandler(c.NodeChanged) // as controllers.go: before Run
	go nodes.Run(ctx)
	if err := nodes.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	return c, nodes
}

func createNode(t *testing.T, env *controllertest.Env, name, cidr string) {
	t.Helper()
	n := &manifests.Node{}
	n.Name = name
	n.Spec.PodCIDR = cidr
	manifests.Default(n)
	if _, err := env.Store.Create(context.Background(), n); err != nil {
		t.Fatal(err)
	}
}

// waitNodes waits until inf caches every named node at its stored revision.
func waitNodes(t *testing.T, env *controllertest.Env, inf *controller.Informer, names ...string) {
	t.Helper()
	controllertest.Eventually(t, 5*time.Second, func() error {
		for _, name := range names {
			stored, err := env.Store.Get(context.Background(), "nodes", "", name)
			if err != nil {
				return err
			}
			o, ok := inf.Get(name)
			if !ok || rev(o) < rev(stored) {
				return fmt.Errorf("node %s not cached yet", name)
			}
		}
		return nil
	})
}

func podCIDR(t *testing.T, env *controllertest.Env, name string) *manifests.Node {
	t.Helper()
	o, err := env.Store.Get(context.Background(), "nodes", "", name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*manifests.Node)
}

func TestSyncAssignsFreeCIDRs(t *testing.T) {
	env := controllertest.Start(t)
	c, nodes := newController(t, env)
	ctx := context.Background()
	createNode(t, env, "pre", "10.244.1.0/24")
	createNode(t, env, "a", "")
	createNode(t, env, "b", "")
	waitNodes(t, env, nodes, "pre", "a", "b")
	for _, name := range []string{"pre", "a", "b"} {
		if err := c.Sync(ctx, name); err != nil {
			t.Fatal(err)
		}
		waitNodes(t, env, nodes, name)
	}
	want := map[string]string{"pre": "10.244.1.0/24", "a": "10.244.0.0/24", "b": "10.244.2.0/24"}
	for name, cidr := range want {
		n := podCIDR(t, env, name)
		if n.Spec.PodCIDR != cidr || (name != "pre" && (len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != cidr)) {
			t.Errorf("node %s: podCIDR %q podCIDRs %v, want %s", name, n.Spec.PodCIDR, n.Spec.PodCIDRs, cidr)
		}
	}
	// A sync of a node that has a CIDR writes nothing.
	before := rev(podCIDR(t, env, "a"))
	if err := c.Sync(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if rev(podCIDR(t, env, "a")) != before {
		t.Fatal("sync of an allocated node wrote it")
	}
	// The range (4 x /24) runs out after one more node.
	createNode(t, env, "c", "")
	createNode(t, env, "d", "")
	waitNodes(t, env, nodes, "c", "d")
	if err := c.Sync(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, env, nodes, "c")
	if err := c.Sync(ctx, "d"); err == nil {
		t.Fatalf("full range: node d got %q", podCIDR(t, env, "d").Spec.PodCIDR)
	}
}

// Two controllers whose caches do not show each other's writes still
// hand out different CIDRs: the claims in the leases bucket decide.
func TestConcurrentControllersNeverShareCIDR(t *testing.T) {
	env := controllertest.Start(t)
	c1, n1 := newController(t, env)
	c2, n2 := newController(t, env)
	createNode(t, env, "x", "")
	createNode(t, env, "y", "")
	waitNodes(t, env, n1, "x", "y")
	waitNodes(t, env, n2, "x", "y")
	var wg sync.WaitGroup
	for _, job := range []struct {
		c    *Controller
		node string
	}{{c1, "x"}, {c2, "y"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := job.c.Sync(context.Background(), job.node); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	x, y := podCIDR(t, env, "x").Spec.PodCIDR, podCIDR(t, env, "y").Spec.PodCIDR
	if x == "" || y == "" || x == y {
		t.Fatalf("x %q, y %q: want two different CIDRs", x, y)
	}
}

// A new node is left alone until its agent wrote its status, or the grace
// period passed.
func TestSyncWaitsForRegistration(t *testing.T) {
	env := controllertest.Start(t)
	c, nodes := newController(t, env)
	c.RegisterGrace = time.Hour
	ctx := context.Background()
	createNode(t, env, "fresh", "")
	waitNodes(t, env, nodes, "fresh")
	if err := c.Sync(ctx, "fresh"); err != nil {
		t.Fatal(err)
	}
	if cidr := podCIDR(t, env, "fresh").Spec.PodCIDR; cidr != "" {
		t.Fatalf("unregistered node got %q at once", cidr)
	}
	n := podCIDR(t, env, "fresh")
	n.Status.Addresses = []manifests.NodeAddress{{Type: "InternalIP", Address: "192.168.7.2"}}
	if _, err := env.Store.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, env, nodes, "fresh")
	if err := c.Sync(ctx, "fresh"); err != nil {
		t.Fatal(err)
	}
	if cidr := podCIDR(t, env, "fresh").Spec.PodCIDR; cidr != "10.244.0.0/24" {
		t.Fatalf("registered node: pod CIDR %q", cidr)
	}
	// Past the grace period a node without status gets one too.
	c.RegisterGrace = 0
	createNode(t, env, "bare", "")
	waitNodes(t, env, nodes, "bare")
	if err := c.Sync(ctx, "bare"); err != nil {
		t.Fatal(err)
	}
	if cidr := podCIDR(t, env, "bare").Spec.PodCIDR; cidr != "10.244.1.0/24" {
		t.Fatalf("bare node: pod CIDR %q", cidr)
	}
}
