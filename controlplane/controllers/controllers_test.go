package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/nats-io/nats.go/jetstream"
)

func newNode(name, site string) *manifests.Node {
	n := &manifests.Node{}
	n.APIVersion, n.Kind, n.Name = "v1", "Node", name
	n.Labels = map[string]string{"site": site, "kubernetes.io/hostname": name}
	n.Status.RuntimeHandlers = []manifests.NodeRuntimeHandler{{Name: manifests.RuntimeWasm}}
	n.Status.Allocatable = manifests.ResourceList{"cpu": "1", "memory": "256Mi", "pods": "10"}
	return n
}

func newPod(name, site string) *manifests.Pod {
	p := &manifests.Pod{}
	p.APIVersion, p.Kind = "v1", "Pod"
	p.Namespace, p.Name = "default", name
	wasm := manifests.RuntimeWasm
	p.Spec.RuntimeClassName = &wasm
	p.Spec.NodeSelector = map[string]string{"site": site}
	p.Spec.Containers = []manifests.Container{{Name: "c", Image: "hello:v1"}}
	return p
}

// heartbeat puts node's lease every interval until stop is closed.
func heartbeat(ctx context.Context, t *testing.T, kv jetstream.KeyValue, node string, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			lease, _ := json.Marshal(client.Lease{Node: node, RenewTime: time.Now().UTC().Format(time.RFC3339), DurationSeconds: 1})
			if _, err := kv.Put(ctx, messaging.LeaseKey(node), lease); err != nil && ctx.Err() == nil {
				t.Errorf("put lease of %s: %v", node, err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

func getPod(ctx context.Context, st *store.Store, name string) (*manifests.Pod, error) {
	o, err := st.Get(ctx, "pods", "default", name)
	if err != nil {
		return nil, err
	}
	return o.(*manifests.Pod), nil
}

func nodeReady(ctx context.Context, st *store.Store, name, want string) error {
	o, err := st.Get(ctx, "nodes", "", name)
	if err != nil {
		return err
	}
	for _, c := range o.(*manifests.Node).Status.Conditions {
		if c.Type == manifests.NodeReady {
			if c.Status != want {
				return fmt.Errorf("node %s Ready=%s, want %s", name, c.Status, want)
			}
			return nil
		}
	}
	return fmt.Errorf("node %s has no Ready condition", name)
}

func hasAssignment(ctx context.Context, kv jetstream.KeyValue, node, pod string) (bool, error) {
	_, err := kv.Get(ctx, messaging.AssignmentKey(node, "default", pod))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

func findEvent(ctx context.Context, st *store.Store, object, reason string) (*manifests.Event, error) {
	objs, _, err := st.List(ctx, "events", "", manifests.Selector{})
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		ev := o.(*manifests.Event)
		if ev.InvolvedObject.Name == object && ev.Reason == reason {
			return ev, nil
		}
	}
	return nil, fmt.Errorf("no %s event about %s among %d events", reason, object, len(objs))
}

func TestControllers(t *testing.T) {
	env := controllertest.Start(t)
	st, b := env.Store, env.Buckets
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, n := range []*manifests.Node{newNode("node-a", "a"), newNode("node-b", "b")} {
		if _, err := st.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	stopA := heartbeat(ctx, t, b.Heartbeats, "node-a", 100*time.Millisecond)
	stopB := heartbeat(ctx, t, b.Heartbeats, "node-b", 100*time.Millisecond)
	defer stopB()

	done := make(chan error, 1)
	go func() { done <- RunWithOptions(ctx, st, b, Options{NodeGrace: time.Second}) }()

	for _, n := range []string{"node-a", "node-b"} {
		controllertest.Eventually(t, 10*time.Second, func() error { return nodeReady(ctx, st, n, manifests.ConditionTrue) })
	}

	// A pod with a node selector lands on the matching node and is assigned there.
	if _, err := st.Create(ctx, newPod("web", "b")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, newPod("sensor", "a")); err != nil {
		t.Fatal(err)
	}
	for pod, node := range map[string]string{"web": "node-b", "sensor": "node-a"} {
		controllertest.Eventually(t, 10*time.Second, func() error {
			p, err := getPod(ctx, st, pod)
			if err != nil {
				return err
			}
			if p.Spec.NodeName != node {
				return fmt.Errorf("%s on %q, want %s", pod, p.Spec.NodeName, node)
			}
			if ok, err := hasAssignment(ctx, b.Assignments, node, pod); !ok {
				return fmt.Errorf("no assignment of %s on %s (%v)", pod, node, err)
			}
			return nil
		})
	}
	// The scheduler records events in the background.
	controllertest.Eventually(t, 10*time.Second, func() error {
		_, err := findEvent(ctx, st, "web", "Scheduled")
		return err
	})

	// A pod that fits nowhere stays Pending with the reason.
	if _, err := st.Create(ctx, newPod("nowhere", "c")); err != nil {
		t.Fatal(err)
	}
	const want = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
	controllertest.Eventually(t, 10*time.Second, func() error {
		p, err := getPod(ctx, st, "nowhere")
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == manifests.PodScheduled && c.Status == manifests.ConditionFalse && c.Reason == "Unschedulable" && c.Message == want {
				if p.Spec.NodeName != "" || p.Status.Phase != manifests.PodPending {
					return fmt.Errorf("nowhere: node %q phase %q", p.Spec.NodeName, p.Status.Phase)
				}
				return nil
			}
		}
		return fmt.Errorf("nowhere: conditions %+v", p.Status.Conditions)
	})
	controllertest.Eventually(t, 10*time.Second, func() error {
		ev, err := findEvent(ctx, st, "nowhere", "FailedScheduling")
		if err != nil {
			return err
		}
		if ev.Type != manifests.EventWarning || ev.Message != want {
			return fmt.Errorf("event %+v", ev)
		}
		return nil
	})

	// Deleting a pod removes its assignment.
	if _, err := st.Delete(ctx, "pods", "default", "web", 0); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, func() error {
		if ok, err := hasAssignment(ctx, b.Assignments, "node-b", "web"); ok || err != nil {
			return fmt.Errorf("assignment of web still there (%v)", err)
		}
		return nil
	})

	// node-a stops heartbeating: Ready Unknown, its pod untouched; node-b stays Ready.
	stopA()
	controllertest.Eventually(t, 10*time.Second, func() error { return nodeReady(ctx, st, "node-a", manifests.ConditionUnknown) })
	if err := nodeReady(ctx, st, "node-b", manifests.ConditionTrue); err != nil {
		t.Fatal(err)
	}
	p, err := getPod(ctx, st, "sensor")
	if err != nil || p.Spec.NodeName != "node-a" {
		t.Fatalf("pod on the silent node: %v %v", p, err)
	}
	if ok, _ := hasAssignment(ctx, b.Assignments, "node-a", "sensor"); !ok {
		t.Fatal("assignment of the pod on the silent node removed")
	}
	if _, err := findEvent(ctx, st, "node-a", "NodeNotReady"); err != nil {
		t.Fatal(err)
	}

	// A new pod for site a does not go to the silent node.
	if _, err := st.Create(ctx, newPod("late", "a")); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, func() error {
		p, err := getPod(ctx, st, "late")
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == manifests.PodScheduled && strings.Contains(c.Message, "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }") {
				return nil
			}
		}
		return fmt.Errorf("late: node %q conditions %+v", p.Spec.NodeName, p.Status.Conditions)
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestDefaultOptions(t *testing.T) {
	t.Setenv("EDGE_NODE_GRACE", "3s")
	o, err := DefaultOptions()
	if err != nil || o.NodeGrace != 3*time.Second {
		t.Fatalf("DefaultOptions = %+v, %v", o, err)
	}
	t.Setenv("EDGE_NODE_GRACE", "soon")
	if _, err := DefaultOptions(); err == nil {
		t.Fatal("bad EDGE_NODE_GRACE accepted")
	}
	t.Setenv("EDGE_NODE_GRACE", "")
	t.Setenv("EDGE_NODE_UNREACHABLE_GRACE", "90s")
	if o, err := DefaultOptions(); err != nil || o.NodeUnreachableGrace != 90*time.Second || o.NodeGrace != 40*time.Second {
		t.Fatalf("DefaultOptions = %+v, %v", o, err)
	}
	t.Setenv("EDGE_NODE_UNREACHABLE_GRACE", "-1s")
	if _, err := DefaultOptions(); err == nil {
		t.Fatal("bad EDGE_NODE_UNREACHABLE_GRACE accepted")
	}
}
