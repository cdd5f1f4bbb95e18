// Package cronjob is the CronJob controller: at each time of a CronJob's
// schedule (in its time zone) it creates a Job from spec.jobTemplate,
// named <cronjob>-<scheduled time in Unix minutes> so that a retry never
// makes a second one. It follows Kubernetes' rules for missed times: only
// the most recent missed time is run (never every missed one), more than
// 100 missed times are reported with a TooManyMissedTimes event, a time
// older than startingDeadlineSeconds is skipped with a MissSchedule event.
// concurrencyPolicy Forbid skips a run while one is active, Replace
// deletes the active ones first; finished Jobs beyond the history limits
// are deleted, oldest first.
package cronjob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"

	// The control plane resolves spec.timeZone with Go's embedded IANA
	// database, so a host without /usr/share/zoneinfo (a minimal
	// container) schedules the same as one with it (about 410 KB, measured).
	_ "time/tzdata"
)

// Name is the controller's name, the source of its events.
const Name = "cronjob-controller"

// Event reasons (Kubernetes', and MissedSchedules).
const (
	EventSuccessfulCreate   = "SuccessfulCreate"
	EventSuccessfulDelete   = "SuccessfulDelete"
	EventFailedCreate       = "FailedCreate"
	EventFailedDelete       = "FailedDelete"
	EventJobAlreadyActive   = "JobAlreadyActive"
	EventTooManyMissedTimes = "TooManyMissedTimes"
	EventMissSchedule       = "MissSchedule"
	EventMissedSchedules    = "MissedSchedules"
	EventSawCompletedJob    = "SawCompletedJob"
	EventInvalidSchedule    = "InvalidSchedule"
	EventUnknownTimeZone    = "UnknownTimeZone"
)

// MaxMissedTimes is how many missed times are counted before the
// TooManyMissedTimes event (Kubernetes' 100).
const MaxMissedTimes = 100

// Defaults of Options.
const (
	// DefaultMaxRequeue bounds the wait for the next scheduled time, so
	// that a step of the wall clock (NTP after a boot without RTC) is
	// noticed within it.
	DefaultMaxRequeue = 5 * time.Minute
)

// expectTimeout bounds how long a created Job the cache does not show yet
// is still counted as active.
const expectTimeout = time.Minute

// Store is what the controller needs of the object store.
type Store interface {
	Create(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Update(ctx context.Context, obj manifests.Object) (manifests.Object, error)
	Delete(ctx context.Context, resource, namespace, name string, rev uint64) (manifests.Object, error)
}

// Lister is a read-only cache of one resource.
type Lister interface {
	Get(key string) (manifests.Object, bool)
	List(sel manifests.Selector) []manifests.Object
}

// Recorder records events.
type Recorder interface {
	Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error
}

// Options tune the controller; zero values take the defaults.
type Options struct {
	// Now is the clock (tests drive it).
	Now func() time.Time
	// Location is the time zone of a CronJob without spec.timeZone (as
	// Kubernetes: the control plane's local zone, time.Local).
	Location *time.Location
	// MaxRequeue bounds the wait before the next sync of a CronJob.
	MaxRequeue time.Duration
}

// Controller reconciles CronJobs.
type Controller struct {
	st    Store
	cjs   Lister
	jobs  Lister
	rec   Recorder
	opts  Options
	queue *controller.Queue

	mu sync.Mutex
	// Jobs created that the job cache may not show yet, by CronJob key.
	created map[string]map[string]createdJob
	// Jobs deleted that the cache may still show, by CronJob key.
	deleted map[string]map[string]time.Time
	// The last missed time reported with MissSchedule, by CronJob key.
	missReported map[string]time.Time
	timers       map[string]*time.Timer
}

type createdJob struct {
	ref manifests.ObjectReference
	at  time.Time
}

// New returns a controller over the given caches. Register CronJobChanged
// on the CronJob cache and JobChanged on the Job cache.
func New(st Store, cronjobs, jobs Lister, rec Recorder, opts Options) *Controller {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	if opts.MaxRequeue <= 0 {
		opts.MaxRequeue = DefaultMaxRequeue
	}
	return &Controller{
		st: st, cjs: cronjobs, jobs: jobs, rec: rec, opts: opts,
		queue:        controller.NewQueue(50*time.Millisecond, 30*time.Second),
		created:      map[string]map[string]createdJob{},
		deleted:      map[string]map[string]time.Time{},
		missReported: map[string]time.Time{},
		timers:       map[string]*time.Timer{},
	}
}

// Run syncs with workers workers until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) {
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		for k, t := range c.timers {
			t.Stop()
			delete(c.timers, k)
		}
		c.mu.Unlock()
	}()
	controller.RunWorkers(ctx, c.queue, workers, c.Sync)
}

// CronJobChanged queues a changed CronJob.
func (c *Controller) CronJobChanged(old, cur manifests.Object) { c.queue.AddObject(old, cur) }

// JobChanged queues the CronJob controlling a changed Job.
func (c *Controller) JobChanged(old, cur manifests.Object) {
	c.queue.AddControllerOf("CronJob", old, cur)
}

// requeueAt syncs key again after d (at most MaxRequeue), replacing an
// earlier timer so that each CronJob holds one.
func (c *Controller) requeueAt(key string, d time.Duration) {
	d = min(max(d, 0), c.opts.MaxRequeue)
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.timers[key]; ok {
		t.Stop()
	}
	c.timers[key] = time.AfterFunc(d, func() { c.queue.Add(key) })
}

// JobName is the name of the Job cj creates for the scheduled time t:
// <cronjob>-<t in Unix minutes>.
func JobName(cj *manifests.CronJob, t time.Time) string {
	return cj.Name + "-" + strconv.FormatInt(t.Unix()/60, 10)
}

func jobFinished(j *manifests.Job) (string, bool) {
	for _, c := range j.Status.Conditions {
		if (c.Type == manifests.JobComplete || c.Type == manifests.JobFailed) && c.Status == manifests.ConditionTrue {
			return c.Type, true
		}
	}
	return "", false
}

// Sync reconciles the CronJob under key.
func (c *Controller) Sync(ctx context.Context, key string) error {
	o, ok := c.cjs.Get(key)
	if !ok {
		c.forget(key)
		return nil
	}
	cj := o.(*manifests.CronJob)
	if cj.DeletionTimestamp != nil {
		return nil
	}
	now := c.opts.Now()
	jobs := c.ownedJobs(key, cj)
	var active, finished []*manifests.Job
	st := cj.Status
	for _, j := range jobs {
		typ, done := jobFinished(j)
		if !done {
			active = append(active, j)
			continue
		}
		finished = append(finished, j)
		if typ == manifests.JobComplete && j.Status.CompletionTime != nil &&
			(st.LastSuccessfulTime == nil || j.Status.CompletionTime.After(*st.LastSuccessfulTime)) {
			t := *j.Status.CompletionTime
			st.LastSuccessfulTime = &t
		}
		if wasActive(cj, j.Name) {
			c.event(ctx, cj, manifests.EventNormal, EventSawCompletedJob, "Saw completed job: %s, condition: %s", j.Name, typ)
		}
	}
	pending := c.pendingCreates(key, jobs, now)
	var errs []error

	if err := c.cleanupHistory(ctx, key, cj, finished); err != nil {
		errs = append(errs, err)
	}

	schedule, loc, err := c.parse(ctx, cj)
	if err != nil {
		// A stored CronJob passed validation; this is a zone the process
		// cannot load (or a schedule from an older version): wait for an
		// edit.
		st.Active = activeRefs(active, pending)
		errs = append(errs, c.updateStatus(ctx, cj, st))
		return errors.Join(errs...)
	}

	if cj.Spec.Suspend == nil || !*cj.Spec.Suspend {
		created, err := c.schedule(ctx, key, cj, schedule, loc, now, &active, &st)
		if err != nil {
			errs = append(errs, err)
		}
		if created != nil {
			pending = append(pending, *created)
		}
		if next := schedule.Next(now.In(loc)); !next.IsZero() {
			c.requeueAt(key, next.Sub(now)+100*time.Millisecond)
		}
	}
	st.Active = activeRefs(active, pending)
	if err := c.updateStatus(ctx, cj, st); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func wasActive(cj *manifests.CronJob, name string) bool {
	for _, r := range cj.Status.Active {
		if r.Name == name {
			return true
		}
	}
	return false
}

func (c *Controller) parse(ctx context.Context, cj *manifests.CronJob) (*manifests.Schedule, *time.Location, error) {
	s, err := manifests.ParseSchedule(cj.Spec.Schedule)
	if err != nil {
		c.event(ctx, cj, manifests.EventWarning, EventInvalidSchedule, "invalid schedule %q: %v", cj.Spec.Schedule, err)
		return nil, nil, err
	}
	loc, err := manifests.CronJobLocation(cj, c.opts.Location)
	if err != nil {
		c.event(ctx, cj, manifests.EventWarning, EventUnknownTimeZone, "%v", err)
		return nil, nil, err
	}
	return s, loc, nil
}

// MostRecentTime returns the latest time of s in (earliest, now] and how
// many there are, counting no further than MaxMissedTimes+1.
func MostRecentTime(s *manifests.Schedule, earliest, now time.Time) (time.Time, int) {
	t := s.Next(earliest)
	if t.IsZero() || t.After(now) {
		return time.Time{}, 0
	}
	var latest time.Time
	n := 0
	for n <= MaxMissedTimes {
		latest = t
		n++
		t = s.Next(t)
		if t.IsZero() || t.After(now) {
			return latest, n
		}
	}
	// Too many to count: find the latest from a window before now, the
	// smallest that holds one.
	for _, w := range []time.Duration{time.Hour, 25 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, 5 * 367 * 24 * time.Hour} {
		start := now.Add(-w)
		if start.Before(latest) {
			start = latest
		}
		t := s.Next(start)
		if t.IsZero() || t.After(now) {
			continue
		}
		for !t.IsZero() && !t.After(now) {
			latest = t
			t = s.Next(t)
		}
		break
	}
	return latest, n
}

// schedule starts the Job of the most recent missed time, if any, within
// the rules; it returns the reference of a Job it created.
func (c *Controller) schedule(ctx context.Context, key string, cj *manifests.CronJob, s *manifests.Schedule, loc *time.Location, now time.Time, active *[]*manifests.Job, st *manifests.CronJobStatus) (*createdJob, error) {
	earliest := cj.CreationTimestamp
	if cj.Status.LastScheduleTime != nil {
		earliest = *cj.Status.LastScheduleTime
	}
	earliest = earliest.In(loc)
	nowLoc := now.In(loc)
	var deadline time.Duration
	hasDeadline := cj.Spec.StartingDeadlineSeconds != nil
	if hasDeadline {
		deadline = time.Duration(*cj.Spec.StartingDeadlineSeconds) * time.Second
	}
	windowStart := earliest
	if hasDeadline && now.Add(-deadline).After(earliest) {
		windowStart = now.Add(-deadline).In(loc)
	}
	scheduled, missed := MostRecentTime(s, windowStart, nowLoc)
	if scheduled.IsZero() {
		if hasDeadline && windowStart.After(earliest) {
			// Times before the deadline window: skipped, said once.
			if last, _ := MostRecentTime(s, earliest, windowStart); !last.IsZero() {
				c.reportMiss(ctx, key, cj, last)
			}
		}
		return nil, nil
	}
	switch {
	case missed > MaxMissedTimes:
		c.event(ctx, cj, manifests.EventWarning, EventTooManyMissedTimes,
			"too many missed start times (more than %d) since %s; starting only the latest, %s. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
			MaxMissedTimes, earliest.Format(time.RFC3339), scheduled.Format(time.RFC3339))
	case missed > 1:
		c.event(ctx, cj, manifests.EventWarning, EventMissedSchedules,
			"%d start times missed since %s; starting only the latest, %s", missed, earliest.Format(time.RFC3339), scheduled.Format(time.RFC3339))
	}

	name := JobName(cj, scheduled)
	// This time's Job exists already (a status write that failed after
	// the create): only record the time.
	for _, j := range *active {
		if j.Name == name {
			setLastSchedule(st, scheduled)
			return nil, nil
		}
	}
	if j, ok := c.jobs.Get(cj.Namespace + "/" + name); ok && isOwnedBy(j, cj) {
		setLastSchedule(st, scheduled)
		return nil, nil
	}
	others := append([]*manifests.Job(nil), *active...)
	switch cj.Spec.ConcurrencyPolicy {
	case manifests.ForbidConcurrent:
		if len(others) > 0 || c.hasPending(key, now) {
			c.event(ctx, cj, manifests.EventNormal, EventJobAlreadyActive,
				"Not starting job because prior execution is running and concurrency policy is Forbid")
			return nil, nil
		}
	case manifests.ReplaceConcurrent:
		var errs []error
		for _, j := range others {
			if err := c.deleteJob(ctx, key, cj, j); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		*active = nil
	}

	job, err := NewJob(cj, scheduled)
	if err != nil {
		return nil, err
	}
	created, err := c.st.Create(ctx, job)
	switch {
	case client.CodeOf(err) == client.CodeExists:
		// Created by an earlier attempt (or someone else: then the name
		// is taken and this time is skipped rather than retried forever).
		setLastSchedule(st, scheduled)
		return nil, nil
	case err != nil:
		c.event(ctx, cj, manifests.EventWarning, EventFailedCreate, "Error creating job: %v", err)
		return nil, fmt.Errorf("create job %s of cronjob %s: %w", name, cj.Name, err)
	}
	m := created.GetObjectMeta()
	ref := createdJob{ref: manifests.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Namespace: m.Namespace, Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion}, at: now}
	c.mu.Lock()
	if c.created[key] == nil {
		c.created[key] = map[string]createdJob{}
	}
	c.created[key][m.Name] = ref
	c.mu.Unlock()
	c.event(ctx, cj, manifests.EventNormal, EventSuccessfulCreate, "Created job %s", m.Name)
	setLastSchedule(st, scheduled)
	return &ref, nil
}

func setLastSchedule(st *manifests.CronJobStatus, t time.Time) {
	u := t.UTC()
	st.LastScheduleTime = &u
}

func (c *Controller) reportMiss(ctx context.Context, key string, cj *manifests.CronJob, t time.Time) {
	c.mu.Lock()
	seen := c.missReported[key].Equal(t)
	c.missReported[key] = t
	c.mu.Unlock()
	if !seen {
		c.event(ctx, cj, manifests.EventWarning, EventMissSchedule, "Missed scheduled time to start a job: %s", t.Format(time.RFC3339))
	}
}

func isOwnedBy(o manifests.Object, cj *manifests.CronJob) bool {
	ref := manifests.GetControllerOf(o)
	return ref != nil && ref.UID == cj.UID
}

// NewJob returns the Job cj runs for the scheduled time t: the job
// template's metadata and spec, named JobName(cj, t), annotated with the
// scheduled time and owned by cj.
func NewJob(cj *manifests.CronJob, t time.Time) (*manifests.Job, error) {
	ref, err := manifests.NewControllerRef(cj)
	if err != nil {
		return nil, err
	}
	tmpl := manifests.DeepCopy(&manifests.Job{Spec: cj.Spec.JobTemplate.Spec, ObjectMeta: cj.Spec.JobTemplate.ObjectMeta}).(*manifests.Job)
	ann := map[string]string{}
	for k, v := range tmpl.Annotations {
		ann[k] = v
	}
	ann[manifests.CronJobScheduledTimestampAnnotation] = t.Format(time.RFC3339)
	job := &manifests.Job{
		TypeMeta: manifests.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: manifests.ObjectMeta{
			Name:            JobName(cj, t),
			Namespace:       cj.Namespace,
			Labels:          tmpl.Labels,
			Annotations:     ann,
			OwnerReferences: []manifests.OwnerReference{ref},
		},
		Spec: tmpl.Spec,
	}
	manifests.Default(job)
	if err := manifests.Validate(job); err != nil {
		return nil, fmt.Errorf("job of cronjob %s: %w", cj.Name, err)
	}
	return job, nil
}

// ownedJobs returns the Jobs cj controls, leaving out those being deleted
// and those this controller deleted that the cache still shows.
func (c *Controller) ownedJobs(key string, cj *manifests.CronJob) []*manifests.Job {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*manifests.Job
	still := map[string]bool{}
	for _, o := range c.jobs.List(manifests.Selector{}) {
		j := o.(*manifests.Job)
		if j.Namespace != cj.Namespace || !isOwnedBy(j, cj) || j.DeletionTimestamp != nil {
			continue
		}
		if _, del := c.deleted[key][j.UID]; del {
			still[j.UID] = true
			continue
		}
		out = append(out, j)
	}
	for uid := range c.deleted[key] {
		if !still[uid] {
			delete(c.deleted[key], uid)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out
}

// pendingCreates returns the Jobs created that the cache does not show yet.
func (c *Controller) pendingCreates(key string, jobs []*manifests.Job, now time.Time) []createdJob {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, j := range jobs {
		seen[j.Name] = true
	}
	var out []createdJob
	for name, cr := range c.created[key] {
		if seen[name] || now.Sub(cr.at) > expectTimeout {
			delete(c.created[key], name)
			continue
		}
		if _, ok := c.jobs.Get(cr.ref.Namespace + "/" + name); ok {
			delete(c.created[key], name) // in the cache, finished or not ours
			continue
		}
		out = append(out, cr)
	}
	return out
}

func (c *Controller) hasPending(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cr := range c.created[key] {
		if now.Sub(cr.at) <= expectTimeout {
			return true
		}
	}
	return false
}

func activeRefs(active []*manifests.Job, pending []createdJob) []manifests.ObjectReference {
	var out []manifests.ObjectReference
	for _, j := range active {
		out = append(out, manifests.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Namespace: j.Namespace, Name: j.Name, UID: j.UID, ResourceVersion: j.ResourceVersion})
	}
	for _, p := range pending {
		out = append(out, p.ref)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	// The resourceVersion changes with every status write of the Job:
	// leave it out so that the CronJob is not rewritten each time.
	for i := range out {
		out[i].ResourceVersion = ""
	}
	return out
}

// cleanupHistory deletes the oldest finished Jobs beyond the successful
// and failed history limits.
func (c *Controller) cleanupHistory(ctx context.Context, key string, cj *manifests.CronJob, finished []*manifests.Job) error {
	var ok, failed []*manifests.Job
	for _, j := range finished {
		if typ, _ := jobFinished(j); typ == manifests.JobComplete {
			ok = append(ok, j)
		} else {
			failed = append(failed, j)
		}
	}
	var errs []error
	trim := func(list []*manifests.Job, limit *int32) {
		if limit == nil || len(list) <= int(*limit) {
			return
		}
		sort.Slice(list, func(i, k int) bool { return jobStart(list[i]).Before(jobStart(list[k])) })
		for _, j := range list[:len(list)-int(*limit)] {
			if err := c.deleteJob(ctx, key, cj, j); err != nil {
				errs = append(errs, err)
			}
		}
	}
	trim(ok, cj.Spec.SuccessfulJobsHistoryLimit)
	trim(failed, cj.Spec.FailedJobsHistoryLimit)
	return errors.Join(errs...)
}

// jobStart orders Jobs: by start time, else creation, then name.
func jobStart(j *manifests.Job) time.Time {
	if j.Status.StartTime != nil {
		return *j.Status.StartTime
	}
	return j.CreationTimestamp
}

// deleteJob deletes a Job at once (background propagation: the garbage
// collector removes its pods through their owner references).
func (c *Controller) deleteJob(ctx context.Context, key string, cj *manifests.CronJob, j *manifests.Job) error {
	_, err := c.st.Delete(ctx, "jobs", j.Namespace, j.Name, 0)
	if err != nil && !client.IsNotFound(err) {
		c.event(ctx, cj, manifests.EventWarning, EventFailedDelete, "Deleted job: %v", err)
		return fmt.Errorf("delete job %s of cronjob %s: %w", j.Name, cj.Name, err)
	}
	c.mu.Lock()
	if c.deleted[key] == nil {
		c.deleted[key] = map[string]time.Time{}
	}
	c.deleted[key][j.UID] = c.opts.Now()
	c.mu.Unlock()
	if err == nil {
		c.event(ctx, cj, manifests.EventNormal, EventSuccessfulDelete, "Deleted job %s", j.Name)
	}
	return nil
}

func (c *Controller) forget(key string) {
	c.mu.Lock()
	delete(c.created, key)
	delete(c.deleted, key)
	delete(c.missReported, key)
	if t, ok := c.timers[key]; ok {
		t.Stop()
		delete(c.timers, key)
	}
	c.mu.Unlock()
}

// updateStatus writes st unless the CronJob already has it.
func (c *Controller) updateStatus(ctx context.Context, cj *manifests.CronJob, st manifests.CronJobStatus) error {
	if manifests.EqualJSON(st, cj.Status) {
		return nil
	}
	cp := manifests.DeepCopy(cj).(*manifests.CronJob)
	cp.Status = st
	_, err := c.st.Update(ctx, cp)
	return controller.StatusWriteError("cronjob "+cj.Name, err)
}

func (c *Controller) event(ctx context.Context, obj manifests.Object, typ, reason, format string, args ...any) {
	if c.rec == nil {
		return
	}
	if err := c.rec.Eventf(ctx, obj, typ, reason, format, args...); err != nil {
		slog.WarnContext(ctx, "record event", "reason", reason, "err", err)
	}
}
