package job_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/controllers"
	"github.com/edgeorch/edgeorch/controlplane/job"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/sim"
	"github.com/nats-io/nats.go"
)

func apply(ctx context.Context, t *testing.T, c *sim.Cluster, yaml string) {
	t.Helper()
	objs, err := manifests.Decode([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, _, err := c.Client.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

func jobStatus(ctx context.Context, c *sim.Cluster, name string) (*manifests.Job, error) {
	obj, err := c.Client.Get(ctx, "jobs", "default", name)
	if err != nil {
		return nil, err
	}
	return obj.(*manifests.Job), nil
}

func cond(j *manifests.Job, typ string) *manifests.JobCondition {
	for i := range j.Status.Conditions {
		if j.Status.Conditions[i].Type == typ && j.Status.Conditions[i].Status == manifests.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// TestJobsOnFleet runs Jobs on simulated agents: one whose pods exit 1 is
// retried up to its backoffLimit and then Failed; one whose pods exit 0
// completes.
func TestJobsOnFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{
		Nodes:             2,
		HeartbeatInterval: 100 * time.Millisecond,
		Controllers: func(ctx context.Context, st *store.Store, b *messaging.Buckets, nc *nats.Conn) error {
			return controllers.RunWithOptions(ctx, st, b, controllers.Options{NodeGrace: 2 * time.Second, JobBackoff: 100 * time.Millisecond})
		},
	})
	apply(ctx, t, c, `
apiVersion: batch/v1
kind: Job
metadata: {name: flaky, namespace: default}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: "fake://exit/1"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: batch, namespace: default}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: "fake://exit/0"}]
`)
	controllertest.Eventually(t, 30*time.Second, func() error {
		j, err := jobStatus(ctx, c, "flaky")
		if err != nil {
			return err
		}
		f := cond(j, manifests.JobFailed)
		if f == nil {
			return fmt.Errorf("flaky: status %+v", j.Status)
		}
		if f.Reason != job.ReasonBackoffLimitExceeded || j.Status.Failed != 3 || j.Status.Active != 0 || j.Status.StartTime == nil {
			return fmt.Errorf("flaky: status %+v", j.Status)
		}
		return nil
	})
	pods, _, err := c.Client.List(ctx, "pods", "default", "job-name=flaky")
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 3 {
		t.Fatalf("flaky ran %d pods, want 3 (1 + backoffLimit 2)", len(pods))
	}
	controllertest.Eventually(t, 30*time.Second, func() error {
		j, err := jobStatus(ctx, c, "batch")
		if err != nil {
			return err
		}
		if cond(j, manifests.JobComplete) == nil || j.Status.Succeeded != 3 || j.Status.CompletionTime == nil {
			return fmt.Errorf("batch: status %+v", j.Status)
		}
		return nil
	})
}
