package cronjob

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/api"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging/natstest"
)

// TestApplyRefusesInvalid applies CronJobs through the real API: an
// invalid schedule, time zone or concurrency policy is refused with an
// Invalid error naming the field, and nothing is stored.
func TestApplyRefusesInvalid(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	env := natstest.Start(t, "cronjob-test")
	st := store.New(env.Buckets.Objects)
	srv := api.New(st, env.Conn, api.Options{})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	c := client.New(env.Conn)

	const good = `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"NAME"},"spec":{"schedule":"SCHEDULE",EXTRA"jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox"}]}}}}}}`
	mk := func(name, schedule, extra string) json.RawMessage {
		r := strings.NewReplacer("NAME", name, "SCHEDULE", schedule, "EXTRA", extra)
		return json.RawMessage(r.Replace(good))
	}
	for _, tc := range []struct {
		name, schedule, extra, want string
	}{
		{"bad-schedule", "61 * * * *", "", "spec.schedule"},
		{"bad-zone", "@daily", `"timeZone":"Nowhere/Special",`, "spec.timeZone"},
		{"bad-policy", "@daily", `"concurrencyPolicy":"Never",`, "spec.concurrencyPolicy"},
		{"bad-deadline", "@daily", `"startingDeadlineSeconds":-5,`, "spec.startingDeadlineSeconds"},
		{"unknown-field", "@daily", `"schedules":"x",`, "schedules"},
	} {
		_, _, err := c.ApplyRaw(ctx, mk(tc.name, tc.schedule, tc.extra), false)
		if client.CodeOf(err) != client.CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v (code %q), want Invalid naming %s", tc.name, err, client.CodeOf(err), tc.want)
		}
		if _, err := c.Get(ctx, "cronjobs", "default", tc.name); !client.IsNotFound(err) {
			t.Errorf("%s: stored after an invalid apply (%v)", tc.name, err)
		}
	}
	// The valid one is stored, defaulted.
	if _, _, err := c.ApplyRaw(ctx, mk("ok", "*/5 * * * *", `"timeZone":"Europe/Paris",`), false); err != nil {
		t.Fatal(err)
	}
	o, err := c.Get(ctx, "cronjobs", "default", "ok")
	if err != nil {
		t.Fatal(err)
	}
	cj, ok := o.(*manifests.CronJob)
	if !ok || cj.Spec.ConcurrencyPolicy != manifests.AllowConcurrent || *cj.Spec.SuccessfulJobsHistoryLimit != 3 {
		t.Fatalf("stored %#v", o)
	}
}
