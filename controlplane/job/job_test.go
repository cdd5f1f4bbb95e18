package job

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
)

type fixture struct {
	t          *testing.T
	ctx        context.Context
	st         *store.Store
	jobs, pods *controllertest.Cache
	c          *Controller
	rec        *controllertest.Recorder
	now        time.Time
}

func newFixture(t *testing.T) *fixture {
	env := controllertest.Start(t)
	f := &fixture{t: t, ctx: context.Background(), st: env.Store, jobs: &controllertest.Cache{}, pods: &controllertest.Cache{}, rec: &controllertest.Recorder{},
		now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	f.c = New(env.Store, f.jobs, f.pods, f.rec, Options{Backoff: 10 * time.Second, Now: func() time.Time { return f.now }})
	return f
}

func (f *fixture) refresh() {
	f.jobs.Load(f.t, f.st, "jobs")
	f.pods.Load(f.t, f.st, "pods")
}

func (f *fixture) sync() {
	f.t.Helper()
	f.refresh()
	if err := f.c.Sync(f.ctx, "default/work"); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

func (f *fixture) job(mutate func(*manifests.Job)) *manifests.Job {
	f.t.Helper()
	j := &manifests.Job{}
	j.APIVersion, j.Kind, j.Namespace, j.Name = "batch/v1", "Job", "default", "work"
	j.Spec.Template.Spec.RestartPolicy = manifests.RestartNever
	j.Spec.Template.Spec.Containers = []manifests.Container{{Name: "w", Image: "fake://exit/0"}}
	mutate(j)
	manifests.Default(j)
	if err := manifests.Validate(j); err != nil {
		f.t.Fatal(err)
	}
	o, err := f.st.Create(f.ctx, j)
	if err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
	return o.(*manifests.Job)
}

func (f *fixture) get() *manifests.Job {
	f.t.Helper()
	o, err := f.st.Get(f.ctx, "jobs", "default", "work")
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*manifests.Job)
}

func (f *fixture) podList() []*manifests.Pod {
	var out []*manifests.Pod
	for _, o := range f.pods.List(manifests.Selector{}) {
		out = append(out, o.(*manifests.Pod))
	}
	return out
}

// finish sets the phase of n running pods (with exit code and time).
func (f *fixture) finish(n int, phase string) {
	f.t.Helper()
	done := 0
	for _, p := range f.podList() {
		if done == n {
			break
		}
		if p.Status.Phase == manifests.PodSucceeded || p.Status.Phase == manifests.PodFailed {
			continue
		}
		cp := manifests.DeepCopy(p).(*manifests.Pod)
		cp.Status.Phase = phase
		if _, err := f.st.Update(f.ctx, cp); err != nil {
			f.t.Fatal(err)
		}
		done++
	}
	if done != n {
		f.t.Fatalf("only %d pods to finish", done)
	}
	f.refresh()
}

func (f *fixture) count(phase string) int {
	n := 0
	for _, p := range f.podList() {
		ph := p.Status.Phase
		if phase == "active" {
			if ph != manifests.PodSucceeded && ph != manifests.PodFailed {
				n++
			}
		} else if ph == phase {
			n++
		}
	}
	return n
}

func condition(j *manifests.Job, typ string) *manifests.JobCondition {
	for i := range j.Status.Conditions {
		if j.Status.Conditions[i].Type == typ {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

func i32(n int32) *int32 { return &n }
func i64(n int64) *int64 { return &n }

func TestCompletionsAndParallelism(t *testing.T) {
	f := newFixture(t)
	j := f.job(func(j *manifests.Job) { j.Spec.Completions, j.Spec.Parallelism = i32(3), i32(2) })
	f.sync()
	if n := f.count("active"); n != 2 {
		t.Fatalf("%d active pods, want 2", n)
	}
	// A sync before the cache shows them creates no more.
	f.pods.Clear()
	if err := f.c.Sync(f.ctx, "default/work"); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	if n := len(f.podList()); n != 2 {
		t.Fatalf("%d pods after a sync with a stale cache, want 2", n)
	}
	p := f.podList()[0]
	if !strings.HasPrefix(p.Name, "work-") || len(p.Name) != len("work-")+5 {
		t.Fatalf("pod name %q", p.Name)
	}
	for k, v := range map[string]string{"job-name": "work", "controller-uid": j.UID, manifests.JobNameLabel: "work", manifests.ControllerUIDLabel: j.UID} {
		if p.Labels[k] != v {
			t.Fatalf("label %s=%q, want %q (%v)", k, p.Labels[k], v, p.Labels)
		}
	}
	if ref := manifests.GetControllerOf(p); ref == nil || ref.UID != j.UID || ref.Kind != "Job" || p.Spec.RestartPolicy != manifests.RestartNever {
		t.Fatalf("pod %+v", p.ObjectMeta)
	}
	got := f.get()
	if got.Status.Active != 2 || got.Status.StartTime == nil || !got.Status.StartTime.Equal(f.now) {
		t.Fatalf("status %+v", got.Status)
	}

	f.finish(1, manifests.PodSucceeded)
	f.sync()
	if a, s := f.count("active"), f.count(manifests.PodSucceeded); a != 2 || s != 1 {
		t.Fatalf("active %d succeeded %d, want 2 and 1", a, s)
	}
	f.finish(1, manifests.PodSucceeded)
	f.sync()
	if a := f.count("active"); a != 1 { // only one completion left
		t.Fatalf("active %d, want 1", a)
	}
	f.now = f.now.Add(time.Minute)
	f.finish(1, manifests.PodSucceeded)
	f.sync()
	got = f.get()
	c := condition(got, manifests.JobComplete)
	if c == nil || c.Status != manifests.ConditionTrue || got.Status.Succeeded != 3 || got.Status.Active != 0 ||
		got.Status.CompletionTime == nil || !got.Status.CompletionTime.Equal(f.now) {
		t.Fatalf("status %+v", got.Status)
	}
	if !f.rec.Has(EventCompleted) || !f.rec.Has(EventSuccessfulCreate) {
		t.Fatalf("events %v", f.rec.Reasons())
	}
	// Nothing more happens.
	rv := got.ResourceVersion
	f.sync()
	if f.get().ResourceVersion != rv || len(f.podList()) != 3 {
		t.Fatal("a finished job changed")
	}
}

func TestBackoffLimit(t *testing.T) {
	f := newFixture(t)
	f.job(func(j *manifests.Job) { j.Spec.BackoffLimit = i32(1) })
	f.sync()
	f.finish(1, manifests.PodFailed)
	f.sync()
	if got := f.get(); got.Status.Failed != 1 || f.count("active") != 0 {
		t.Fatalf("after one failure: status %+v, %d active", got.Status, f.count("active"))
	}
	// The replacement waits for the backoff.
	f.now = f.now.Add(9 * time.Second)
	f.sync()
	if f.count("active") != 0 {
		t.Fatal("replaced before the backoff")
	}
	f.now = f.now.Add(time.Second)
	f.sync()
	if f.count("active") != 1 {
		t.Fatal("not replaced after the backoff")
	}
	f.finish(1, manifests.PodFailed)
	f.sync()
	got := f.get()
	c := condition(got, manifests.JobFailed)
	if c == nil || c.Status != manifests.ConditionTrue || c.Reason != ReasonBackoffLimitExceeded || c.Message != MessageBackoffLimitExceeded || got.Status.Failed != 2 {
		t.Fatalf("status %+v", got.Status)
	}
	f.now = f.now.Add(time.Hour)
	f.sync()
	if n := len(f.podList()); n != 2 {
		t.Fatalf("%d pods after the job failed, want the 2 failed ones", n)
	}
}

func TestOnFailureCountsRestarts(t *testing.T) {
	f := newFixture(t)
	f.job(func(j *manifests.Job) {
		j.Spec.BackoffLimit = i32(2)
		j.Spec.Template.Spec.RestartPolicy = manifests.RestartOnFailure
	})
	f.sync()
	p := manifests.DeepCopy(f.podList()[0]).(*manifests.Pod)
	p.Status.Phase = manifests.PodRunning
	p.Status.ContainerStatuses = []manifests.ContainerStatus{{Name: "w", RestartCount: 2}}
	if _, err := f.st.Update(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if condition(f.get(), manifests.JobFailed) != nil {
		t.Fatal("failed at 2 restarts with backoffLimit 2")
	}
	p = manifests.DeepCopy(f.podList()[0]).(*manifests.Pod)
	p.Status.ContainerStatuses[0].RestartCount = 3
	if _, err := f.st.Update(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	f.sync()
	c := condition(f.get(), manifests.JobFailed)
	if c == nil || c.Reason != ReasonBackoffLimitExceeded {
		t.Fatalf("conditions %+v", f.get().Status.Conditions)
	}
	if n := len(f.podList()); n != 0 {
		t.Fatalf("%d pods left running", n)
	}
}

func TestActiveDeadline(t *testing.T) {
	f := newFixture(t)
	f.job(func(j *manifests.Job) {
		j.Spec.ActiveDeadlineSeconds = i64(30)
		j.Spec.Parallelism = i32(2)
		j.Spec.Completions = i32(4)
	})
	f.sync()
	f.now = f.now.Add(29 * time.Second)
	f.sync()
	if condition(f.get(), manifests.JobFailed) != nil || f.count("active") != 2 {
		t.Fatal("failed before the deadline")
	}
	f.now = f.now.Add(time.Second)
	f.sync()
	c := condition(f.get(), manifests.JobFailed)
	if c == nil || c.Reason != ReasonDeadlineExceeded || c.Message != MessageDeadlineExceeded {
		t.Fatalf("conditions %+v", f.get().Status.Conditions)
	}
	if n := len(f.podList()); n != 0 {
		t.Fatalf("%d active pods not killed", n)
	}
	if f.get().Status.Active != 0 {
		t.Fatalf("status %+v", f.get().Status)
	}
}

func TestTTLAfterFinished(t *testing.T) {
	f := newFixture(t)
	f.job(func(j *manifests.Job) { j.Spec.TTLSecondsAfterFinished = i32(5) })
	f.sync()
	f.finish(1, manifests.PodSucceeded)
	f.sync()
	if condition(f.get(), manifests.JobComplete) == nil {
		t.Fatal("not complete")
	}
	f.now = f.now.Add(4 * time.Second)
	f.sync()
	f.get()
	f.now = f.now.Add(time.Second)
	f.sync()
	if _, err := f.st.Get(f.ctx, "jobs", "default", "work"); !client.IsNotFound(err) {
		t.Fatalf("job after its ttl: %v", err)
	}
	if n := len(f.podList()); n != 0 {
		t.Fatalf("%d pods left", n)
	}
}

func TestParallelismDecreaseAndSuspend(t *testing.T) {
	f := newFixture(t)
	f.job(func(j *manifests.Job) { j.Spec.Parallelism, j.Spec.Completions = i32(3), i32(10) })
	f.sync()
	if f.count("active") != 3 {
		t.Fatalf("%d active", f.count("active"))
	}
	j := manifests.DeepCopy(f.get()).(*manifests.Job)
	j.Spec.Parallelism = i32(1)
	if _, err := f.st.Update(f.ctx, j); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if f.count("active") != 1 {
		t.Fatalf("%d active after parallelism 1", f.count("active"))
	}
	j = manifests.DeepCopy(f.get()).(*manifests.Job)
	yes := true
	j.Spec.Suspend = &yes
	if _, err := f.st.Update(f.ctx, j); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if f.count("active") != 0 {
		t.Fatalf("%d active while suspended", f.count("active"))
	}
}

func TestWorkQueue(t *testing.T) {
	f := newFixture(t)
	f.job(func(j *manifests.Job) { j.Spec.Parallelism = i32(2); j.Spec.Completions = nil })
	f.sync()
	if f.count("active") != 2 {
		t.Fatalf("%d active", f.count("active"))
	}
	f.finish(1, manifests.PodSucceeded)
	f.sync()
	if f.count("active") != 1 || condition(f.get(), manifests.JobComplete) != nil {
		t.Fatal("work queue: one success must wait for the others")
	}
	f.finish(1, manifests.PodSucceeded)
	f.sync()
	if c := condition(f.get(), manifests.JobComplete); c == nil || f.get().Status.Succeeded != 2 {
		t.Fatalf("status %+v", f.get().Status)
	}
}
