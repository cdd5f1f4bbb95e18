package nodes_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/controlplane/nodes"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/sim"
	"github.com/nats-io/nats.go"
)

// TestSilentNode takes a simulated node offline: it becomes NotReady, then
// Unreachable with the edge taints; a bare pod on it stays (edge
// autonomy), a ReplicaSet's pod that tolerates the unreachable taint for
// 2s is evicted and replaced on the other node; when the node comes back
// its taints go and its agent stops the evicted copy.
func TestSilentNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{
		Nodes:             2,
		HeartbeatInterval: 100 * time.Millisecond,
		NodeGrace:         time.Second,
		Controllers: func(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error {
			return controllers.RunWithOptions(ctx, st, b, controllers.Options{NodeGrace: time.Second, NodeUnreachableGrace: time.Second})
		},
	})
	n0, n1 := sim.NodeName(0), sim.NodeName(1)
	objs, err := manifests.Decode([]byte(`
apiVersion: v1
kind: Pod
metadata: {name: keeper, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: ` + n0 + `}
  containers: [{name: c, image: "fake://run"}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: mover, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: mover}}
  template:
    metadata: {labels: {app: mover}}
    spec:
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference: {matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [` + n0 + `]}]}
      tolerations:
      - {key: node.edge.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers: [{name: c, image: "fake://run"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, _, err := c.Client.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	running := func(want map[string]string) func() error {
		return func() error {
			list, _, err := c.Client.List(ctx, "pods", "default", "")
			if err != nil {
				return err
			}
			got := map[string]string{}
			for _, o := range list {
				p := o.(*manifests.Pod)
				if p.Status.Phase != manifests.PodRunning {
					return fmt.Errorf("pod %s on %q: %q", p.Name, p.Spec.NodeName, p.Status.Phase)
				}
				name := p.Name
				if p.Labels["app"] == "mover" {
					name = "mover"
				}
				if _, dup := got[name]; dup {
					return fmt.Errorf("two %s pods", name)
				}
				got[name] = p.Spec.NodeName
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("pods %v, want %v", got, want)
			}
			return nil
		}
	}
	containers := func(want0, want1 int) func() error {
		return func() error {
			for i, want := range []int{want0, want1} {
				n, err := c.Node(i).Running(ctx)
				if err != nil {
					return err
				}
				if n != want {
					return fmt.Errorf("node %d runs %d containers, want %d", i, n, want)
				}
			}
			return nil
		}
	}
	node := func() (*manifests.Node, []string, error) {
		obj, err := c.Client.Get(ctx, "nodes", "", n0)
		if err != nil {
			return nil, nil, err
		}
		n := obj.(*manifests.Node)
		var taints []string
		for _, tn := range n.Spec.Taints {
			taints = append(taints, tn.Key+":"+tn.Effect)
		}
		return n, taints, nil
	}
	controllertest.Eventually(t, 20*time.Second, running(map[string]string{"keeper": n0, "mover": n0}))
	controllertest.Eventually(t, 10*time.Second, containers(2, 0))

	c.StopNode(0)
	controllertest.Eventually(t, 10*time.Second, func() error {
		n, taints, err := node()
		if err != nil {
			return err
		}
		if sim.NodeIsReady(n) || !slices.Equal(taints, []string{nodes.TaintNotReady + ":NoSchedule"}) {
			return fmt.Errorf("not NotReady yet: taints %v", taints)
		}
		return nil
	})
	unreachableAt := time.Now()
	controllertest.Eventually(t, 10*time.Second, func() error {
		_, taints, err := node()
		if err != nil {
			return err
		}
		if !slices.Equal(taints, []string{nodes.TaintUnreachable + ":NoSchedule", nodes.TaintUnreachable + ":NoExecute"}) {
			return fmt.Errorf("not Unreachable yet: taints %v", taints)
		}
		return nil
	})
	// The bare pod stays bound to the silent node; the mover is replaced
	// on the other node once its 2s toleration has run out.
	controllertest.Eventually(t, 20*time.Second, func() error {
		list, _, err := c.Client.List(ctx, "pods", "default", "app=mover")
		if err != nil {
			return err
		}
		if len(list) != 1 || list[0].(*manifests.Pod).Spec.NodeName != n1 || list[0].(*manifests.Pod).Status.Phase != manifests.PodRunning {
			return fmt.Errorf("mover pods %d", len(list))
		}
		return nil
	})
	if d := time.Since(unreachableAt); d < 1500*time.Millisecond {
		t.Fatalf("mover replaced %v after the node became unreachable, before its 2s toleration", d)
	}
	keeper, err := c.Client.Get(ctx, "pods", "default", "keeper")
	if err != nil || keeper.(*manifests.Pod).Spec.NodeName != n0 {
		t.Fatalf("keeper: %v %v", keeper, err)
	}
	// Offline, node 0 still runs both.
	if err := containers(2, 1)(); err != nil {
		t.Fatal(err)
	}
	evs, _, err := c.Client.List(ctx, "events", "default", "")
	if err != nil {
		t.Fatal(err)
	}
	evicted := false
	for _, o := range evs {
		if e := o.(*manifests.Event); e.Reason == nodes.EventTaintManagerEviction && e.InvolvedObject.Kind == "Pod" {
			evicted = true
		}
	}
	if !evicted {
		t.Fatal("no TaintManagerEviction event")
	}

	c.StartNode(0)
	controllertest.Eventually(t, 20*time.Second, func() error {
		n, taints, err := node()
		if err != nil {
			return err
		}
		if !sim.NodeIsReady(n) || len(taints) != 0 {
			return fmt.Errorf("node back: ready %v taints %v", sim.NodeIsReady(n), taints)
		}
		return nil
	})
	// No two copies: the returning agent stops the evicted mover.
	controllertest.Eventually(t, 20*time.Second, containers(1, 1))
	controllertest.Eventually(t, 10*time.Second, running(map[string]string{"keeper": n0, "mover": n1}))
}
