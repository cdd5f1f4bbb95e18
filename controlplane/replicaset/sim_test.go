package replicaset_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

func TestReplicaSetOnSimulatedFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{Nodes: 2, HeartbeatInterval: 100 * time.Millisecond})
	three := int32(3)
	labels := map[string]string{"app": "api"}
	rs := &manifests.ReplicaSet{
		TypeMeta:   manifests.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: manifests.ObjectMeta{Name: "api", Namespace: "default"},
		Spec: manifests.ReplicaSetSpec{
			Replicas:        &three,
			MinReadySeconds: 2,
			Selector:        &manifests.LabelSelector{MatchLabels: labels},
			Template: manifests.PodTemplateSpec{
				ObjectMeta: manifests.ObjectMeta{Labels: labels},
				Spec:       manifests.PodSpec{Containers: []manifests.Container{{Name: "api", Image: "fake://run"}}},
			},
		},
	}
	start := time.Now()
	if _, _, err := c.Client.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	get := func() *manifests.ReplicaSet {
		o, err := c.Client.Get(ctx, "replicasets", "default", "api")
		if err != nil {
			t.Fatal(err)
		}
		return o.(*manifests.ReplicaSet)
	}
	pods := func() []*manifests.Pod {
		objs, _, err := c.Client.List(ctx, "pods", "default", "app=api")
		if err != nil {
			t.Fatal(err)
		}
		out := make([]*manifests.Pod, len(objs))
		for i, o := range objs {
			out[i] = o.(*manifests.Pod)
		}
		return out
	}
	// Ready first, available minReadySeconds later.
	controllertest.Eventually(t, 20*time.Second, func() error {
		if s := get().Status; s.ReadyReplicas != 3 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	controllertest.Eventually(t, 20*time.Second, func() error {
		if s := get().Status; s.AvailableReplicas != 3 || s.Replicas != 3 || s.FullyLabeledReplicas != 3 || s.ObservedGeneration != 1 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	// Condition times have second precision: a pod is available between
	// 1 and 2 seconds after it became ready.
	if d := time.Since(start); d < time.Second {
		t.Errorf("available after %v, before minReadySeconds (2s)", d)
	}

	// A deleted pod is replaced.
	victim := pods()[0].Name
	if _, err := c.Client.Delete(ctx, "pods", "default", victim); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 20*time.Second, func() error {
		ps := pods()
		ready := 0
		for _, p := range ps {
			if p.Name == victim {
				return fmt.Errorf("deleted pod %s still listed", victim)
			}
			if manifests.IsPodReady(p) {
				ready++
			}
		}
		if len(ps) != 3 || ready != 3 {
			return fmt.Errorf("%d pods, %d ready", len(ps), ready)
		}
		return nil
	})

	// Scale down to 1: the agents stop the others.
	controllertest.Eventually(t, 10*time.Second, func() error {
		cur := get()
		one := int32(1)
		cur.Spec.Replicas = &one
		_, err := c.Client.Update(ctx, cur)
		return err
	})
	controllertest.Eventually(t, 20*time.Second, func() error {
		running := 0
		for i := range c.Nodes() {
			n, err := c.Node(i).Running(ctx)
			if err != nil {
				return err
			}
			running += n
		}
		if n := len(pods()); n != 1 || running != 1 {
			return fmt.Errorf("%d pods, %d running containers", n, running)
		}
		if s := get().Status; s.Replicas != 1 || s.ObservedGeneration != 2 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
}
