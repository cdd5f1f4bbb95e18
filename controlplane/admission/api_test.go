package admission_test

import (
	"context"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/admission"
	"github.com/edgeorch/edgeorch/controlplane/api"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging/natstest"
)

// Through the API (what edgectl apply uses): the client gets Forbidden
// with Kubernetes' message, and a LimitRange's defaults are in the stored pod.
func TestAdmissionThroughAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nenv := natstest.Start(t, "admission-api")
	st := store.New(nenv.Buckets.Objects)
	st.SetAdmitter(admission.New(st, nil))
	srv := api.New(st, nenv.Conn, api.Options{})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	c := client.New(nenv.Conn)
	lr := &manifests.LimitRange{ObjectMeta: manifests.ObjectMeta{Name: "lr", Namespace: "default"},
		Spec: manifests.LimitRangeSpec{Limits: []manifests.LimitRangeItem{{Type: "Container",
			Default: manifests.ResourceList{"memory": "128Mi"}, Max: manifests.ResourceList{"memory": "256Mi"}}}}}
	if _, _, err := c.Apply(ctx, lr); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Apply(ctx, quota("q", manifests.ResourceList{"pods": "1"})); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Apply(ctx, pod("big", nil, manifests.ResourceList{"memory": "512Mi"}))
	wantForbidden(t, err, `pods "big" is forbidden: maximum memory usage per Container is 256Mi, but limit is 512Mi`)
	// A server-side dry run is admitted as a create (defaults shown,
	// quota checked) and charges nothing.
	_, obj, err := c.ApplyDryRun(ctx, pod("a", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*manifests.Pod).Spec.Containers[0].Resources.Limits["memory"]; got != "128Mi" {
		t.Fatalf("dry run: memory limit = %q, want the LimitRange default 128Mi", got)
	}
	_, _, err = c.ApplyDryRun(ctx, pod("big", nil, manifests.ResourceList{"memory": "512Mi"}))
	wantForbidden(t, err, `pods "big" is forbidden: maximum memory usage per Container is 256Mi`)
	if q, err := c.Get(ctx, "resourcequotas", "default", "q"); err != nil || q.(*manifests.ResourceQuota).Status.Used["pods"] != "0" {
		t.Fatalf("quota after dry runs: %+v %v, want pods used 0", q, err)
	}
	_, obj, err = c.Apply(ctx, pod("a", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*manifests.Pod).Spec.Containers[0].Resources.Limits["memory"]; got != "128Mi" {
		t.Fatalf("memory limit = %q, want the LimitRange default 128Mi", got)
	}
	_, _, err = c.Apply(ctx, pod("b", nil, nil))
	wantForbidden(t, err, `pods "b" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1`)
	_, _, err = c.ApplyDryRun(ctx, pod("b", nil, nil))
	wantForbidden(t, err, `pods "b" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1`)
	got, err := c.Get(ctx, "resourcequotas", "default", "q")
	if err != nil {
		t.Fatal(err)
	}
	if u := got.(*manifests.ResourceQuota).Status.Used["pods"]; u != "1" {
		t.Fatalf("status.used.pods = %q, want 1", u)
	}
}
