package deployment_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/deployment"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

func newDeployment(name string, replicas int32, image string) *manifests.Deployment {
	labels := map[string]string{"app": name}
	return &manifests.Deployment{
		TypeMeta:   manifests.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.DeploymentSpec{
			Replicas: &replicas,
			Selector: &manifests.LabelSelector{MatchLabels: labels},
			Template: manifests.PodTemplateSpec{
				ObjectMeta: manifests.ObjectMeta{Labels: labels},
				Spec:       manifests.PodSpec{Containers: []manifests.Container{{Name: "app", Image: image}}},
			},
		},
	}
}

type cluster struct {
	t   *testing.T
	ctx context.Context
	c   *client.Client
}

func (k *cluster) deployment(name string) *manifests.Deployment {
	k.t.Helper()
	o, err := k.c.Get(k.ctx, "deployments", "default", name)
	if err != nil {
		k.t.Fatal(err)
	}
	return o.(*manifests.Deployment)
}

func (k *cluster) list(resource, selector string) []manifests.Object {
	k.t.Helper()
	objs, _, err := k.c.List(k.ctx, resource, "default", selector)
	if err != nil {
		k.t.Fatal(err)
	}
	return objs
}

// update changes the deployment with f, retrying on conflicts with the
// controller's status writes.
func (k *cluster) update(name string, f func(d *manifests.Deployment)) {
	k.t.Helper()
	controllertest.Eventually(k.t, 10*time.Second, func() error {
		d := k.deployment(name)
		f(d)
		_, err := k.c.Update(k.ctx, d)
		return err
	})
}

// waitComplete waits until the rollout of the deployment's current
// generation is complete, as `kubectl rollout status` does.
func (k *cluster) waitComplete(name string, replicas int32) *manifests.Deployment {
	k.t.Helper()
	var d *manifests.Deployment
	controllertest.Eventually(k.t, 30*time.Second, func() error {
		d = k.deployment(name)
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != replicas || s.Replicas != replicas || s.AvailableReplicas != replicas || s.ReadyReplicas != replicas {
			return fmt.Errorf("deployment %s: generation %d status %+v", name, d.Generation, s)
		}
		if n := len(k.list("pods", "app="+name)); n != int(replicas) {
			return fmt.Errorf("deployment %s: %d pods", name, n)
		}
		return nil
	})
	return d
}

func (k *cluster) replicaSets(name string) []*manifests.ReplicaSet {
	var out []*manifests.ReplicaSet
	for _, o := range k.list("replicasets", "app="+name) {
		out = append(out, o.(*manifests.ReplicaSet))
	}
	return out
}

// sampler follows a deployment's pods through a watch and checks, after
// every change, the ready pods and the pod-template-hashes present at once.
type sampler struct {
	mu        sync.Mutex
	minReady  int
	maxPods   int
	bothAtOne bool
	samples   int
	cancel    context.CancelFunc
	done      chan struct{}
}

// startSampler starts watching; the first `initial` pods (the settled
// state before the change) are taken in before sampling starts.
func startSampler(k *cluster, app string, initial int) *sampler {
	k.t.Helper()
	ctx, cancel := context.WithCancel(k.ctx)
	s := &sampler{minReady: 1 << 30, cancel: cancel, done: make(chan struct{})}
	ch, err := k.c.Watch(ctx, "pods", "default", "app="+app)
	if err != nil {
		k.t.Fatal(err)
	}
	pods := map[string]*manifests.Pod{}
	for len(pods) < initial {
		ev := <-ch
		pods[ev.Object.GetObjectMeta().Name] = ev.Object.(*manifests.Pod)
	}
	go func() {
		defer close(s.done)
		for ev := range ch {
			p := ev.Object.(*manifests.Pod)
			if ev.Type == client.Deleted {
				delete(pods, p.Name)
			} else {
				pods[p.Name] = p
			}
			ready := 0
			hashes := map[string]bool{}
			for _, p := range pods {
				if manifests.IsPodReady(p) {
					ready++
				}
				hashes[p.Labels[manifests.DefaultDeploymentUniqueLabelKey]] = true
			}
			s.mu.Lock()
			s.samples++
			s.minReady = min(s.minReady, ready)
			s.maxPods = max(s.maxPods, len(pods))
			s.bothAtOne = s.bothAtOne || len(hashes) > 1
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sampler) finish() *sampler {
	s.cancel()
	<-s.done
	return s
}

func TestDeploymentsOnSimulatedFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	sc := sim.Start(ctx, t, sim.Options{Nodes: 3, HeartbeatInterval: 100 * time.Millisecond})
	k := &cluster{t: t, ctx: ctx, c: sc.Client}

	// A Deployment of 6 replicas reaches 6 available.
	if _, _, err := k.c.Apply(ctx, newDeployment("web", 6, "fake://run")); err != nil {
		t.Fatal(err)
	}
	d := k.waitComplete("web", 6)
	if d.Annotations[manifests.RevisionAnnotation] != "1" {
		t.Errorf("revision %q, want 1", d.Annotations[manifests.RevisionAnnotation])
	}
	first := k.replicaSets("web")
	if len(first) != 1 {
		t.Fatalf("%d replicasets", len(first))
	}
	firstHash := first[0].Labels[manifests.DefaultDeploymentUniqueLabelKey]

	// Changing the image rolls out with never fewer than 6-1 ready pods
	// (maxUnavailable 25%) and never more than 6+2 pods (maxSurge 25%).
	s := startSampler(k, "web", 6)
	k.update("web", func(d *manifests.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "fake://sleep/10h" })
	d = k.waitComplete("web", 6)
	s.finish()
	t.Logf("rolling update: %d samples, min %d ready, max %d pods", s.samples, s.minReady, s.maxPods)
	if s.minReady < 5 || s.maxPods > 8 {
		t.Errorf("during the rollout: min %d ready pods (want >= 5), max %d pods (want <= 8), %d samples", s.minReady, s.maxPods, s.samples)
	}
	if !s.bothAtOne {
		t.Errorf("old and new pods never ran together: not a rolling update")
	}
	if d.Annotations[manifests.RevisionAnnotation] != "2" {
		t.Errorf("revision %q, want 2", d.Annotations[manifests.RevisionAnnotation])
	}
	// The steps are recorded as events, as kubectl describe shows them.
	controllertest.Eventually(t, 10*time.Second, func() error {
		reasons := map[string]int{}
		for _, o := range k.list("events", "") {
			e := o.(*manifests.Event)
			reasons[e.InvolvedObject.Kind+"/"+e.Reason]++
		}
		if reasons["Deployment/"+deployment.EventScalingReplicaSet] < 3 || reasons["ReplicaSet/SuccessfulCreate"] == 0 || reasons["ReplicaSet/SuccessfulDelete"] == 0 {
			return fmt.Errorf("events by reason: %v", reasons)
		}
		return nil
	})

	// Undo by template (what `edgectl rollout undo` does): the old
	// ReplicaSet comes back with a new revision.
	var oldTemplate manifests.PodTemplateSpec
	for _, rs := range k.replicaSets("web") {
		if deployment.Revision(rs) == 1 {
			oldTemplate = rs.Spec.Template
		}
	}
	delete(oldTemplate.Labels, manifests.DefaultDeploymentUniqueLabelKey)
	k.update("web", func(d *manifests.Deployment) { d.Spec.Template = oldTemplate })
	d = k.waitComplete("web", 6)
	if d.Annotations[manifests.RevisionAnnotation] != "3" {
		t.Errorf("revision after undo %q, want 3", d.Annotations[manifests.RevisionAnnotation])
	}
	rss := k.replicaSets("web")
	if len(rss) != 2 {
		t.Fatalf("%d replicasets after undo, want 2", len(rss))
	}
	for _, rs := range rss {
		if rs.Labels[manifests.DefaultDeploymentUniqueLabelKey] == firstHash {
			if deployment.Revision(rs) != 3 || *rs.Spec.Replicas != 6 {
				t.Errorf("first replicaset after undo: revision %d replicas %d", deployment.Revision(rs), *rs.Spec.Replicas)
			}
		} else if *rs.Spec.Replicas != 0 {
			t.Errorf("second replicaset after undo: replicas %d", *rs.Spec.Replicas)
		}
	}

	// Recreate: the old pods are gone before new ones are created.
	db := newDeployment("db", 3, "fake://run")
	db.Spec.Strategy.Type = manifests.RecreateDeploymentStrategyType
	if _, _, err := k.c.Apply(ctx, db); err != nil {
		t.Fatal(err)
	}
	k.waitComplete("db", 3)
	s = startSampler(k, "db", 3)
	k.update("db", func(d *manifests.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "fake://sleep/10h" })
	k.waitComplete("db", 3)
	s.finish()
	t.Logf("recreate: %d samples, max %d pods", s.samples, s.maxPods)
	if s.bothAtOne || s.maxPods > 3 {
		t.Errorf("Recreate ran old and new pods together (max %d pods)", s.maxPods)
	}

	// Orphan: the ReplicaSet and its pods outlive the deployment.
	if _, _, err := k.c.Apply(ctx, newDeployment("cache", 2, "fake://run")); err != nil {
		t.Fatal(err)
	}
	k.waitComplete("cache", 2)
	if _, err := k.c.DeleteWithOptions(ctx, client.DeleteRequest{Resource: "deployments", Namespace: "default", Name: "cache", PropagationPolicy: client.DeletePropagationOrphan}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, k, "deployments", "cache")
	orphans := k.replicaSets("cache")
	if len(orphans) != 1 || len(orphans[0].OwnerReferences) != 0 {
		t.Fatalf("orphaned replicasets %+v", orphans)
	}
	controllertest.Eventually(t, 10*time.Second, func() error {
		if n := len(k.list("pods", "app=cache")); n != 2 {
			return fmt.Errorf("%d pods of the orphaned replicaset, want 2", n)
		}
		return nil
	})

	// Foreground: the deployment stays, marked, until its replicasets and
	// pods are gone.
	marked, err := k.c.DeleteWithOptions(ctx, client.DeleteRequest{Resource: "deployments", Namespace: "default", Name: "db", PropagationPolicy: client.DeletePropagationForeground})
	if err != nil {
		t.Fatal(err)
	}
	if m := marked.GetObjectMeta(); m.DeletionTimestamp == nil || len(m.Finalizers) != 1 || m.Finalizers[0] != manifests.FinalizerForeground {
		t.Fatalf("foreground delete returned %+v", m)
	}
	controllertest.Eventually(t, 20*time.Second, func() error {
		_, err := k.c.Get(ctx, "deployments", "default", "db")
		pods := len(k.list("pods", "app=db"))
		switch {
		case client.IsNotFound(err) && pods > 0:
			t.Fatalf("deployment deleted before its %d pods", pods)
		case err == nil:
			return fmt.Errorf("deployment still there with %d pods", pods)
		case !client.IsNotFound(err):
			return err
		}
		return nil
	})
	if n := len(k.replicaSets("db")); n != 0 {
		t.Errorf("%d replicasets left after foreground deletion", n)
	}

	// Background (the default): everything goes.
	if _, err := k.c.Delete(ctx, "deployments", "default", "web"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 20*time.Second, func() error {
		rss, pods := len(k.replicaSets("web")), len(k.list("pods", "app=web"))
		if rss+pods > 0 {
			return fmt.Errorf("%d replicasets and %d pods left", rss, pods)
		}
		return nil
	})
}

func waitGone(t *testing.T, k *cluster, resource, name string) {
	t.Helper()
	controllertest.Eventually(t, 20*time.Second, func() error {
		_, err := k.c.Get(k.ctx, resource, "default", name)
		if client.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("%s %s still there (%v)", resource, name, err)
	})
}
