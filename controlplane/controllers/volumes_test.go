package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

// TestControllersBindClaims runs every controller: a pod whose claim does
// not exist yet waits Pending with a message naming the claim; once the
// claim is created the pod is scheduled, the claim provisioned on the
// pod's node and bound; a second pod of the claim goes to the same node.
func TestControllersBindClaims(t *testing.T) {
	controllertest.QuietLogs(t)
	env := controllertest.Start(t)
	st, b := env.Store, env.Buckets
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, n := range []*manifests.Node{newNode("node-a", "a"), newNode("node-b", "b"), newNode("node-c", "c")} {
		if _, err := st.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		defer heartbeat(ctx, t, b.Heartbeats, n.Name, 100*time.Millisecond)()
	}
	done := make(chan error, 1)
	go func() {
		done <- RunWithOptions(ctx, st, b, Options{NodeGrace: time.Second, DisableLeaderElection: true})
	}()
	defer func() { cancel(); <-done }()
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		controllertest.Eventually(t, 10*time.Second, func() error { return nodeReady(ctx, st, n, manifests.ConditionTrue) })
	}

	withClaim := func(name string) *manifests.Pod {
		p := newPod(name, "")
		p.Spec.NodeSelector = nil
		p.Spec.Volumes = []manifests.Volume{{Name: "data", VolumeSource: manifests.VolumeSource{
			PersistentVolumeClaim: &manifests.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
		return p
	}
	if _, err := st.Create(ctx, withClaim("first")); err != nil {
		t.Fatal(err)
	}
	const want = `0/3 nodes are available: 3 persistentvolumeclaim "data" not found.`
	controllertest.Eventually(t, 10*time.Second, func() error {
		p, err := getPod(ctx, st, "first")
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == manifests.PodScheduled && c.Status == manifests.ConditionFalse && c.Message == want && p.Spec.NodeName == "" {
				return nil
			}
		}
		return fmt.Errorf("first: node %q conditions %+v", p.Spec.NodeName, p.Status.Conditions)
	})

	claim := &manifests.PersistentVolumeClaim{ObjectMeta: manifests.ObjectMeta{Name: "data", Namespace: "default"},
		Spec: manifests.PersistentVolumeClaimSpec{AccessModes: []string{manifests.ReadWriteOnce},
			Resources: manifests.VolumeResourceRequirements{Requests: manifests.ResourceList{"storage": "1Gi"}}}}
	manifests.Default(claim)
	if _, err := st.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	var node string
	controllertest.Eventually(t, 10*time.Second, func() error {
		p, err := getPod(ctx, st, "first")
		if err != nil {
			return err
		}
		if node = p.Spec.NodeName; node == "" {
			return fmt.Errorf("first not scheduled: %+v", p.Status.Conditions)
		}
		o, err := st.Get(ctx, "persistentvolumeclaims", "default", "data")
		if err != nil {
			return err
		}
		pvc := o.(*manifests.PersistentVolumeClaim)
		if pvc.Status.Phase != manifests.ClaimBound {
			return fmt.Errorf("claim %s", pvc.Status.Phase)
		}
		o, err = st.Get(ctx, "persistentvolumes", "", pvc.Spec.VolumeName)
		if err != nil {
			return err
		}
		if pv := o.(*manifests.PersistentVolume); manifests.PVNodeName(pv) != node {
			return fmt.Errorf("volume on %q, pod on %s", manifests.PVNodeName(pv), node)
		}
		return nil
	})
	for i := range 3 {
		name := fmt.Sprintf("more-%d", i)
		if _, err := st.Create(ctx, withClaim(name)); err != nil {
			t.Fatal(err)
		}
		controllertest.Eventually(t, 10*time.Second, func() error {
			p, err := getPod(ctx, st, name)
			if err != nil {
				return err
			}
			if p.Spec.NodeName != node {
				return fmt.Errorf("%s on %q, want %s", name, p.Spec.NodeName, node)
			}
			return nil
		})
	}
}
