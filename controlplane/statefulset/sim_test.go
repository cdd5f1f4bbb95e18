package statefulset_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

// TestStatefulSetOnSimulatedFleet runs a StatefulSet on simulated agents:
// each pod is created only after the one below it is ready (as the agents
// report it), a deleted pod comes back under its name, and a scale-down
// leaves the lowest ordinals.
func TestStatefulSetOnSimulatedFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{Nodes: 2, HeartbeatInterval: 100 * time.Millisecond})
	objs, err := manifests.Decode([]byte(`
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: "fake://run"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Client.Apply(ctx, objs[0]); err != nil {
		t.Fatal(err)
	}
	pods := func() (map[string]*manifests.Pod, error) {
		list, _, err := c.Client.List(ctx, "pods", "default", "app=db")
		if err != nil {
			return nil, err
		}
		out := map[string]*manifests.Pod{}
		for _, o := range list {
			out[o.GetObjectMeta().Name] = o.(*manifests.Pod)
		}
		return out, nil
	}
	running := func(want ...string) func() error {
		return func() error {
			got, err := pods()
			if err != nil {
				return err
			}
			if len(got) != len(want) {
				return fmt.Errorf("%d pods, want %v", len(got), want)
			}
			for _, name := range want {
				p := got[name]
				if p == nil || p.Status.Phase != manifests.PodRunning || !manifests.IsPodReady(p) {
					return fmt.Errorf("pod %s not running and ready: %+v", name, p)
				}
			}
			return nil
		}
	}
	controllertest.Eventually(t, 30*time.Second, running("db-0", "db-1", "db-2"))
	got, err := pods()
	if err != nil {
		t.Fatal(err)
	}
	// Ordered: each pod was created after the one below it became ready.
	for _, pair := range [][2]string{{"db-0", "db-1"}, {"db-1", "db-2"}} {
		below, above := got[pair[0]], got[pair[1]]
		ready := manifests.GetPodReadyCondition(below).LastTransitionTime
		if above.CreationTimestamp.Before(ready) {
			t.Errorf("%s created at %v, before %s was ready at %v", above.Name, above.CreationTimestamp, below.Name, ready)
		}
	}
	if p := got["db-1"]; p.Spec.Hostname != "db-1" || p.Spec.Subdomain != "db" {
		t.Errorf("db-1 hostname %q subdomain %q", p.Spec.Hostname, p.Spec.Subdomain)
	}

	uid := got["db-1"].UID
	if _, err := c.Client.Delete(ctx, "pods", "default", "db-1"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 30*time.Second, func() error {
		if err := running("db-0", "db-1", "db-2")(); err != nil {
			return err
		}
		got, err := pods()
		if err != nil {
			return err
		}
		if got["db-1"].UID == uid {
			return fmt.Errorf("db-1 not replaced yet")
		}
		return nil
	})

	o, err := c.Client.Get(ctx, "statefulsets", "default", "db")
	if err != nil {
		t.Fatal(err)
	}
	ss := o.(*manifests.StatefulSet)
	one := int32(1)
	ss.Spec.Replicas = &one
	if _, err := c.Client.Update(ctx, ss); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 30*time.Second, running("db-0"))
}

// TestStatefulSetStorageOnSimulatedFleet: each replica gets its own claim,
// bound to a volume on its device; a deleted pod comes back with the same
// claim, on the same device.
func TestStatefulSetStorageOnSimulatedFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{Nodes: 2, HeartbeatInterval: 100 * time.Millisecond})
	objs, err := manifests.Decode([]byte(`
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kv, namespace: default}
spec:
  serviceName: kv
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: kv}}
  template:
    metadata: {labels: {app: kv}}
    spec:
      containers:
      - name: c
        image: "fake://run"
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Mi}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Client.Apply(ctx, objs[0]); err != nil {
		t.Fatal(err)
	}
	type placed struct{ node, claimUID, volume string }
	state := func(name string) (placed, error) {
		o, err := c.Client.Get(ctx, "pods", "default", name)
		if err != nil {
			return placed{}, err
		}
		p := o.(*manifests.Pod)
		if p.Status.Phase != manifests.PodRunning || !manifests.IsPodReady(p) {
			return placed{}, fmt.Errorf("pod %s is %s", name, p.Status.Phase)
		}
		co, err := c.Client.Get(ctx, "persistentvolumeclaims", "default", "data-"+name)
		if err != nil {
			return placed{}, err
		}
		claim := co.(*manifests.PersistentVolumeClaim)
		if claim.Status.Phase != manifests.ClaimBound || claim.Spec.VolumeName == "" {
			return placed{}, fmt.Errorf("claim %s is %s", claim.Name, claim.Status.Phase)
		}
		return placed{p.Spec.NodeName, claim.UID, claim.Spec.VolumeName}, nil
	}
	var before placed
	controllertest.Eventually(t, 30*time.Second, func() error {
		if _, err := state("kv-1"); err != nil {
			return err
		}
		before, err = state("kv-0")
		return err
	})
	o, err := c.Client.Get(ctx, "pods", "default", "kv-0")
	if err != nil {
		t.Fatal(err)
	}
	uid := o.GetObjectMeta().UID
	if _, err := c.Client.Delete(ctx, "pods", "default", "kv-0"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 30*time.Second, func() error {
		o, err := c.Client.Get(ctx, "pods", "default", "kv-0")
		if err != nil {
			return err
		}
		if o.GetObjectMeta().UID == uid {
			return fmt.Errorf("kv-0 not replaced yet")
		}
		after, err := state("kv-0")
		if err != nil {
			return err
		}
		if after != before {
			return fmt.Errorf("kv-0 came back as %+v, was %+v", after, before)
		}
		return nil
	})
}
