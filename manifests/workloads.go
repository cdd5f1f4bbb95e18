package manifests

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Workload kinds: apps/v1 Deployment, ReplicaSet, DaemonSet and batch/v1
// Job, in Kubernetes' shapes.

// Well-known labels and annotations of the workload controllers.
const (
	// DefaultDeploymentUniqueLabelKey is the label a Deployment adds to the
	// pods and the selector of each of its ReplicaSets.
	DefaultDeploymentUniqueLabelKey = "pod-template-hash"
	// RevisionAnnotation is the revision of a Deployment and its ReplicaSets.
	RevisionAnnotation = "deployment.kubernetes.io/revision"
	// RevisionHistoryAnnotation lists the earlier revisions a ReplicaSet had.
	RevisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	// DesiredReplicasAnnotation and MaxReplicasAnnotation record a Deployment's
	// replicas and replicas+maxSurge on its ReplicaSets.
	DesiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	MaxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	// ControllerUIDLabel and JobNameLabel are the labels of a Job's generated selector.
	ControllerUIDLabel = "batch.kubernetes.io/controller-uid"
	JobNameLabel       = "batch.kubernetes.io/job-name"
	// LegacyControllerUIDLabel and LegacyJobNameLabel are their older spellings,
	// which Kubernetes still sets on pod templates.
	LegacyControllerUIDLabel = "controller-uid"
	LegacyJobNameLabel       = "job-name"
	// FinalizerForeground and FinalizerOrphan are the finalizers of
	// foreground and orphan cascading deletion.
	FinalizerForeground = "foregroundDeletion"
	FinalizerOrphan     = "orphan"
)

// Deployment strategy and DaemonSet update strategy types.
const (
	RecreateDeploymentStrategyType      = "Recreate"
	RollingUpdateDeploymentStrategyType = "RollingUpdate"
	RollingUpdateDaemonSetStrategyType  = "RollingUpdate"
	OnDeleteDaemonSetStrategyType       = "OnDelete"
)

// Deployment and Job condition types and reasons.
const (
	DeploymentAvailable      = "Available"
	DeploymentProgressing    = "Progressing"
	DeploymentReplicaFailure = "ReplicaFailure"
	ReplicaSetReplicaFailure = "ReplicaFailure"
	JobComplete              = "Complete"
	JobFailed                = "Failed"
	JobSuspended             = "Suspended"
	JobFailureTarget         = "FailureTarget"
	JobSuccessCriteriaMet    = "SuccessCriteriaMet"
)

// Label selector operators.
const (
	LabelSelectorOpIn           = "In"
	LabelSelectorOpNotIn        = "NotIn"
	LabelSelectorOpExists       = "Exists"
	LabelSelectorOpDoesNotExist = "DoesNotExist"
)

// LabelSelector selects objects by their labels; both parts must match.
// An empty selector matches everything, a nil one nothing.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one expression of a LabelSelector.
type LabelSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// PodTemplateSpec describes the pods a workload creates.
type PodTemplateSpec struct {
	ObjectMeta `json:"metadata,omitzero"`
	Spec       PodSpec `json:"spec"`
}

// ---- Deployment ----

// Deployment manages ReplicaSets to roll out a pod template.
type Deployment struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       DeploymentSpec   `json:"spec"`
	Status     DeploymentStatus `json:"status,omitzero"`
}

// DeploymentSpec is the desired state of a Deployment.
type DeploymentSpec struct {
	Replicas                *int32             `json:"replicas,omitempty"`
	Selector                *LabelSelector     `json:"selector"`
	Template                PodTemplateSpec    `json:"template"`
	Strategy                DeploymentStrategy `json:"strategy,omitzero"`
	MinReadySeconds         int32              `json:"minReadySeconds,omitempty"`
	RevisionHistoryLimit    *int32             `json:"revisionHistoryLimit,omitempty"`
	Paused                  bool               `json:"paused,omitempty"`
	ProgressDeadlineSeconds *int32             `json:"progressDeadlineSeconds,omitempty"`
}

// DeploymentStrategy says how old pods are replaced by new ones.
type DeploymentStrategy struct {
	Type          string                   `json:"type,omitempty"`
	RollingUpdate *RollingUpdateDeployment `json:"rollingUpdate,omitempty"`
}

// RollingUpdateDeployment bounds a rolling update.
type RollingUpdateDeployment struct {
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
	MaxSurge       *IntOrString `json:"maxSurge,omitempty"`
}

// DeploymentStatus is the observed state of a Deployment.
type DeploymentStatus struct {
	ObservedGeneration  int64                 `json:"observedGeneration,omitempty"`
	Replicas            int32                 `json:"replicas,omitempty"`
	UpdatedReplicas     int32                 `json:"updatedReplicas,omitempty"`
	ReadyReplicas       int32                 `json:"readyReplicas,omitempty"`
	AvailableReplicas   int32                 `json:"availableReplicas,omitempty"`
	UnavailableReplicas int32                 `json:"unavailableReplicas,omitempty"`
	Conditions          []DeploymentCondition `json:"conditions,omitempty"`
	CollisionCount      *int32                `json:"collisionCount,omitempty"`
}

// DeploymentCondition is one condition of a Deployment.
type DeploymentCondition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	LastUpdateTime     time.Time `json:"lastUpdateTime,omitzero"`
	LastTransitionTime time.Time `json:"lastTransitionTime,omitzero"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
}

// ---- ReplicaSet ----

// ReplicaSet keeps a number of identical pods running.
type ReplicaSet struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       ReplicaSetSpec   `json:"spec"`
	Status     ReplicaSetStatus `json:"status,omitzero"`
}

// ReplicaSetSpec is the desired state of a ReplicaSet.
type ReplicaSetSpec struct {
	Replicas        *int32          `json:"replicas,omitempty"`
	MinReadySeconds int32           `json:"minReadySeconds,omitempty"`
	Selector        *LabelSelector  `json:"selector"`
	Template        PodTemplateSpec `json:"template"`
}

// ReplicaSetStatus is the observed state of a ReplicaSet.
type ReplicaSetStatus struct {
	Replicas             int32                 `json:"replicas"`
	FullyLabeledReplicas int32                 `json:"fullyLabeledReplicas,omitempty"`
	ReadyReplicas        int32                 `json:"readyReplicas,omitempty"`
	AvailableReplicas    int32                 `json:"availableReplicas,omitempty"`
	ObservedGeneration   int64                 `json:"observedGeneration,omitempty"`
	Conditions           []ReplicaSetCondition `json:"conditions,omitempty"`
}

// ReplicaSetCondition is one condition of a ReplicaSet.
type ReplicaSetCondition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	LastTransitionTime time.Time `json:"lastTransitionTime,omitzero"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
}

// ---- DaemonSet ----

// DaemonSet runs one pod on every (selected) node.
type DaemonSet struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       DaemonSetSpec   `json:"spec"`
	Status     DaemonSetStatus `json:"status,omitzero"`
}

// DaemonSetSpec is the desired state of a DaemonSet.
type DaemonSetSpec struct {
	Selector             *LabelSelector          `json:"selector"`
	Template             PodTemplateSpec         `json:"template"`
	UpdateStrategy       DaemonSetUpdateStrategy `json:"updateStrategy,omitzero"`
	MinReadySeconds      int32                   `json:"minReadySeconds,omitempty"`
	RevisionHistoryLimit *int32                  `json:"revisionHistoryLimit,omitempty"`
}

// DaemonSetUpdateStrategy says how a DaemonSet replaces its pods.
type DaemonSetUpdateStrategy struct {
	Type          string                  `json:"type,omitempty"`
	RollingUpdate *RollingUpdateDaemonSet `json:"rollingUpdate,omitempty"`
}

// RollingUpdateDaemonSet bounds a DaemonSet rolling update.
type RollingUpdateDaemonSet struct {
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
	MaxSurge       *IntOrString `json:"maxSurge,omitempty"`
}

// DaemonSetStatus is the observed state of a DaemonSet.
type DaemonSetStatus struct {
	CurrentNumberScheduled int32                `json:"currentNumberScheduled"`
	NumberMisscheduled     int32                `json:"numberMisscheduled"`
	DesiredNumberScheduled int32                `json:"desiredNumberScheduled"`
	NumberReady            int32                `json:"numberReady"`
	ObservedGeneration     int64                `json:"observedGeneration,omitempty"`
	UpdatedNumberScheduled int32                `json:"updatedNumberScheduled,omitempty"`
	NumberAvailable        int32                `json:"numberAvailable,omitempty"`
	NumberUnavailable      int32                `json:"numberUnavailable,omitempty"`
	CollisionCount         *int32               `json:"collisionCount,omitempty"`
	Conditions             []DaemonSetCondition `json:"conditions,omitempty"`
}

// DaemonSetCondition is one condition of a DaemonSet.
type DaemonSetCondition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	LastTransitionTime time.Time `json:"lastTransitionTime,omitzero"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
}

// ---- Job ----

// Job runs pods until a number of them succeed.
type Job struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       JobSpec   `json:"spec"`
	Status     JobStatus `json:"status,omitzero"`
}

// JobSpec is the desired state of a Job.
type JobSpec struct {
	Parallelism             *int32          `json:"parallelism,omitempty"`
	Completions             *int32          `json:"completions,omitempty"`
	ActiveDeadlineSeconds   *int64          `json:"activeDeadlineSeconds,omitempty"`
	BackoffLimit            *int32          `json:"backoffLimit,omitempty"`
	Selector                *LabelSelector  `json:"selector,omitempty"`
	ManualSelector          *bool           `json:"manualSelector,omitempty"`
	Template                PodTemplateSpec `json:"template"`
	TTLSecondsAfterFinished *int32          `json:"ttlSecondsAfterFinished,omitempty"`
	CompletionMode          *string         `json:"completionMode,omitempty"`
	Suspend                 *bool           `json:"suspend,omitempty"`
}

// Job completion modes.
const (
	NonIndexedCompletion = "NonIndexed"
	IndexedCompletion    = "Indexed"
)

// JobStatus is the observed state of a Job.
type JobStatus struct {
	Conditions       []JobCondition `json:"conditions,omitempty"`
	StartTime        *time.Time     `json:"startTime,omitempty"`
	CompletionTime   *time.Time     `json:"completionTime,omitempty"`
	Active           int32          `json:"active,omitempty"`
	Succeeded        int32          `json:"succeeded,omitempty"`
	Failed           int32          `json:"failed,omitempty"`
	Ready            *int32         `json:"ready,omitempty"`
	CompletedIndexes string         `json:"completedIndexes,omitempty"`
}

// JobCondition is one condition of a Job.
type JobCondition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	LastProbeTime      time.Time `json:"lastProbeTime,omitzero"`
	LastTransitionTime time.Time `json:"lastTransitionTime,omitzero"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
}

// ---- helpers ----

// LabelSelectorAsSelector converts a LabelSelector to a Selector. A nil
// selector matches nothing, an empty one everything (as in Kubernetes).
func LabelSelectorAsSelector(ls *LabelSelector) (Selector, error) {
	if ls == nil {
		// An "in" requirement with no values can never be met.
		return Selector{reqs: []Requirement{{Key: "", Operator: "in"}}}, nil
	}
	var s Selector
	for _, k := range sortedKeys(ls.MatchLabels) {
		v := ls.MatchLabels[k]
		if err := ValidateLabelKey(k); err != nil {
			return Selector{}, fmt.Errorf("matchLabels key %q: %w", k, err)
		}
		if err := ValidateLabelValue(v); err != nil {
			return Selector{}, fmt.Errorf("matchLabels[%s] value %q: %w", k, v, err)
		}
		s.reqs = append(s.reqs, Requirement{Key: k, Operator: "=", Values: []string{v}})
	}
	for _, e := range ls.MatchExpressions {
		if err := ValidateLabelKey(e.Key); err != nil {
			return Selector{}, fmt.Errorf("matchExpressions key %q: %w", e.Key, err)
		}
		r := Requirement{Key: e.Key, Values: append([]string(nil), e.Values...)}
		switch e.Operator {
		case LabelSelectorOpIn, LabelSelectorOpNotIn:
			if len(e.Values) == 0 {
				return Selector{}, fmt.Errorf("matchExpressions key %q: values must be non-empty for operator %s", e.Key, e.Operator)
			}
			r.Operator = strings.ToLower(e.Operator)
		case LabelSelectorOpExists, LabelSelectorOpDoesNotExist:
			if len(e.Values) != 0 {
				return Selector{}, fmt.Errorf("matchExpressions key %q: values must be empty for operator %s", e.Key, e.Operator)
			}
			r.Operator = "exists"
			if e.Operator == LabelSelectorOpDoesNotExist {
				r.Operator = "!"
			}
		default:
			return Selector{}, fmt.Errorf("matchExpressions key %q: %q is not a valid label selector operator", e.Key, e.Operator)
		}
		for _, v := range e.Values {
			if err := ValidateLabelValue(v); err != nil {
				return Selector{}, fmt.Errorf("matchExpressions key %q value %q: %w", e.Key, v, err)
			}
		}
		s.reqs = append(s.reqs, r)
	}
	return s, nil
}

// GetControllerOf returns a copy of obj's controller ownerReference, or nil.
func GetControllerOf(obj Object) *OwnerReference {
	if obj == nil {
		return nil
	}
	for _, r := range obj.GetObjectMeta().OwnerReferences {
		if r.Controller != nil && *r.Controller {
			ref := r
			return &ref
		}
	}
	return nil
}

// NewControllerRef returns a controller ownerReference (controller and
// blockOwnerDeletion set) pointing at owner.
func NewControllerRef(owner Object) (OwnerReference, error) {
	k, err := KindOf(owner)
	if err != nil {
		return OwnerReference{}, err
	}
	t := true
	b := true
	m := owner.GetObjectMeta()
	return OwnerReference{APIVersion: k.APIVersion, Kind: k.Kind, Name: m.Name, UID: m.UID, Controller: &t, BlockOwnerDeletion: &b}, nil
}

// ScaledValueFromIntOrPercent resolves an int or a percentage ("25%") of
// total, rounding a percentage up or down (Kubernetes' intstr helper).
func ScaledValueFromIntOrPercent(v *IntOrString, total int, roundUp bool) (int, error) {
	if v == nil {
		return 0, nil
	}
	if !v.IsString {
		return int(v.IntVal), nil
	}
	pct, ok := strings.CutSuffix(v.StrVal, "%")
	if !ok {
		return 0, fmt.Errorf("invalid value for IntOrString: invalid type: string is not a percentage: %q", v.StrVal)
	}
	n, err := strconv.Atoi(pct)
	if err != nil {
		return 0, fmt.Errorf("invalid value %q: %w", v.StrVal, err)
	}
	if roundUp {
		return (n*total + 99) / 100, nil
	}
	return n * total / 100, nil
}

// ---- defaults ----

func int32Ptr(v int32) *int32 { return &v }

func defaultWorkload(obj Object) {
	switch o := obj.(type) {
	case *Deployment:
		s := &o.Spec
		if s.Replicas == nil {
			s.Replicas = int32Ptr(1)
		}
		if s.Strategy.Type == "" {
			s.Strategy.Type = RollingUpdateDeploymentStrategyType
		}
		if s.Strategy.Type == RollingUpdateDeploymentStrategyType {
			if s.Strategy.RollingUpdate == nil {
				s.Strategy.RollingUpdate = &RollingUpdateDeployment{}
			}
			ru := s.Strategy.RollingUpdate
			if ru.MaxUnavailable == nil {
				v := FromString("25%")
				ru.MaxUnavailable = &v
			}
			if ru.MaxSurge == nil {
				v := FromString("25%")
				ru.MaxSurge = &v
			}
		}
		if s.RevisionHistoryLimit == nil {
			s.RevisionHistoryLimit = int32Ptr(10)
		}
		if s.ProgressDeadlineSeconds == nil {
			s.ProgressDeadlineSeconds = int32Ptr(600)
		}
		defaultPodSpec(&s.Template.Spec)
	case *ReplicaSet:
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = int32Ptr(1)
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *DaemonSet:
		s := &o.Spec
		if s.UpdateStrategy.Type == "" {
			s.UpdateStrategy.Type = RollingUpdateDaemonSetStrategyType
		}
		if s.UpdateStrategy.Type == RollingUpdateDaemonSetStrategyType {
			if s.UpdateStrategy.RollingUpdate == nil {
				s.UpdateStrategy.RollingUpdate = &RollingUpdateDaemonSet{}
			}
			ru := s.UpdateStrategy.RollingUpdate
			if ru.MaxUnavailable == nil {
				v := FromInt(1)
				ru.MaxUnavailable = &v
			}
			if ru.MaxSurge == nil {
				v := FromInt(0)
				ru.MaxSurge = &v
			}
		}
		if s.RevisionHistoryLimit == nil {
			s.RevisionHistoryLimit = int32Ptr(10)
		}
		defaultPodSpec(&s.Template.Spec)
	case *Job:
		defaultJob(o)
	}
}

func defaultJob(j *Job) {
	s := &j.Spec
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions = int32Ptr(1)
		s.Parallelism = int32Ptr(1)
	}
	if s.Parallelism == nil {
		s.Parallelism = int32Ptr(1)
	}
	if s.BackoffLimit == nil {
		s.BackoffLimit = int32Ptr(6)
	}
	if s.CompletionMode == nil {
		m := NonIndexedCompletion
		s.CompletionMode = &m
	}
	if s.Suspend == nil {
		f := false
		s.Suspend = &f
	}
	if s.ManualSelector == nil || !*s.ManualSelector {
		// Kubernetes generates the selector from the Job's uid; the uid
		// exists once the object is stored, so this happens on updates
		// and on objects the store returned.
		if s.Selector == nil && j.UID != "" {
			if s.Template.Labels == nil {
				s.Template.Labels = map[string]string{}
			}
			for k, v := range map[string]string{ControllerUIDLabel: j.UID, LegacyControllerUIDLabel: j.UID, JobNameLabel: j.Name, LegacyJobNameLabel: j.Name} {
				if _, ok := s.Template.Labels[k]; !ok {
					s.Template.Labels[k] = v
				}
			}
			s.Selector = &LabelSelector{MatchLabels: map[string]string{ControllerUIDLabel: j.UID}}
		}
	}
	// Kubernetes does not default a Job template's restartPolicy (Always is
	// invalid for a Job); keep it empty so that validation reports it.
	rp := s.Template.Spec.RestartPolicy
	defaultPodSpec(&s.Template.Spec)
	s.Template.Spec.RestartPolicy = rp
}

// ---- validation ----

func validateLabelSelector(l *errList, ls *LabelSelector, p string) {
	if ls == nil {
		return
	}
	validateLabels(l, ls.MatchLabels, p+".matchLabels")
	for i, e := range ls.MatchExpressions {
		ep := fmt.Sprintf("%s.matchExpressions[%d]", p, i)
		if err := ValidateLabelKey(e.Key); err != nil {
			l.invalid(ep+".key", e.Key, err.Error())
		}
		switch e.Operator {
		case LabelSelectorOpIn, LabelSelectorOpNotIn:
			if len(e.Values) == 0 {
				l.add(ep+".values", "required: must be specified when `operator` is 'In' or 'NotIn'")
			}
		case LabelSelectorOpExists, LabelSelectorOpDoesNotExist:
			if len(e.Values) > 0 {
				l.add(ep+".values", "forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
			}
		case "":
			l.required(ep + ".operator")
		default:
			l.unsupported(ep+".operator", e.Operator, LabelSelectorOpIn, LabelSelectorOpNotIn, LabelSelectorOpExists, LabelSelectorOpDoesNotExist)
		}
		for j, v := range e.Values {
			if err := ValidateLabelValue(v); err != nil {
				l.invalid(fmt.Sprintf("%s.values[%d]", ep, j), v, err.Error())
			}
		}
	}
}

// validateSelectorAndTemplate checks a workload's selector (required unless
// optional), the template's metadata and pod spec, and that the selector
// selects the template's labels.
func validateSelectorAndTemplate(l *errList, sel *LabelSelector, t *PodTemplateSpec, p string, selectorOptional bool, restartPolicies ...string) {
	n := len(l.errs)
	switch {
	case sel == nil && !selectorOptional:
		l.required(p + ".selector")
	case sel != nil && len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0:
		l.invalid(p+".selector", "{}", "empty selector is invalid for this kind")
	default:
		validateLabelSelector(l, sel, p+".selector")
	}
	tp := p + ".template"
	validateLabels(l, t.Labels, tp+".metadata.labels")
	if len(t.Annotations) > 0 {
		for _, key := range sortedKeys(t.Annotations) {
			if err := ValidateLabelKey(key); err != nil {
				l.invalid(tp+".metadata.annotations", key, "name "+err.Error())
			}
		}
	}
	validatePodSpec(l, &t.Spec, tp+".spec")
	if rp := t.Spec.RestartPolicy; len(restartPolicies) > 0 && !oneOf(rp, restartPolicies...) {
		if rp == "" {
			l.add(tp+".spec.restartPolicy", "required: supported values: %s", quoteAll(restartPolicies))
		} else if !oneOf(rp, RestartAlways, RestartOnFailure, RestartNever) {
			// validatePodSpec already reported it.
		} else {
			l.unsupported(tp+".spec.restartPolicy", rp, restartPolicies...)
		}
	}
	if sel != nil && len(l.errs) == n {
		s, err := LabelSelectorAsSelector(sel)
		if err == nil && !s.Empty() && !s.Matches(t.Labels) {
			l.invalid(tp+".metadata.labels", labelsString(t.Labels), "`selector` does not match template `labels`")
		}
	}
}

func quoteAll(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

func labelsString(m map[string]string) string {
	keys := sortedKeys(m)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func validateNonNegative32(l *errList, p string, v *int32) {
	if v != nil && *v < 0 {
		l.invalid(p, *v, "must be greater than or equal to 0")
	}
}

// validateIntOrPercent checks an int or "N%" value that must be >= 0 and,
// for percentages, at most 100% when capped.
func validateIntOrPercent(l *errList, p string, v *IntOrString, capped bool) {
	if v == nil {
		return
	}
	if !v.IsString {
		if v.IntVal < 0 {
			l.invalid(p, v.IntVal, "must be greater than or equal to 0")
		}
		return
	}
	pct, ok := strings.CutSuffix(v.StrVal, "%")
	n, err := strconv.Atoi(pct)
	if !ok || err != nil || n < 0 {
		l.invalid(p, v.StrVal, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')")
		return
	}
	if capped && n > 100 {
		l.invalid(p, v.StrVal, "must not be greater than 100%")
	}
}

func isZeroIntOrPercent(v *IntOrString) bool {
	if v == nil {
		return true
	}
	if v.IsString {
		return v.StrVal == "0%"
	}
	return v.IntVal == 0
}

func validateWorkload(l *errList, obj Object) {
	switch o := obj.(type) {
	case *Deployment:
		s := &o.Spec
		validateNonNegative32(l, "spec.replicas", s.Replicas)
		validateSelectorAndTemplate(l, s.Selector, &s.Template, "spec", false, RestartAlways)
		switch s.Strategy.Type {
		case RecreateDeploymentStrategyType:
			if s.Strategy.RollingUpdate != nil {
				l.add("spec.strategy.rollingUpdate", "forbidden: may not be specified when strategy `type` is 'Recreate'")
			}
		case RollingUpdateDeploymentStrategyType, "":
			if ru := s.Strategy.RollingUpdate; ru != nil {
				validateIntOrPercent(l, "spec.strategy.rollingUpdate.maxUnavailable", ru.MaxUnavailable, true)
				validateIntOrPercent(l, "spec.strategy.rollingUpdate.maxSurge", ru.MaxSurge, false)
				if ru.MaxUnavailable != nil && ru.MaxSurge != nil && isZeroIntOrPercent(ru.MaxUnavailable) && isZeroIntOrPercent(ru.MaxSurge) {
					l.invalid("spec.strategy.rollingUpdate.maxUnavailable", ru.MaxUnavailable.String(), "may not be 0 when `maxSurge` is 0")
				}
			}
		default:
			l.unsupported("spec.strategy.type", s.Strategy.Type, RecreateDeploymentStrategyType, RollingUpdateDeploymentStrategyType)
		}
		if s.MinReadySeconds < 0 {
			l.invalid("spec.minReadySeconds", s.MinReadySeconds, "must be greater than or equal to 0")
		}
		validateNonNegative32(l, "spec.revisionHistoryLimit", s.RevisionHistoryLimit)
		if d := s.ProgressDeadlineSeconds; d != nil {
			if *d <= 0 {
				l.invalid("spec.progressDeadlineSeconds", *d, "must be greater than 0")
			} else if *d <= s.MinReadySeconds {
				l.invalid("spec.progressDeadlineSeconds", *d, "must be greater than minReadySeconds")
			}
		}
	case *ReplicaSet:
		s := &o.Spec
		validateNonNegative32(l, "spec.replicas", s.Replicas)
		if s.MinReadySeconds < 0 {
			l.invalid("spec.minReadySeconds", s.MinReadySeconds, "must be greater than or equal to 0")
		}
		validateSelectorAndTemplate(l, s.Selector, &s.Template, "spec", false, RestartAlways)
	case *DaemonSet:
		s := &o.Spec
		validateSelectorAndTemplate(l, s.Selector, &s.Template, "spec", false, RestartAlways)
		switch s.UpdateStrategy.Type {
		case OnDeleteDaemonSetStrategyType:
			if s.UpdateStrategy.RollingUpdate != nil {
				l.add("spec.updateStrategy.rollingUpdate", "forbidden: may not be specified when strategy `type` is 'OnDelete'")
			}
		case RollingUpdateDaemonSetStrategyType, "":
			if ru := s.UpdateStrategy.RollingUpdate; ru != nil {
				validateIntOrPercent(l, "spec.updateStrategy.rollingUpdate.maxUnavailable", ru.MaxUnavailable, true)
				validateIntOrPercent(l, "spec.updateStrategy.rollingUpdate.maxSurge", ru.MaxSurge, true)
				if ru.MaxUnavailable != nil && ru.MaxSurge != nil && isZeroIntOrPercent(ru.MaxUnavailable) && isZeroIntOrPercent(ru.MaxSurge) {
					l.invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", ru.MaxUnavailable.String(), "may not be 0 when `maxSurge` is 0")
				}
			}
		default:
			l.unsupported("spec.updateStrategy.type", s.UpdateStrategy.Type, OnDeleteDaemonSetStrategyType, RollingUpdateDaemonSetStrategyType)
		}
		if s.MinReadySeconds < 0 {
			l.invalid("spec.minReadySeconds", s.MinReadySeconds, "must be greater than or equal to 0")
		}
		validateNonNegative32(l, "spec.revisionHistoryLimit", s.RevisionHistoryLimit)
	case *Job:
		s := &o.Spec
		validateNonNegative32(l, "spec.parallelism", s.Parallelism)
		validateNonNegative32(l, "spec.completions", s.Completions)
		validateNonNegative32(l, "spec.backoffLimit", s.BackoffLimit)
		validateNonNegative32(l, "spec.ttlSecondsAfterFinished", s.TTLSecondsAfterFinished)
		if d := s.ActiveDeadlineSeconds; d != nil && *d <= 0 {
			l.invalid("spec.activeDeadlineSeconds", *d, "must be greater than 0")
		}
		if m := s.CompletionMode; m != nil && !oneOf(*m, NonIndexedCompletion, IndexedCompletion) {
			l.unsupported("spec.completionMode", *m, NonIndexedCompletion, IndexedCompletion)
		}
		if m := s.CompletionMode; m != nil && *m == IndexedCompletion && s.Completions == nil {
			l.add("spec.completions", "required when completion mode is Indexed")
		}
		manual := s.ManualSelector != nil && *s.ManualSelector
		if manual && s.Selector == nil {
			l.add("spec.selector", "required when `manualSelector` is true")
		}
		validateSelectorAndTemplate(l, s.Selector, &s.Template, "spec", true, RestartOnFailure, RestartNever)
	}
}

func validateWorkloadUpdate(l *errList, n, o Object) {
	immutable := func(p string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			l.add(p, "forbidden: field is immutable")
		}
	}
	switch n := n.(type) {
	case *Deployment:
		immutable("spec.selector", n.Spec.Selector, o.(*Deployment).Spec.Selector)
	case *ReplicaSet:
		immutable("spec.selector", n.Spec.Selector, o.(*ReplicaSet).Spec.Selector)
	case *DaemonSet:
		immutable("spec.selector", n.Spec.Selector, o.(*DaemonSet).Spec.Selector)
	case *Job:
		oj := o.(*Job)
		immutable("spec.completions", n.Spec.Completions, oj.Spec.Completions)
		immutable("spec.completionMode", n.Spec.CompletionMode, oj.Spec.CompletionMode)
		// A Job stored before its selector was generated gets it (and the
		// template labels) on its first update.
		if oj.Spec.Selector != nil {
			immutable("spec.selector", n.Spec.Selector, oj.Spec.Selector)
			if !EqualJSON(&n.Spec.Template, &oj.Spec.Template) {
				l.add("spec.template", "forbidden: field is immutable")
			}
		}
	}
}

// ---- pod state helpers shared by the workload controllers ----

// GetPodReadyCondition returns pod's Ready condition, or nil.
func GetPodReadyCondition(pod *Pod) *PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == PodReady {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// IsPodReady reports whether pod's Ready condition is True.
func IsPodReady(pod *Pod) bool {
	c := GetPodReadyCondition(pod)
	return c != nil && c.Status == ConditionTrue
}

// IsPodAvailable reports whether pod has been ready for at least
// minReadySeconds at now (Kubernetes' podutil.IsPodAvailable).
func IsPodAvailable(pod *Pod, minReadySeconds int32, now time.Time) bool {
	c := GetPodReadyCondition(pod)
	if c == nil || c.Status != ConditionTrue {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	d := time.Duration(minReadySeconds) * time.Second
	return !c.LastTransitionTime.IsZero() && !c.LastTransitionTime.Add(d).After(now)
}

// IsPodActive reports whether pod counts towards a workload's replicas:
// not finished and not being deleted.
func IsPodActive(pod *Pod) bool {
	return pod.Status.Phase != PodSucceeded && pod.Status.Phase != PodFailed && pod.DeletionTimestamp == nil
}
