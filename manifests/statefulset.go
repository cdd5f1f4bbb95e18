package manifests

import (
	"fmt"
	"reflect"
	"time"
)

// apps/v1 StatefulSet: pods with stable ordinal names (<name>-0, <name>-1,
// ...), host names and, from volumeClaimTemplates, one PersistentVolumeClaim
// per template and ordinal that outlives the pod.

// StatefulSet pod management policies.
const (
	OrderedReadyPodManagement = "OrderedReady"
	ParallelPodManagement     = "Parallel"
)

// StatefulSet update strategy types.
const (
	RollingUpdateStatefulSetStrategyType = "RollingUpdate"
	OnDeleteStatefulSetStrategyType      = "OnDelete"
)

// PersistentVolumeClaim retention policy types.
const (
	RetainPersistentVolumeClaimRetentionPolicyType = "Retain"
	DeletePersistentVolumeClaimRetentionPolicyType = "Delete"
)

// Labels the StatefulSet controller puts on its pods.
const (
	// StatefulSetPodNameLabel holds the pod's own name, so that a Service
	// can select one replica.
	StatefulSetPodNameLabel = "statefulset.kubernetes.io/pod-name"
	// PodIndexLabel holds the pod's ordinal.
	PodIndexLabel = "apps.kubernetes.io/pod-index"
	// ControllerRevisionHashLabel holds the revision (template hash) a pod
	// was made from.
	ControllerRevisionHashLabel = "controller-revision-hash"
)

// MaxStatefulSetNameLength is the longest StatefulSet name: its pods are
// named <name>-<ordinal>, that name is the pod's host name (a DNS label)
// and the value of a label (63 characters), and an ordinal has up to 10
// digits.
const MaxStatefulSetNameLength = 52

// StatefulSet runs pods with stable identities and stable storage.
type StatefulSet struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       StatefulSetSpec   `json:"spec"`
	Status     StatefulSetStatus `json:"status,omitzero"`
}

// StatefulSetSpec is the desired state of a StatefulSet.
type StatefulSetSpec struct {
	Replicas             *int32                    `json:"replicas,omitempty"`
	Selector             *LabelSelector            `json:"selector"`
	Template             PodTemplateSpec           `json:"template"`
	VolumeClaimTemplates []PersistentVolumeClaim   `json:"volumeClaimTemplates,omitempty"`
	ServiceName          string                    `json:"serviceName,omitempty"`
	PodManagementPolicy  string                    `json:"podManagementPolicy,omitempty"`
	UpdateStrategy       StatefulSetUpdateStrategy `json:"updateStrategy,omitzero"`
	RevisionHistoryLimit *int32                    `json:"revisionHistoryLimit,omitempty"`
	MinReadySeconds      int32                     `json:"minReadySeconds,omitempty"`
	// PersistentVolumeClaimRetentionPolicy says what happens to the
	// claims of volumeClaimTemplates when the StatefulSet is deleted or
	// scaled down.
	PersistentVolumeClaimRetentionPolicy *StatefulSetPersistentVolumeClaimRetentionPolicy `json:"persistentVolumeClaimRetentionPolicy,omitempty"`
	Ordinals                             *StatefulSetOrdinals                             `json:"ordinals,omitempty"`
}

// StatefulSetUpdateStrategy says how a StatefulSet replaces its pods.
type StatefulSetUpdateStrategy struct {
	Type          string                            `json:"type,omitempty"`
	RollingUpdate *RollingUpdateStatefulSetStrategy `json:"rollingUpdate,omitempty"`
}

// RollingUpdateStatefulSetStrategy bounds a StatefulSet rolling update:
// only ordinals >= partition are updated; maxUnavailable pods (1 unless
// set) may be replaced at once.
type RollingUpdateStatefulSetStrategy struct {
	Partition      *int32       `json:"partition,omitempty"`
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
}

// StatefulSetPersistentVolumeClaimRetentionPolicy says whether the claims
// are kept (Retain) or deleted (Delete) with the StatefulSet and when it
// scales down.
type StatefulSetPersistentVolumeClaimRetentionPolicy struct {
	WhenDeleted string `json:"whenDeleted,omitempty"`
	WhenScaled  string `json:"whenScaled,omitempty"`
}

// StatefulSetOrdinals sets the first ordinal (0 unless set).
type StatefulSetOrdinals struct {
	Start int32 `json:"start,omitempty"`
}

// StatefulSetStatus is the observed state of a StatefulSet.
type StatefulSetStatus struct {
	ObservedGeneration int64                  `json:"observedGeneration,omitempty"`
	Replicas           int32                  `json:"replicas"`
	ReadyReplicas      int32                  `json:"readyReplicas,omitempty"`
	CurrentReplicas    int32                  `json:"currentReplicas,omitempty"`
	UpdatedReplicas    int32                  `json:"updatedReplicas,omitempty"`
	AvailableReplicas  int32                  `json:"availableReplicas,omitempty"`
	CurrentRevision    string                 `json:"currentRevision,omitempty"`
	UpdateRevision     string                 `json:"updateRevision,omitempty"`
	CollisionCount     *int32                 `json:"collisionCount,omitempty"`
	Conditions         []StatefulSetCondition `json:"conditions,omitempty"`
}

// StatefulSetCondition is one condition of a StatefulSet.
type StatefulSetCondition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	LastTransitionTime time.Time `json:"lastTransitionTime,omitzero"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
}

// StatefulSetStartOrdinal returns the first ordinal of ss.
func StatefulSetStartOrdinal(ss *StatefulSet) int {
	if ss.Spec.Ordinals != nil {
		return int(ss.Spec.Ordinals.Start)
	}
	return 0
}

// StatefulSetPodName is the name of ss's pod with ordinal.
func StatefulSetPodName(ss *StatefulSet, ordinal int) string {
	return fmt.Sprintf("%s-%d", ss.Name, ordinal)
}

// StatefulSetClaimName is the name of the claim of template for the pod
// podName: <template>-<pod name>.
func StatefulSetClaimName(template, podName string) string {
	return template + "-" + podName
}

// ---- defaults ----

func defaultStatefulSet(ss *StatefulSet) {
	s := &ss.Spec
	if s.Replicas == nil {
		s.Replicas = int32Ptr(1)
	}
	if s.PodManagementPolicy == "" {
		s.PodManagementPolicy = OrderedReadyPodManagement
	}
	if s.UpdateStrategy.Type == "" {
		s.UpdateStrategy.Type = RollingUpdateStatefulSetStrategyType
	}
	if s.UpdateStrategy.Type == RollingUpdateStatefulSetStrategyType {
		if s.UpdateStrategy.RollingUpdate == nil {
			s.UpdateStrategy.RollingUpdate = &RollingUpdateStatefulSetStrategy{}
		}
		if s.UpdateStrategy.RollingUpdate.Partition == nil {
			s.UpdateStrategy.RollingUpdate.Partition = int32Ptr(0)
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = int32Ptr(10)
	}
	if s.PersistentVolumeClaimRetentionPolicy == nil {
		s.PersistentVolumeClaimRetentionPolicy = &StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	if p := s.PersistentVolumeClaimRetentionPolicy; p.WhenDeleted == "" {
		p.WhenDeleted = RetainPersistentVolumeClaimRetentionPolicyType
	}
	if p := s.PersistentVolumeClaimRetentionPolicy; p.WhenScaled == "" {
		p.WhenScaled = RetainPersistentVolumeClaimRetentionPolicyType
	}
	defaultPodSpec(&s.Template.Spec)
	defaultStatefulSetClaims(ss)
}

// ---- validation ----

func validateStatefulSet(l *errList, ss *StatefulSet) {
	s := &ss.Spec
	if len(ss.Name) > MaxStatefulSetNameLength {
		l.invalid("metadata.name", ss.Name, fmt.Sprintf("must be no more than %d characters (pods are named <name>-<ordinal> and use it as their host name)", MaxStatefulSetNameLength))
	} else if ss.Name != "" {
		if err := ValidateDNSLabel(ss.Name); err != nil {
			l.invalid("metadata.name", ss.Name, err.Error()+" (pods use <name>-<ordinal> as their host name)")
		}
	}
	validateNonNegative32(l, "spec.replicas", s.Replicas)
	if s.ServiceName != "" {
		if err := ValidateDNSLabel(s.ServiceName); err != nil {
			l.invalid("spec.serviceName", s.ServiceName, err.Error())
		}
	}
	switch s.PodManagementPolicy {
	case OrderedReadyPodManagement, ParallelPodManagement, "":
	default:
		l.unsupported("spec.podManagementPolicy", s.PodManagementPolicy, OrderedReadyPodManagement, ParallelPodManagement)
	}
	switch s.UpdateStrategy.Type {
	case OnDeleteStatefulSetStrategyType:
		if s.UpdateStrategy.RollingUpdate != nil {
			l.add("spec.updateStrategy.rollingUpdate", "forbidden: only allowed for updateStrategy '%s'", RollingUpdateStatefulSetStrategyType)
		}
	case RollingUpdateStatefulSetStrategyType, "":
		if ru := s.UpdateStrategy.RollingUpdate; ru != nil {
			validateNonNegative32(l, "spec.updateStrategy.rollingUpdate.partition", ru.Partition)
			if ru.MaxUnavailable != nil {
				validateIntOrPercent(l, "spec.updateStrategy.rollingUpdate.maxUnavailable", ru.MaxUnavailable, true)
				if isZeroIntOrPercent(ru.MaxUnavailable) {
					l.invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", ru.MaxUnavailable.String(), "must be greater than 0")
				}
			}
		}
	default:
		l.unsupported("spec.updateStrategy.type", s.UpdateStrategy.Type, OnDeleteStatefulSetStrategyType, RollingUpdateStatefulSetStrategyType)
	}
	if s.MinReadySeconds < 0 {
		l.invalid("spec.minReadySeconds", s.MinReadySeconds, "must be greater than or equal to 0")
	}
	validateNonNegative32(l, "spec.revisionHistoryLimit", s.RevisionHistoryLimit)
	if p := s.PersistentVolumeClaimRetentionPolicy; p != nil {
		for _, f := range []struct{ path, v string }{
			{"spec.persistentVolumeClaimRetentionPolicy.whenDeleted", p.WhenDeleted},
			{"spec.persistentVolumeClaimRetentionPolicy.whenScaled", p.WhenScaled},
		} {
			if f.v != "" && !oneOf(f.v, RetainPersistentVolumeClaimRetentionPolicyType, DeletePersistentVolumeClaimRetentionPolicyType) {
				l.unsupported(f.path, f.v, RetainPersistentVolumeClaimRetentionPolicyType, DeletePersistentVolumeClaimRetentionPolicyType)
			}
		}
	}
	if o := s.Ordinals; o != nil && o.Start < 0 {
		l.invalid("spec.ordinals.start", o.Start, "must be greater than or equal to 0")
	}
	// The template is checked as the pods will be: with a volume for each
	// claim template, so that volumeMounts may name them.
	t := s.Template
	t.Spec.Volumes = StatefulSetPodVolumes(ss, "")
	validateStatefulSetClaims(l, ss)
	validateSelectorAndTemplate(l, s.Selector, &t, "spec", false, RestartAlways)
}

func validateStatefulSetUpdate(l *errList, n, o *StatefulSet) {
	immutable := func(p string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			l.add(p, "forbidden: field is immutable (a StatefulSet may change only replicas, ordinals, template, updateStrategy, revisionHistoryLimit, persistentVolumeClaimRetentionPolicy and minReadySeconds)")
		}
	}
	immutable("spec.selector", n.Spec.Selector, o.Spec.Selector)
	immutable("spec.serviceName", n.Spec.ServiceName, o.Spec.ServiceName)
	immutable("spec.podManagementPolicy", n.Spec.PodManagementPolicy, o.Spec.PodManagementPolicy)
	if !EqualJSON(n.Spec.VolumeClaimTemplates, o.Spec.VolumeClaimTemplates) {
		immutable("spec.volumeClaimTemplates", 1, 2)
	}
}
