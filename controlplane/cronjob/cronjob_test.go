package cronjob

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

// anchor is the lastScheduleTime the fixtures' CronJobs start from, so
// that the injected clock, not the store's, decides what is due.
var anchor = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type fixture struct {
	t         *testing.T
	ctx       context.Context
	st        *store.Store
	cjs, jobs *controllertest.Cache
	c         *Controller
	rec       *controllertest.Recorder
	now       time.Time
}

func newFixture(t *testing.T) *fixture {
	env := controllertest.Start(t)
	f := &fixture{t: t, ctx: context.Background(), st: env.Store, cjs: &controllertest.Cache{}, jobs: &controllertest.Cache{}, rec: &controllertest.Recorder{}, now: anchor}
	f.c = New(env.Store, f.cjs, f.jobs, f.rec, Options{Now: func() time.Time { return f.now }, Location: time.UTC})
	t.Cleanup(func() { f.c.forget("default/tick") })
	return f
}

func (f *fixture) refresh() {
	f.cjs.Load(f.t, f.st, "cronjobs")
	f.jobs.Load(f.t, f.st, "jobs")
}

func (f *fixture) at(t time.Time) {
	f.t.Helper()
	f.now = t
	f.refresh()
	if err := f.c.Sync(f.ctx, "default/tick"); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

// cronJob stores the CronJob "tick" with lastScheduleTime = anchor.
func (f *fixture) cronJob(schedule string, mutate func(*manifests.CronJob)) *manifests.CronJob {
	f.t.Helper()
	cj := &manifests.CronJob{}
	cj.APIVersion, cj.Kind, cj.Namespace, cj.Name = "batch/v1", "CronJob", "default", "tick"
	cj.Spec.Schedule = schedule
	cj.Spec.JobTemplate.Labels = map[string]string{"app": "tick"}
	cj.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = manifests.RestartNever
	cj.Spec.JobTemplate.Spec.Template.Spec.Containers = []manifests.Container{{Name: "w", Image: "fake://exit/0"}}
	a := anchor
	cj.Status.LastScheduleTime = &a
	if mutate != nil {
		mutate(cj)
	}
	manifests.Default(cj)
	if err := manifests.Validate(cj); err != nil {
		f.t.Fatal(err)
	}
	o, err := f.st.Create(f.ctx, cj)
	if err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
	return o.(*manifests.CronJob)
}

func (f *fixture) get() *manifests.CronJob {
	f.t.Helper()
	o, err := f.st.Get(f.ctx, "cronjobs", "default", "tick")
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*manifests.CronJob)
}

func (f *fixture) update(mutate func(*manifests.CronJob)) {
	f.t.Helper()
	cj := f.get()
	mutate(cj)
	if _, err := f.st.Update(f.ctx, cj); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

// jobNames returns the stored Jobs' names, sorted.
func (f *fixture) jobNames() []string {
	var out []string
	for _, o := range f.jobs.List(manifests.Selector{}) {
		out = append(out, o.GetObjectMeta().Name)
	}
	return out
}

func name(t time.Time) string {
	return JobName(&manifests.CronJob{ObjectMeta: manifests.ObjectMeta{Name: "tick"}}, t)
}

// finish marks the Job for scheduled time t Complete or Failed at f.now.
func (f *fixture) finish(t time.Time, typ string) {
	f.t.Helper()
	o, err := f.st.Get(f.ctx, "jobs", "default", name(t))
	if err != nil {
		f.t.Fatal(err)
	}
	j := o.(*manifests.Job)
	start, end := t, f.now
	j.Status.StartTime = &start
	if typ == manifests.JobComplete {
		j.Status.CompletionTime = &end
	}
	j.Status.Conditions = append(j.Status.Conditions, manifests.JobCondition{Type: typ, Status: manifests.ConditionTrue, LastTransitionTime: end})
	if _, err := f.st.Update(f.ctx, j); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

func (f *fixture) wantJobs(want ...time.Time) {
	f.t.Helper()
	var names []string
	for _, t := range want {
		names = append(names, name(t))
	}
	slices.Sort(names)
	if got := f.jobNames(); !slices.Equal(got, names) {
		f.t.Fatalf("jobs %v, want %v", got, names)
	}
}

func (f *fixture) count(reason string) int {
	n := 0
	for _, r := range f.rec.Reasons() {
		if r == reason {
			n++
		}
	}
	return n
}

func i64(n int64) *int64 { return &n }
func i32(n int32) *int32 { return &n }

func TestRunsAtScheduleTimes(t *testing.T) {
	f := newFixture(t)
	cj := f.cronJob("*/10 * * * *", nil)
	f.at(anchor.Add(5 * time.Minute))
	f.wantJobs()
	t1 := anchor.Add(10 * time.Minute)
	f.at(t1.Add(2 * time.Second))
	f.wantJobs(t1)
	got := f.get()
	if got.Status.LastScheduleTime == nil || !got.Status.LastScheduleTime.Equal(t1) {
		t.Fatalf("lastScheduleTime %v, want %v", got.Status.LastScheduleTime, t1)
	}
	if len(got.Status.Active) != 1 || got.Status.Active[0].Name != name(t1) {
		t.Fatalf("active %+v", got.Status.Active)
	}
	o, _ := f.jobs.Get("default/" + name(t1))
	j := o.(*manifests.Job)
	if ref := manifests.GetControllerOf(j); ref == nil || ref.UID != cj.UID || ref.Kind != "CronJob" {
		t.Fatalf("owner %+v", j.OwnerReferences)
	}
	if j.Labels["app"] != "tick" || j.Annotations[manifests.CronJobScheduledTimestampAnnotation] != "2026-01-01T00:10:00Z" {
		t.Fatalf("labels %v annotations %v", j.Labels, j.Annotations)
	}
	if want := "tick-29453770"; name(t1) != want {
		t.Fatalf("job name %s, want %s (unix minutes)", name(t1), want)
	}
	// Syncing again (a retry, another event) creates nothing more.
	f.at(t1.Add(30 * time.Second))
	f.wantJobs(t1)
	// A status write lost after the create: the next sync finds the Job
	// (create conflict) instead of making a second one.
	f.update(func(cj *manifests.CronJob) { a := anchor; cj.Status.LastScheduleTime = &a })
	f.c.forget("default/tick")
	f.jobs.Clear()
	f.now = t1.Add(40 * time.Second)
	f.cjs.Load(t, f.st, "cronjobs")
	if err := f.c.Sync(f.ctx, "default/tick"); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	f.wantJobs(t1)
	if got := f.get().Status.LastScheduleTime; got == nil || !got.Equal(t1) {
		t.Fatalf("lastScheduleTime after the conflict %v", got)
	}
	// The next time: a second Job (Allow, the default).
	t2 := anchor.Add(20 * time.Minute)
	f.at(t2)
	f.wantJobs(t1, t2)
	if n := len(f.get().Status.Active); n != 2 {
		t.Fatalf("%d active, want 2 (Allow)", n)
	}
	// A finished Job leaves status.active; lastSuccessfulTime is set.
	f.now = t2.Add(time.Minute)
	f.finish(t1, manifests.JobComplete)
	f.at(f.now)
	got = f.get()
	if len(got.Status.Active) != 1 || got.Status.Active[0].Name != name(t2) {
		t.Fatalf("active %+v", got.Status.Active)
	}
	if got.Status.LastSuccessfulTime == nil || !got.Status.LastSuccessfulTime.Equal(t2.Add(time.Minute)) {
		t.Fatalf("lastSuccessfulTime %v", got.Status.LastSuccessfulTime)
	}
	if !f.rec.Has(EventSawCompletedJob) || f.count(EventSuccessfulCreate) != 2 {
		t.Fatalf("events %v", f.rec.Reasons())
	}
}

func TestFirstRunCountsFromCreation(t *testing.T) {
	f := newFixture(t)
	cj := f.cronJob("* * * * *", func(cj *manifests.CronJob) { cj.Status.LastScheduleTime = nil })
	// The store stamps creation with the wall clock (whole seconds), so the
	// checks are placed relative to it: one second before the first minute
	// boundary after creation nothing is due (never before creation, as
	// creation is a whole second below that boundary or earlier).
	created := cj.CreationTimestamp
	next := created.Truncate(time.Minute).Add(time.Minute)
	f.at(next.Add(-time.Second))
	f.wantJobs()
	f.at(next.Add(time.Second))
	f.wantJobs(next)
}

func TestForbid(t *testing.T) {
	f := newFixture(t)
	f.cronJob("*/10 * * * *", func(cj *manifests.CronJob) { cj.Spec.ConcurrencyPolicy = manifests.ForbidConcurrent })
	t1, t2 := anchor.Add(10*time.Minute), anchor.Add(20*time.Minute)
	f.at(t1)
	f.at(t2)
	f.wantJobs(t1)
	if !f.rec.Has(EventJobAlreadyActive) {
		t.Fatalf("events %v", f.rec.Reasons())
	}
	if got := f.get().Status.LastScheduleTime; !got.Equal(t1) {
		t.Fatalf("lastScheduleTime %v moved past the skipped run", got)
	}
	// The run finishes before the next time: the skipped run starts then
	// (no startingDeadlineSeconds), as in Kubernetes.
	f.now = t2.Add(3 * time.Minute)
	f.finish(t1, manifests.JobComplete)
	f.at(f.now)
	f.wantJobs(t1, t2)
}

func TestReplace(t *testing.T) {
	f := newFixture(t)
	f.cronJob("*/10 * * * *", func(cj *manifests.CronJob) { cj.Spec.ConcurrencyPolicy = manifests.ReplaceConcurrent })
	t1, t2 := anchor.Add(10*time.Minute), anchor.Add(20*time.Minute)
	f.at(t1)
	f.at(t2)
	f.wantJobs(t2)
	if !f.rec.Has(EventSuccessfulDelete) {
		t.Fatalf("events %v", f.rec.Reasons())
	}
	if a := f.get().Status.Active; len(a) != 1 || a[0].Name != name(t2) {
		t.Fatalf("active %+v", a)
	}
}

func TestStartingDeadlineSkips(t *testing.T) {
	f := newFixture(t)
	f.cronJob("*/10 * * * *", func(cj *manifests.CronJob) { cj.Spec.StartingDeadlineSeconds = i64(60) })
	t1 := anchor.Add(10 * time.Minute)
	// The control plane comes back 3 minutes late: past the deadline.
	f.at(t1.Add(3 * time.Minute))
	f.wantJobs()
	if f.count(EventMissSchedule) != 1 {
		t.Fatalf("events %v", f.rec.Reasons())
	}
	f.at(t1.Add(4 * time.Minute)) // reported once
	if f.count(EventMissSchedule) != 1 {
		t.Fatalf("events %v", f.rec.Reasons())
	}
	// Within the deadline: it runs.
	t2 := anchor.Add(20 * time.Minute)
	f.at(t2.Add(45 * time.Second))
	f.wantJobs(t2)
}

func TestSuspend(t *testing.T) {
	f := newFixture(t)
	f.cronJob("*/10 * * * *", func(cj *manifests.CronJob) { s := true; cj.Spec.Suspend = &s })
	f.at(anchor.Add(10 * time.Minute))
	f.at(anchor.Add(35 * time.Minute))
	f.wantJobs()
	// Resumed: one catch-up run for the most recent missed time only.
	f.update(func(cj *manifests.CronJob) { s := false; cj.Spec.Suspend = &s })
	f.at(anchor.Add(36 * time.Minute))
	f.wantJobs(anchor.Add(30 * time.Minute))
	if !f.rec.Has(EventMissedSchedules) {
		t.Fatalf("events %v", f.rec.Reasons())
	}
}

func TestHistoryLimits(t *testing.T) {
	f := newFixture(t)
	f.cronJob("*/10 * * * *", func(cj *manifests.CronJob) {
		cj.Spec.SuccessfulJobsHistoryLimit, cj.Spec.FailedJobsHistoryLimit = i32(2), i32(1)
	})
	var times []time.Time
	for i := 1; i <= 6; i++ {
		ti := anchor.Add(time.Duration(i*10) * time.Minute)
		times = append(times, ti)
		f.at(ti)
		f.now = ti.Add(time.Minute)
		typ := manifests.JobComplete
		if i == 2 || i == 4 {
			typ = manifests.JobFailed
		}
		f.finish(ti, typ)
	}
	f.at(f.now)
	// Succeeded: 1, 3, 5, 6 -> keep 5, 6; failed: 2, 4 -> keep 4.
	f.wantJobs(times[3], times[4], times[5])
	// A limit of 0 keeps none.
	f.update(func(cj *manifests.CronJob) { cj.Spec.FailedJobsHistoryLimit = i32(0) })
	f.at(f.now)
	f.wantJobs(times[4], times[5])
}

func TestLongOutageRunsOnce(t *testing.T) {
	f := newFixture(t)
	f.cronJob("*/5 * * * *", nil)
	// Three days down: 864 missed times, one run (the latest) and a
	// TooManyMissedTimes event.
	back := anchor.Add(72*time.Hour + 2*time.Minute)
	f.at(back)
	f.wantJobs(anchor.Add(72 * time.Hour))
	if !f.rec.Has(EventTooManyMissedTimes) {
		t.Fatalf("events %v", f.rec.Reasons())
	}
	// Three missed times (a short outage): one run, counted in an event.
	f.at(anchor.Add(72*time.Hour + 17*time.Minute))
	f.wantJobs(anchor.Add(72*time.Hour), anchor.Add(72*time.Hour+15*time.Minute))
	if !f.rec.Has(EventMissedSchedules) {
		t.Fatalf("events %v", f.rec.Reasons())
	}
}

func TestTimeZoneShiftsTheHour(t *testing.T) {
	f := newFixture(t)
	// 09:00 in Tokyo (UTC+9, no daylight saving) is 00:00 UTC.
	f.cronJob("0 9 * * *", func(cj *manifests.CronJob) {
		tz := "Asia/Tokyo"
		cj.Spec.TimeZone = &tz
		a := anchor.Add(-12 * time.Hour)
		cj.Status.LastScheduleTime = &a
	})
	f.at(anchor.Add(time.Minute))
	f.wantJobs(anchor)
	o, _ := f.jobs.Get("default/" + name(anchor))
	if ts := o.(*manifests.Job).Annotations[manifests.CronJobScheduledTimestampAnnotation]; ts != "2026-01-01T09:00:00+09:00" {
		t.Fatalf("scheduled timestamp %q", ts)
	}
	// At 09:00 UTC nothing more is due (it would be without the zone).
	f.at(anchor.Add(9*time.Hour + time.Minute))
	f.wantJobs(anchor)
	f.at(anchor.Add(24*time.Hour + time.Minute))
	f.wantJobs(anchor, anchor.Add(24*time.Hour))
}

func TestMostRecentTime(t *testing.T) {
	s, err := manifests.ParseSchedule("* * * * *")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	now := time.Date(2025, 6, 1, 12, 34, 56, 0, time.UTC)
	latest, n := MostRecentTime(s, from, now)
	if want := time.Date(2025, 6, 1, 12, 34, 0, 0, time.UTC); !latest.Equal(want) || n <= MaxMissedTimes {
		t.Fatalf("latest %v (%d counted), want %v and more than %d", latest, n, want, MaxMissedTimes)
	}
	if latest, n := MostRecentTime(s, now, now); !latest.IsZero() || n != 0 {
		t.Fatalf("nothing due: %v %d", latest, n)
	}
	y, _ := manifests.ParseSchedule("@yearly")
	latest, n = MostRecentTime(y, time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC), now)
	if want := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC); !latest.Equal(want) || n <= MaxMissedTimes {
		t.Fatalf("yearly latest %v (%d)", latest, n)
	}
	if _, n := MostRecentTime(y, time.Date(2020, 6, 1, 0, 0, 0, 0, time.UTC), now); n != 5 {
		t.Fatalf("yearly since mid-2020: %d times, want 5", n)
	}
}

func TestJobNameFitsLabels(t *testing.T) {
	cj := &manifests.CronJob{ObjectMeta: manifests.ObjectMeta{Name: strings.Repeat("a", manifests.MaxCronJobNameLength)}}
	if n := JobName(cj, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)); len(n) > 63 {
		t.Fatalf("job name %q is %d characters", n, len(n))
	}
}
