package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

// The StatefulSet controller runs on the leader: pods come up in ordinal
// order as the test (standing in for the agent) reports them ready, the
// claims and the revision are made, and deleting the set takes its pods,
// revisions and (whenDeleted: Delete) claims with it.
func TestStatefulSetWiring(t *testing.T) {
	env := controllertest.Start(t)
	st, b := env.Store, env.Buckets
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := st.Create(ctx, newNode("node-a", "a")); err != nil {
		t.Fatal(err)
	}
	defer heartbeat(ctx, t, b.Leases, "node-a", 100*time.Millisecond)()
	done := make(chan error, 1)
	go func() {
		done <- RunWithOptions(ctx, st, b, Options{NodeGrace: time.Second, DisableLeaderElection: true})
	}()
	defer func() { cancel(); <-done }()

	ss := &manifests.StatefulSet{}
	ss.APIVersion, ss.Kind, ss.Namespace, ss.Name = "apps/v1", "StatefulSet", "default", "web"
	ss.Spec.Replicas = new(int32(3))
	ss.Spec.ServiceName = "web"
	ss.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	ss.Spec.Template.Labels = map[string]string{"app": "web"}
	wasm := manifests.RuntimeWasm
	ss.Spec.Template.Spec.RuntimeClassName = &wasm
	ss.Spec.Template.Spec.Containers = []manifests.Container{{Name: "c", Image: "hello:v1", VolumeMounts: []manifests.VolumeMount{{Name: "data", MountPath: "/data"}}}}
	claim := manifests.PersistentVolumeClaim{}
	claim.Name = "data"
	claim.Spec.AccessModes = []string{manifests.ReadWriteOnce}
	claim.Spec.Resources.Requests = manifests.ResourceList{"storage": "10Mi"}
	ss.Spec.VolumeClaimTemplates = []manifests.PersistentVolumeClaim{claim}
	ss.Spec.PersistentVolumeClaimRetentionPolicy = &manifests.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: "Delete"}
	manifests.Default(ss)
	if err := manifests.Validate(ss); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, ss); err != nil {
		t.Fatal(err)
	}

	// Stand in for the agent: report each pod running and ready, checking
	// that no pod exists before the ones below it are ready.
	controllertest.Eventually(t, 20*time.Second, func() error {
		objs, _, err := st.List(ctx, "pods", "default", manifests.Selector{})
		if err != nil {
			return err
		}
		ready := map[int]bool{}
		var pods []*manifests.Pod
		for _, o := range objs {
			p := o.(*manifests.Pod)
			ord, err := strconv.Atoi(strings.TrimPrefix(p.Name, "web-"))
			if err != nil {
				t.Fatalf("pod %s is not named web-<ordinal>", p.Name)
			}
			ready[ord] = manifests.IsPodReady(p)
			pods = append(pods, p)
		}
		for _, p := range pods {
			ord, _ := strconv.Atoi(strings.TrimPrefix(p.Name, "web-"))
			for below := 0; below < ord; below++ {
				if !ready[below] {
					t.Fatalf("pod %s exists while web-%d is not ready", p.Name, below)
				}
			}
			if ready[ord] {
				continue
			}
			p.Status.Phase = manifests.PodRunning
			p.Status.Conditions = []manifests.PodCondition{{Type: manifests.PodReady, Status: manifests.ConditionTrue, LastTransitionTime: time.Now()}}
			if _, err := st.Update(ctx, p); err != nil {
				return err
			}
		}
		o, err := st.Get(ctx, "statefulsets", "default", "web")
		if err != nil {
			return err
		}
		if s := o.(*manifests.StatefulSet).Status; s.ReadyReplicas != 3 || s.CurrentRevision == "" {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	for _, name := range []string{"data-web-0", "data-web-1", "data-web-2"} {
		if _, err := st.Get(ctx, "persistentvolumeclaims", "default", name); err != nil {
			t.Errorf("claim %s: %v", name, err)
		}
	}
	revs, _, err := st.List(ctx, "controllerrevisions", "default", manifests.Selector{})
	if err != nil || len(revs) != 1 {
		t.Fatalf("revisions %v, %v", revs, err)
	}

	if _, err := st.Delete(ctx, "statefulsets", "default", "web", 0); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 20*time.Second, func() error {
		for _, res := range []string{"pods", "persistentvolumeclaims", "controllerrevisions"} {
			objs, _, err := st.List(ctx, res, "default", manifests.Selector{})
			if err != nil {
				return err
			}
			if len(objs) > 0 {
				return fmt.Errorf("%d %s left", len(objs), res)
			}
		}
		return nil
	})
}
