// Package job is the Job controller: it runs a Job's pods until
// spec.completions of them succeed (at most spec.parallelism at a time),
// retries failed pods with exponential backoff up to spec.backoffLimit
// (counting container restarts too under restartPolicy OnFailure), fails
// the Job past spec.activeDeadlineSeconds, writes Kubernetes' status and
// conditions, and deletes a finished Job after ttlSecondsAfterFinished.
package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/manifests"
)

// Name is the controller's name, the source of its events.
const Name = "job-controller"

// Condition reasons and event reasons (Kubernetes').
const (
	ReasonBackoffLimitExceeded = "BackoffLimitExceeded"
	ReasonDeadlineExceeded     = "DeadlineExceeded"
	ReasonCompletionsReached   = "CompletionsReached"
	EventSuccessfulCreate      = "SuccessfulCreate"
	EventSuccessfulDelete      = "SuccessfulDelete"
	EventFailedCreate          = "FailedCreate"
	EventCompleted             = "Completed"
)

// Messages of the Failed condition (Kubernetes').
const (
	MessageBackoffLimitExceeded = "Job has reached the specified backoff limit"
	MessageDeadlineExceeded     = "Job was active longer than specified deadline"
)

// Defaults of Options.
const (
	DefaultBackoff    = 10 * time.Second
	DefaultMaxBackoff = 6 * time.Minute
)

// expectTimeout bounds how long a create the pod cache does not show yet
// is assumed under way.
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

// PodLister is the pods' cache, which also lists the pods of one
// controller without going over every pod.
type PodLister interface {
	Lister
	ListControlledBy(uid string) []manifests.Object
}

// Recorder records events.
type Recorder interface {
	Eventf(ctx context.Context, obj manifests.Object, eventType, reason, format string, args ...any) error
}

// Options tune the controller; zero values take the defaults.
type Options struct {
	// Backoff is the delay before a pod replaces the first failed one;
	// it doubles with each failure up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	Now                 func() time.Time
}

// Controller reconciles Jobs.
type Controller struct {
	st    Store
	jobs  Lister
	pods  PodLister
	rec   Recorder
	opts  Options
	queue *controller.Queue

	mu sync.Mutex
	// Pods created (names) and deleted (uids) that the pod cache may not
	// show yet, by Job key.
	adds    map[string]map[string]time.Time
	deletes map[string]map[string]time.Time
	// When each Job's failure count was last seen to grow.
	lastFailure map[string]failureMark
}

type failureMark struct {
	uid    string
	failed int
	at     time.Time
}

// New returns a controller over the given caches. Register JobChanged and
// PodChanged as the caches' handlers.
func New(st Store, jobs Lister, pods PodLister, rec Recorder, opts Options) *Controller {
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Controller{
		st: st, jobs: jobs, pods: pods, rec: rec, opts: opts,
		queue:       controller.NewQueue(50*time.Millisecond, 30*time.Second),
		adds:        map[string]map[string]time.Time{},
		deletes:     map[string]map[string]time.Time{},
		lastFailure: map[string]failureMark{},
	}
}

// Run syncs with workers workers until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) {
	controller.RunWorkers(ctx, c.queue, workers, c.Sync)
}

// JobChanged queues a changed Job.
func (c *Controller) JobChanged(old, cur manifests.Object) { c.queue.AddObject(old, cur) }

// PodChanged queues the Job controlling a changed pod.
func (c *Controller) PodChanged(old, cur manifests.Object) {
	c.queue.AddControllerOf("Job", old, cur)
}

func finishedCondition(j *manifests.Job) *manifests.JobCondition {
	for i := range j.Status.Conditions {
		c := &j.Status.Conditions[i]
		if (c.Type == manifests.JobComplete || c.Type == manifests.JobFailed) && c.Status == manifests.ConditionTrue {
			return c
		}
	}
	return nil
}

// Sync reconciles the Job under key.
func (c *Controller) Sync(ctx context.Context, key string) error {
	o, ok := c.jobs.Get(key)
	if !ok {
		c.forget(key)
		return nil
	}
	job := o.(*manifests.Job)
	if job.DeletionTimestamp != nil {
		return nil
	}
	now := c.opts.Now()
	pods := c.jobPods(key, job)
	var active, succeeded, failed []*manifests.Pod
	for _, p := range pods {
		switch p.Status.Phase {
		case manifests.PodSucceeded:
			succeeded = append(succeeded, p)
		case manifests.PodFailed:
			failed = append(failed, p)
		default:
			active = append(active, p)
		}
	}
	pending := c.pendingAdds(key, pods, now)

	st := job.Status
	st.Conditions = append([]manifests.JobCondition(nil), job.Status.Conditions...)
	// Counts only grow: pods deleted after they ended still count.
	st.Succeeded = max(st.Succeeded, int32(len(succeeded)))
	st.Failed = max(st.Failed, int32(len(failed)))
	var errs []error

	if fc := finishedCondition(job); fc != nil {
		// Finished: no pod may run any more; then the TTL.
		for _, p := range active {
			if err := c.deletePod(ctx, key, job, p); err != nil {
				errs = append(errs, err)
			}
		}
		st.Active = 0
		if err := c.updateStatus(ctx, job, st); err != nil {
			errs = append(errs, err)
		}
		if err := c.expire(ctx, key, job, fc, now); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}

	if st.StartTime == nil {
		t := now.UTC().Truncate(time.Second)
		st.StartTime = &t
	}
	restarts := int32(0)
	if job.Spec.Template.Spec.RestartPolicy == manifests.RestartOnFailure {
		for _, p := range active {
			for _, cs := range p.Status.ContainerStatuses {
				restarts += cs.RestartCount
			}
			for _, cs := range p.Status.InitContainerStatuses {
				restarts += cs.RestartCount
			}
		}
	}
	backoffLimit := int32(6)
	if job.Spec.BackoffLimit != nil {
		backoffLimit = *job.Spec.BackoffLimit
	}
	completions := job.Spec.Completions
	parallelism := int32(1)
	if job.Spec.Parallelism != nil {
		parallelism = *job.Spec.Parallelism
	}
	suspended := job.Spec.Suspend != nil && *job.Spec.Suspend

	var failReason, failMessage string
	switch {
	case st.Failed+restarts > backoffLimit:
		failReason, failMessage = ReasonBackoffLimitExceeded, MessageBackoffLimitExceeded
	case job.Spec.ActiveDeadlineSeconds != nil && !suspended &&
		!now.Before(st.StartTime.Add(time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second)):
		failReason, failMessage = ReasonDeadlineExceeded, MessageDeadlineExceeded
	}
	complete := false
	if completions != nil {
		complete = st.Succeeded >= *completions
	} else {
		// A work queue: done once one pod succeeded and none is left.
		complete = st.Succeeded > 0 && len(active) == 0 && len(pending) == 0
	}

	switch {
	case failReason != "":
		for _, p := range active {
			if err := c.deletePod(ctx, key, job, p); err != nil {
				errs = append(errs, err)
			}
		}
		st.Active = 0
		setCondition(&st, manifests.JobCondition{Type: manifests.JobFailed, Status: manifests.ConditionTrue, Reason: failReason, Message: failMessage}, now)
		c.event(ctx, job, manifests.EventWarning, failReason, "%s", failMessage)
	case complete:
		for _, p := range active {
			if err := c.deletePod(ctx, key, job, p); err != nil {
				errs = append(errs, err)
			}
		}
		st.Active = 0
		t := now.UTC().Truncate(time.Second)
		st.CompletionTime = &t
		setCondition(&st, manifests.JobCondition{Type: manifests.JobComplete, Status: manifests.ConditionTrue, Reason: ReasonCompletionsReached, Message: "Reached expected number of succeeded pods"}, now)
		c.event(ctx, job, manifests.EventNormal, EventCompleted, "Job completed")
	default:
		want := parallelism
		if completions != nil {
			want = min(parallelism, *completions-st.Succeeded)
		} else if st.Succeeded > 0 {
			want = 0 // a work queue with a success: let the others finish
		}
		if suspended {
			want = 0
		}
		have := int32(len(active) + len(pending))
		switch {
		case have < want:
			if wait := c.backoff(key, job, int(st.Failed), now); wait > 0 {
				c.queue.AddAfter(key, wait)
			} else {
				for range want - have {
					if err := c.createPod(ctx, key, job); err != nil {
						errs = append(errs, err)
						break
					}
				}
			}
		case have > want && (completions != nil || suspended):
			// Delete the newest extra pods (not yet running first).
			sort.Slice(active, func(i, j int) bool { return deleteFirst(active[i], active[j]) })
			for _, p := range active[:min(int(have-want), len(active))] {
				if err := c.deletePod(ctx, key, job, p); err != nil {
					errs = append(errs, err)
				}
			}
		}
		st.Active = int32(len(active)) + int32(len(pending))
		if job.Spec.ActiveDeadlineSeconds != nil && !suspended {
			c.queue.AddAfter(key, st.StartTime.Add(time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second).Sub(now)+10*time.Millisecond)
		}
	}
	ready := int32(0)
	for _, p := range active {
		if manifests.IsPodReady(p) {
			ready++
		}
	}
	if st.Active == 0 {
		ready = 0
	}
	st.Ready = &ready
	if err := c.updateStatus(ctx, job, st); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteFirst orders pods to delete: not scheduled, then not running,
// then not ready, then the newest.
func deleteFirst(a, b *manifests.Pod) bool {
	if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if (a.Status.Phase == manifests.PodRunning) != (b.Status.Phase == manifests.PodRunning) {
		return a.Status.Phase != manifests.PodRunning
	}
	if manifests.IsPodReady(a) != manifests.IsPodReady(b) {
		return !manifests.IsPodReady(a)
	}
	return a.CreationTimestamp.After(b.CreationTimestamp)
}

// backoff returns how long to wait before replacing failed pods: Backoff
// doubled per failure after the first, capped, from when the failure count
// was last seen to grow.
func (c *Controller) backoff(key string, job *manifests.Job, failed int, now time.Time) time.Duration {
	if failed == 0 {
		return 0
	}
	c.mu.Lock()
	m, ok := c.lastFailure[key]
	if !ok || m.uid != job.UID || m.failed != failed {
		m = failureMark{uid: job.UID, failed: failed, at: now}
		c.lastFailure[key] = m
	}
	c.mu.Unlock()
	d := c.opts.Backoff
	for i := 1; i < failed && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxBackoff)
	return m.at.Add(d).Sub(now)
}

// expire deletes a finished Job (and its pods) ttlSecondsAfterFinished
// after it finished, or queues it for then.
func (c *Controller) expire(ctx context.Context, key string, job *manifests.Job, fc *manifests.JobCondition, now time.Time) error {
	if job.Spec.TTLSecondsAfterFinished == nil {
		return nil
	}
	finished := fc.LastTransitionTime
	if job.Status.CompletionTime != nil && fc.Type == manifests.JobComplete {
		finished = *job.Status.CompletionTime
	}
	at := finished.Add(time.Duration(*job.Spec.TTLSecondsAfterFinished) * time.Second)
	if now.Before(at) {
		c.queue.AddAfter(key, at.Sub(now)+10*time.Millisecond)
		return nil
	}
	rev, err := parseRev(job.ResourceVersion)
	if err != nil {
		return err
	}
	if _, err := c.st.Delete(ctx, "jobs", job.Namespace, job.Name, rev); err != nil && !client.IsNotFound(err) {
		return fmt.Errorf("delete finished job %s: %w", job.Name, err)
	}
	// The garbage collector removes the pods through their owner
	// references; delete them here too so that a cluster without it does
	// not keep them.
	var errs []error
	for _, p := range c.jobPods(key, job) {
		if _, err := c.st.Delete(ctx, "pods", p.Namespace, p.Name, 0); err != nil && !client.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete pod %s of finished job %s: %w", p.Name, job.Name, err))
		}
	}
	return errors.Join(errs...)
}

func parseRev(rv string) (uint64, error) {
	var n uint64
	if rv == "" {
		return 0, nil
	}
	if _, err := fmt.Sscan(rv, &n); err != nil {
		return 0, fmt.Errorf("resourceVersion %q: %w", rv, err)
	}
	return n, nil
}

// jobPods returns the pods job controls, leaving out pods being deleted
// and those this controller deleted that the cache still shows.
func (c *Controller) jobPods(key string, job *manifests.Job) []*manifests.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*manifests.Pod
	still := map[string]bool{}
	for _, o := range c.pods.ListControlledBy(job.UID) {
		p := o.(*manifests.Pod)
		if p.Namespace != job.Namespace {
			continue
		}
		ref := manifests.GetControllerOf(p)
		if ref == nil || ref.UID != job.UID || p.DeletionTimestamp != nil {
			continue
		}
		if _, del := c.deletes[key][p.UID]; del {
			still[p.UID] = true
			continue
		}
		out = append(out, p)
	}
	for uid := range c.deletes[key] {
		if !still[uid] {
			delete(c.deletes[key], uid)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// pendingAdds returns the pods created that the cache does not show yet.
func (c *Controller) pendingAdds(key string, pods []*manifests.Pod, now time.Time) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range pods {
		seen[p.Name] = true
	}
	var out []string
	for name, at := range c.adds[key] {
		if seen[name] || now.Sub(at) > expectTimeout {
			delete(c.adds[key], name)
			continue
		}
		if _, ok := c.pods.Get(pods0ns(key) + "/" + name); ok {
			// In the cache but not ours any more (or deleted): settled.
			delete(c.adds[key], name)
			continue
		}
		out = append(out, name)
	}
	return out
}

func pods0ns(key string) string {
	ns, _ := controller.SplitKey(key)
	return ns
}

func (c *Controller) forget(key string) {
	c.mu.Lock()
	delete(c.adds, key)
	delete(c.deletes, key)
	delete(c.lastFailure, key)
	c.mu.Unlock()
}

// NewPod returns a pod of job: named <job>-<random>, labelled job-name and
// controller-uid (and their batch.kubernetes.io/ spellings), owned by job.
func NewPod(job *manifests.Job) (*manifests.Pod, error) {
	ref, err := manifests.NewControllerRef(job)
	if err != nil {
		return nil, err
	}
	t := job.Spec.Template
	labels := map[string]string{}
	for k, v := range t.Labels {
		labels[k] = v
	}
	labels[manifests.LegacyJobNameLabel] = job.Name
	labels[manifests.JobNameLabel] = job.Name
	labels[manifests.LegacyControllerUIDLabel] = job.UID
	labels[manifests.ControllerUIDLabel] = job.UID
	var ann map[string]string
	if len(t.Annotations) > 0 {
		ann = map[string]string{}
		for k, v := range t.Annotations {
			ann[k] = v
		}
	}
	pod := &manifests.Pod{
		TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{
			GenerateName:    job.Name + "-",
			Namespace:       job.Namespace,
			Labels:          labels,
			Annotations:     ann,
			OwnerReferences: []manifests.OwnerReference{ref},
		},
		Spec: manifests.DeepCopy(&manifests.Pod{Spec: t.Spec}).(*manifests.Pod).Spec,
	}
	rp := pod.Spec.RestartPolicy
	manifests.Default(pod)
	if rp != "" {
		pod.Spec.RestartPolicy = rp
	}
	return pod, nil
}

func (c *Controller) createPod(ctx context.Context, key string, job *manifests.Job) error {
	pod, err := NewPod(job)
	if err != nil {
		return err
	}
	created, err := c.st.Create(ctx, pod)
	if err != nil {
		c.event(ctx, job, manifests.EventWarning, EventFailedCreate, "Error creating: %v", err)
		return fmt.Errorf("create pod of job %s: %w", job.Name, err)
	}
	name := created.GetObjectMeta().Name
	c.mu.Lock()
	if c.adds[key] == nil {
		c.adds[key] = map[string]time.Time{}
	}
	c.adds[key][name] = c.opts.Now()
	c.mu.Unlock()
	c.event(ctx, job, manifests.EventNormal, EventSuccessfulCreate, "Created pod: %s", name)
	return nil
}

func (c *Controller) deletePod(ctx context.Context, key string, job *manifests.Job, pod *manifests.Pod) error {
	_, err := c.st.Delete(ctx, "pods", pod.Namespace, pod.Name, 0)
	if err != nil && !client.IsNotFound(err) {
		return fmt.Errorf("delete pod %s of job %s: %w", pod.Name, job.Name, err)
	}
	c.mu.Lock()
	if c.deletes[key] == nil {
		c.deletes[key] = map[string]time.Time{}
	}
	c.deletes[key][pod.UID] = c.opts.Now()
	c.mu.Unlock()
	if err == nil {
		c.event(ctx, job, manifests.EventNormal, EventSuccessfulDelete, "Deleted pod: %s", pod.Name)
	}
	return nil
}

// setCondition sets cond in st, keeping lastTransitionTime when the status
// does not change.
func setCondition(st *manifests.JobStatus, cond manifests.JobCondition, now time.Time) {
	t := now.UTC().Truncate(time.Second)
	cond.LastProbeTime, cond.LastTransitionTime = t, t
	for i := range st.Conditions {
		cur := st.Conditions[i]
		if cur.Type == cond.Type {
			if cur.Status == cond.Status && cur.Reason == cond.Reason && cur.Message == cond.Message {
				return
			}
			if cur.Status == cond.Status {
				cond.LastTransitionTime = cur.LastTransitionTime
			}
			st.Conditions[i] = cond
			return
		}
	}
	st.Conditions = append(st.Conditions, cond)
}

// updateStatus writes st unless the Job already has it.
func (c *Controller) updateStatus(ctx context.Context, job *manifests.Job, st manifests.JobStatus) error {
	if manifests.EqualJSON(st, job.Status) {
		return nil
	}
	cp := manifests.DeepCopy(job).(*manifests.Job)
	cp.Status = st
	_, err := c.st.Update(ctx, cp)
	return controller.StatusWriteError("job "+job.Name, err)
}

func (c *Controller) event(ctx context.Context, obj manifests.Object, typ, reason, format string, args ...any) {
	if c.rec == nil {
		return
	}
	if err := c.rec.Eventf(ctx, obj, typ, reason, format, args...); err != nil {
		slog.WarnContext(ctx, "record event", "reason", reason, "err", err)
	}
}
