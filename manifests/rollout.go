package manifests

import (
	"fmt"
	"strings"
	"time"
)

// Fleet rollouts: edge.io/v1alpha1 Rollout moves a DaemonSet (node by
// node) or a Deployment (replica step by replica step) to a new pod
// template in waves, behind a health gate.

// Rollout phases.
const (
	RolloutProgressing = "Progressing"
	RolloutPaused      = "Paused"
	RolloutCompleted   = "Completed"
	RolloutRolledBack  = "RolledBack"
	RolloutFailed      = "Failed"
)

// Rollout failure actions.
const (
	RolloutActionPause    = "Pause"
	RolloutActionRollback = "Rollback"
)

// Rollout pause reasons (status.pauseReason).
const (
	RolloutPausedByUser     = "User"
	RolloutPausedByFailures = "FailurePolicy"
)

// RolloutPartitionAnnotation on a Deployment caps its new ReplicaSet at
// the given number of replicas and keeps its old ones at no fewer than
// spec.replicas minus that number: a Rollout raises it wave by wave.
const RolloutPartitionAnnotation = "rollout.edge.io/partition"

// RolloutResumedAtAnnotation on a Rollout asks the controller to resume it
// from a pause by its failure policy (edgectl rollout resume stamps the
// time); the failures seen so far are then accepted.
const RolloutResumedAtAnnotation = "rollout.edge.io/resumed-at"

// DefaultRolloutWaveTimeoutSeconds bounds how long a node of a wave may
// take to become Ready before it counts as failed.
const DefaultRolloutWaveTimeoutSeconds = int32(300)

// Rollout rolls a new pod template out to a fleet in waves.
type Rollout struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       RolloutSpec   `json:"spec"`
	Status     RolloutStatus `json:"status,omitzero"`
}

// RolloutSpec is the desired rollout.
type RolloutSpec struct {
	// TargetRef names the workload to update (DaemonSet or Deployment).
	TargetRef RolloutTargetRef `json:"targetRef"`
	// Template is the pod template to roll out.
	Template PodTemplateSpec `json:"template"`
	// Waves split the target's nodes (DaemonSet) or replicas (Deployment);
	// nodes no wave takes join the last.
	Waves         []RolloutWave        `json:"waves,omitempty"`
	HealthGate    RolloutHealthGate    `json:"healthGate,omitzero"`
	FailurePolicy RolloutFailurePolicy `json:"failurePolicy,omitzero"`
	OfflinePolicy RolloutOfflinePolicy `json:"offlinePolicy,omitzero"`
	// Paused stops the rollout (phase Paused) until cleared.
	Paused bool `json:"paused,omitempty"`
}

// RolloutTargetRef names the workload a Rollout updates.
type RolloutTargetRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// RolloutWave is one step: Count nodes (a number or a percentage of all
// the target's nodes; all remaining ones when unset) among those matching
// Selector (all when nil). For a Deployment, Count is how many more
// replicas (a number or a percentage of spec.replicas) run the new
// template; Selector is not supported.
type RolloutWave struct {
	Count    *IntOrString   `json:"count,omitempty"`
	Selector *LabelSelector `json:"selector,omitempty"`
}

// RolloutHealthGate says when a wave passes: every online node's new pod
// Ready for ReadySeconds, within TimeoutSeconds of the wave's start.
type RolloutHealthGate struct {
	ReadySeconds   int32  `json:"readySeconds,omitempty"`
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
}

// RolloutFailurePolicy says how many failed nodes are tolerated and what
// happens past that.
type RolloutFailurePolicy struct {
	MaxFailedNodes   *int32 `json:"maxFailedNodes,omitempty"`
	MaxFailedPercent *int32 `json:"maxFailedPercent,omitempty"`
	Action           string `json:"action,omitempty"`
}

// RolloutOfflinePolicy says how long a wave waits for its offline nodes
// before continuing without them (they converge when they return).
type RolloutOfflinePolicy struct {
	WaitSeconds int32 `json:"waitSeconds,omitempty"`
}

// RolloutStatus is the observed state of a Rollout.
type RolloutStatus struct {
	Phase   string `json:"phase,omitempty"`
	Message string `json:"message,omitempty"`
	// CurrentWave is the 0-based index of the wave in progress.
	CurrentWave int32               `json:"currentWave"`
	Waves       []RolloutWaveStatus `json:"waves,omitempty"`
	// Revision is the controller-revision-hash of the new template.
	Revision string `json:"revision,omitempty"`
	// PreviousTemplate and PreviousStrategy are the target's template and
	// update strategy before the rollout (restored on rollback/completion).
	PreviousTemplate *PodTemplateSpec         `json:"previousTemplate,omitempty"`
	PreviousStrategy *DaemonSetUpdateStrategy `json:"previousStrategy,omitempty"`
	// PreviousDeploymentStrategy is a Deployment target's strategy before
	// the rollout.
	PreviousDeploymentStrategy *DeploymentStrategy `json:"previousDeploymentStrategy,omitempty"`
	// PauseReason says who paused the rollout (User or FailurePolicy).
	PauseReason string `json:"pauseReason,omitempty"`
	// AcceptedFailures are the failed nodes (replicas) a resume accepted:
	// the failure policy counts only the failures beyond them.
	AcceptedFailures int32 `json:"acceptedFailures,omitempty"`
	// ObservedResumedAt is the rollout.edge.io/resumed-at annotation the
	// controller last acted on.
	ObservedResumedAt string `json:"observedResumedAt,omitempty"`
}

// RolloutWaveStatus is the progress of one wave. Counts are of nodes for
// a DaemonSet and of replicas for a Deployment.
type RolloutWaveStatus struct {
	// NodeNames are the nodes planned into the wave at the start
	// (DaemonSet targets).
	NodeNames []string `json:"nodeNames,omitempty"`
	// Total is the wave's number of nodes or replicas.
	Total int32 `json:"total"`
	// Partition is, for a Deployment, how many replicas run the new
	// template once the wave is done (this wave's and the earlier ones').
	Partition   int32     `json:"partition,omitempty"`
	Updated     int32     `json:"updated"`
	Ready       int32     `json:"ready"`
	Failed      int32     `json:"failed"`
	Offline     int32     `json:"offline"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	CompletedAt time.Time `json:"completedAt,omitzero"`
}

// RolloutUnfinished reports whether r still holds its target: not
// started yet, Progressing or Paused (and not being deleted). Only one
// unfinished Rollout may target a workload.
func RolloutUnfinished(r *Rollout) bool {
	switch r.Status.Phase {
	case "", RolloutProgressing, RolloutPaused:
		return r.DeletionTimestamp == nil
	}
	return false
}

// RolloutTargetTaken says that r's target is being rolled out by other.
func RolloutTargetTaken(r, other *Rollout) string {
	phase := other.Status.Phase
	if phase == "" {
		phase = "Pending"
	}
	return fmt.Sprintf("rollout %q: %s %q is already being rolled out by rollout %q (%s); delete it or wait until it completes",
		r.Name, strings.ToLower(r.Spec.TargetRef.Kind), r.Spec.TargetRef.Name, other.Name, phase)
}

// WaveTimeout is the health gate's timeout.
func (g RolloutHealthGate) WaveTimeout() time.Duration {
	if g.TimeoutSeconds != nil {
		return time.Duration(*g.TimeoutSeconds) * time.Second
	}
	return time.Duration(DefaultRolloutWaveTimeoutSeconds) * time.Second
}

// MaxFailed is the number of failed nodes tolerated out of total.
func (p RolloutFailurePolicy) MaxFailed(total int) int {
	n := 0
	if p.MaxFailedNodes != nil {
		n = int(*p.MaxFailedNodes)
	}
	if p.MaxFailedPercent != nil {
		v := FromString(fmt.Sprintf("%d%%", *p.MaxFailedPercent))
		if m, err := ScaledValueFromIntOrPercent(&v, total, false); err == nil && (p.MaxFailedNodes == nil || m > n) {
			n = m
		}
	}
	return n
}

func defaultRollout(r *Rollout) {
	if r.Spec.FailurePolicy.Action == "" {
		r.Spec.FailurePolicy.Action = RolloutActionPause
	}
	if r.Spec.HealthGate.TimeoutSeconds == nil {
		r.Spec.HealthGate.TimeoutSeconds = int32Ptr(DefaultRolloutWaveTimeoutSeconds)
	}
	defaultPodSpec(&r.Spec.Template.Spec)
}

func validateRollout(l *errList, r *Rollout) {
	s := &r.Spec
	switch s.TargetRef.Kind {
	case "DaemonSet", "Deployment":
	case "":
		l.required("spec.targetRef.kind")
	default:
		l.unsupported("spec.targetRef.kind", s.TargetRef.Kind, "DaemonSet", "Deployment")
	}
	if s.TargetRef.Name == "" {
		l.required("spec.targetRef.name")
	} else if err := ValidateDNSSubdomain(s.TargetRef.Name); err != nil {
		l.invalid("spec.targetRef.name", s.TargetRef.Name, err.Error())
	}
	validatePodSpec(l, &s.Template.Spec, "spec.template.spec")
	validateLabels(l, s.Template.Labels, "spec.template.metadata.labels")
	for i, w := range s.Waves {
		p := fmt.Sprintf("spec.waves[%d]", i)
		if w.Count != nil {
			validateIntOrPercent(l, p+".count", w.Count, true)
		}
		if w.Selector != nil && s.TargetRef.Kind == "Deployment" {
			l.add(p+".selector", "forbidden: waves of a Deployment are replica counts, not node groups; remove the selector")
		} else if w.Selector != nil {
			validateLabelSelector(l, w.Selector, p+".selector")
		}
	}
	if s.HealthGate.ReadySeconds < 0 {
		l.invalid("spec.healthGate.readySeconds", s.HealthGate.ReadySeconds, "must be greater than or equal to 0")
	}
	if t := s.HealthGate.TimeoutSeconds; t != nil && *t <= 0 {
		l.invalid("spec.healthGate.timeoutSeconds", *t, "must be greater than 0")
	}
	f := s.FailurePolicy
	validateNonNegative32(l, "spec.failurePolicy.maxFailedNodes", f.MaxFailedNodes)
	if p := f.MaxFailedPercent; p != nil && (*p < 0 || *p > 100) {
		l.invalid("spec.failurePolicy.maxFailedPercent", *p, "must be between 0 and 100")
	}
	if f.Action != "" && !oneOf(f.Action, RolloutActionPause, RolloutActionRollback) {
		l.unsupported("spec.failurePolicy.action", f.Action, RolloutActionPause, RolloutActionRollback)
	}
	if s.OfflinePolicy.WaitSeconds < 0 {
		l.invalid("spec.offlinePolicy.waitSeconds", s.OfflinePolicy.WaitSeconds, "must be greater than or equal to 0")
	}
}

// validateRolloutUpdate keeps what a rollout rolls out fixed: a new
// template or target is a new Rollout.
func validateRolloutUpdate(l *errList, n, o *Rollout) {
	if !EqualJSON(n.Spec.TargetRef, o.Spec.TargetRef) {
		l.add("spec.targetRef", "forbidden: field is immutable")
	}
	if !EqualJSON(n.Spec.Template, o.Spec.Template) {
		l.add("spec.template", "forbidden: field is immutable")
	}
}
