package manifests

import (
	"fmt"
	"strings"
	"time"
)

// batch/v1 CronJob: creates a Job from spec.jobTemplate at each time of a
// cron schedule (see cronjob_schedule.go for the schedule syntax).

// CronJob concurrency policies.
const (
	AllowConcurrent   = "Allow"
	ForbidConcurrent  = "Forbid"
	ReplaceConcurrent = "Replace"
)

// CronJobScheduledTimestampAnnotation on a Job records the scheduled time
// it was created for (RFC 3339, in the CronJob's time zone).
const CronJobScheduledTimestampAnnotation = "batch.kubernetes.io/cronjob-scheduled-timestamp"

// MaxCronJobNameLength is the longest CronJob name: its Jobs are named
// <name>-<11 digits> and a Job name must fit in a label value (63).
const MaxCronJobNameLength = 52

// CronJob runs a Job on a schedule.
type CronJob struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       CronJobSpec   `json:"spec"`
	Status     CronJobStatus `json:"status,omitzero"`
}

// CronJobSpec is the desired state of a CronJob.
type CronJobSpec struct {
	Schedule                   string          `json:"schedule"`
	TimeZone                   *string         `json:"timeZone,omitempty"`
	StartingDeadlineSeconds    *int64          `json:"startingDeadlineSeconds,omitempty"`
	ConcurrencyPolicy          string          `json:"concurrencyPolicy,omitempty"`
	Suspend                    *bool           `json:"suspend,omitempty"`
	JobTemplate                JobTemplateSpec `json:"jobTemplate"`
	SuccessfulJobsHistoryLimit *int32          `json:"successfulJobsHistoryLimit,omitempty"`
	FailedJobsHistoryLimit     *int32          `json:"failedJobsHistoryLimit,omitempty"`
}

// JobTemplateSpec describes the Jobs a CronJob creates.
type JobTemplateSpec struct {
	ObjectMeta `json:"metadata,omitzero"`
	Spec       JobSpec `json:"spec"`
}

// CronJobStatus is the observed state of a CronJob.
type CronJobStatus struct {
	Active             []ObjectReference `json:"active,omitempty"`
	LastScheduleTime   *time.Time        `json:"lastScheduleTime,omitempty"`
	LastSuccessfulTime *time.Time        `json:"lastSuccessfulTime,omitempty"`
}

// CronJobLocation returns the time zone of cj's schedule: spec.timeZone,
// or def when it is not set.
func CronJobLocation(cj *CronJob, def *time.Location) (*time.Location, error) {
	if cj.Spec.TimeZone == nil {
		return def, nil
	}
	loc, err := time.LoadLocation(*cj.Spec.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("spec.timeZone %q: unknown time zone", *cj.Spec.TimeZone)
	}
	return loc, nil
}

func defaultCronJob(cj *CronJob) {
	s := &cj.Spec
	if s.ConcurrencyPolicy == "" {
		s.ConcurrencyPolicy = AllowConcurrent
	}
	if s.Suspend == nil {
		f := false
		s.Suspend = &f
	}
	if s.SuccessfulJobsHistoryLimit == nil {
		s.SuccessfulJobsHistoryLimit = int32Ptr(3)
	}
	if s.FailedJobsHistoryLimit == nil {
		s.FailedJobsHistoryLimit = int32Ptr(1)
	}
	js := &s.JobTemplate.Spec
	if js.Completions == nil && js.Parallelism == nil {
		js.Completions = int32Ptr(1)
		js.Parallelism = int32Ptr(1)
	}
	if js.Parallelism == nil {
		js.Parallelism = int32Ptr(1)
	}
	if js.BackoffLimit == nil {
		js.BackoffLimit = int32Ptr(6)
	}
	if js.CompletionMode == nil {
		m := NonIndexedCompletion
		js.CompletionMode = &m
	}
	if js.Suspend == nil {
		f := false
		js.Suspend = &f
	}
	rp := js.Template.Spec.RestartPolicy
	defaultPodSpec(&js.Template.Spec)
	js.Template.Spec.RestartPolicy = rp
}

func validateCronJob(l *errList, cj *CronJob) {
	if len(cj.Name) > MaxCronJobNameLength {
		l.invalid("metadata.name", cj.Name, fmt.Sprintf("must be no more than %d characters", MaxCronJobNameLength))
	}
	s := &cj.Spec
	switch sched := strings.TrimSpace(s.Schedule); {
	case sched == "":
		l.required("spec.schedule")
	case strings.Contains(sched, "TZ"):
		l.invalid("spec.schedule", s.Schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
	default:
		if _, err := ParseSchedule(s.Schedule); err != nil {
			l.invalid("spec.schedule", s.Schedule, err.Error())
		}
	}
	if tz := s.TimeZone; tz != nil {
		switch {
		case *tz == "":
			l.invalid("spec.timeZone", *tz, "unknown time zone (an IANA name such as Europe/Paris, or UTC)")
		case strings.EqualFold(*tz, "local"):
			// Go's time.LoadLocation reads "Local" as the process's zone;
			// Kubernetes refuses it.
			l.invalid("spec.timeZone", *tz, "unknown time zone (an IANA name such as Europe/Paris, or UTC)")
		default:
			if _, err := time.LoadLocation(*tz); err != nil {
				l.invalid("spec.timeZone", *tz, "unknown time zone (an IANA name such as Europe/Paris, or UTC)")
			}
		}
	}
	if d := s.StartingDeadlineSeconds; d != nil && *d < 0 {
		l.invalid("spec.startingDeadlineSeconds", *d, "must be greater than or equal to 0")
	}
	switch s.ConcurrencyPolicy {
	case AllowConcurrent, ForbidConcurrent, ReplaceConcurrent:
	case "":
		l.required("spec.concurrencyPolicy")
	default:
		l.unsupported("spec.concurrencyPolicy", s.ConcurrencyPolicy, AllowConcurrent, ForbidConcurrent, ReplaceConcurrent)
	}
	validateNonNegative32(l, "spec.successfulJobsHistoryLimit", s.SuccessfulJobsHistoryLimit)
	validateNonNegative32(l, "spec.failedJobsHistoryLimit", s.FailedJobsHistoryLimit)

	t := &s.JobTemplate
	validateLabels(l, t.Labels, "spec.jobTemplate.metadata.labels")
	js := &t.Spec
	p := "spec.jobTemplate.spec"
	validateNonNegative32(l, p+".parallelism", js.Parallelism)
	validateNonNegative32(l, p+".completions", js.Completions)
	validateNonNegative32(l, p+".backoffLimit", js.BackoffLimit)
	validateNonNegative32(l, p+".ttlSecondsAfterFinished", js.TTLSecondsAfterFinished)
	if d := js.ActiveDeadlineSeconds; d != nil && *d <= 0 {
		l.invalid(p+".activeDeadlineSeconds", *d, "must be greater than 0")
	}
	if m := js.CompletionMode; m != nil && !oneOf(*m, NonIndexedCompletion, IndexedCompletion) {
		l.unsupported(p+".completionMode", *m, NonIndexedCompletion, IndexedCompletion)
	}
	if m := js.CompletionMode; m != nil && *m == IndexedCompletion && js.Completions == nil {
		l.add(p+".completions", "required when completion mode is Indexed")
	}
	if js.ManualSelector != nil && *js.ManualSelector {
		l.add(p+".manualSelector", "forbidden: a CronJob's Jobs get generated selectors")
	}
	if js.Selector != nil {
		l.add(p+".selector", "forbidden: a CronJob's Jobs get generated selectors")
	}
	validateSelectorAndTemplate(l, nil, &js.Template, p, true, RestartOnFailure, RestartNever)
}
