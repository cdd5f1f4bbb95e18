package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

// TestHPAWired runs the controllers on a real store: a new HPA whose
// target is below minReplicas scales it at once (its first sync does not
// wait for the 15 s period), with a SuccessfulRescale event and status.
func TestHPAWired(t *testing.T) {
	env := controllertest.Start(t)
	st, b := env.Store, env.Buckets
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- RunWithOptions(ctx, st, b, Options{NodeGrace: time.Second}) }()
	defer func() { cancel(); <-done }()

	one := int32(1)
	d := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default"}}
	d.Spec.Replicas = &one
	d.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	d.Spec.Template.Labels = map[string]string{"app": "web"}
	d.Spec.Template.Spec.Containers = []manifests.Container{{Name: "web", Image: "hello:v1"}}
	h := &manifests.HorizontalPodAutoscaler{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default"}}
	h.Spec.ScaleTargetRef = manifests.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}
	three := int32(3)
	h.Spec.MinReplicas, h.Spec.MaxReplicas = &three, 5
	for _, o := range []manifests.Object{d, h} {
		manifests.Default(o)
		if err := manifests.Validate(o); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	controllertest.Eventually(t, 15*time.Second, func() error {
		obj, err := st.Get(ctx, "deployments", "default", "web")
		if err != nil {
			return err
		}
		if n := *obj.(*manifests.Deployment).Spec.Replicas; n != 3 {
			return fmt.Errorf("replicas %d, want 3", n)
		}
		obj, err = st.Get(ctx, "horizontalpodautoscalers", "default", "web")
		if err != nil {
			return err
		}
		if s := obj.(*manifests.HorizontalPodAutoscaler).Status; s.DesiredReplicas != 3 || s.LastScaleTime == nil {
			return fmt.Errorf("hpa status %+v", s)
		}
		_, err = findEvent(ctx, st, "web", "SuccessfulRescale")
		return err
	})
}
