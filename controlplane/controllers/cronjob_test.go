package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/manifests"
)

// TestCronJobWired runs the controllers on a real store: a CronJob whose
// last run was two minutes ago gets one Job for the latest missed minute,
// the Job controller makes its pod, and deleting the CronJob lets the
// garbage collector remove the Job.
func TestCronJobWired(t *testing.T) {
	env := controllertest.Start(t)
	st, b := env.Store, env.Buckets
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- RunWithOptions(ctx, st, b, Options{NodeGrace: time.Second}) }()
	defer func() { cancel(); <-done }()

	cj := &manifests.CronJob{}
	cj.APIVersion, cj.Kind, cj.Namespace, cj.Name = "batch/v1", "CronJob", "default", "tick"
	cj.Spec.Schedule = "* * * * *"
	tz := "UTC"
	cj.Spec.TimeZone = &tz
	cj.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = manifests.RestartNever
	cj.Spec.JobTemplate.Spec.Template.Spec.Containers = []manifests.Container{{Name: "c", Image: "hello:v1"}}
	last := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Minute)
	cj.Status.LastScheduleTime = &last
	manifests.Default(cj)
	if err := manifests.Validate(cj); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, cj); err != nil {
		t.Fatal(err)
	}
	var jobName string
	controllertest.Eventually(t, 15*time.Second, func() error {
		jobs, _, err := st.List(ctx, "jobs", "default", manifests.Selector{})
		if err != nil {
			return err
		}
		if len(jobs) == 0 {
			return fmt.Errorf("no job yet")
		}
		if len(jobs) > 2 {
			return fmt.Errorf("%d jobs: missed minutes were replayed", len(jobs))
		}
		jobName = jobs[0].GetObjectMeta().Name
		pods, _, err := st.List(ctx, "pods", "default", manifests.Selector{})
		if err != nil || len(pods) == 0 {
			return fmt.Errorf("no pod of job %s yet (%v)", jobName, err)
		}
		return nil
	})
	if _, err := st.Delete(ctx, "cronjobs", "default", "tick", 0); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 15*time.Second, func() error {
		if _, err := st.Get(ctx, "jobs", "default", jobName); !client.IsNotFound(err) {
			return fmt.Errorf("job %s of the deleted cronjob still there (%v)", jobName, err)
		}
		return nil
	})
}
