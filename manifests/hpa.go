package manifests

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// autoscaling/v2 HorizontalPodAutoscaler: scales a Deployment, ReplicaSet
// or StatefulSet (any kind with spec.replicas and spec.selector) on the
// CPU and memory usage the agents report (docs/autoscaling.md). Only
// metrics of type Resource are supported: the agents measure CPU and
// memory and nothing else, and there is no custom or external metrics API.

// Metric source types. Only Resource is supported; the others are
// decoded so that a manifest using them is refused naming the type.
const (
	ResourceMetricSourceType          = "Resource"
	PodsMetricSourceType              = "Pods"
	ObjectMetricSourceType            = "Object"
	ExternalMetricSourceType          = "External"
	ContainerResourceMetricSourceType = "ContainerResource"
)

// Metric target types.
const (
	UtilizationMetricType  = "Utilization"
	ValueMetricType        = "Value"
	AverageValueMetricType = "AverageValue"
)

// Scaling policy types and policy selections.
const (
	PodsScalingPolicy    = "Pods"
	PercentScalingPolicy = "Percent"

	MaxChangePolicySelect = "Max"
	MinChangePolicySelect = "Min"
	DisabledPolicySelect  = "Disabled"
)

// HorizontalPodAutoscaler condition types.
const (
	HPAAbleToScale    = "AbleToScale"
	HPAScalingActive  = "ScalingActive"
	HPAScalingLimited = "ScalingLimited"
)

// Kubernetes' defaults and bounds of an HPA's behavior.
const (
	DefaultHPAUtilization           = int32(80)
	DefaultScaleUpStabilization     = int32(0)
	DefaultScaleDownStabilization   = int32(300)
	MaxHPAStabilizationWindow       = int32(3600)
	MaxHPAScalingPolicyPeriod       = int32(1800)
	defaultScaleUpPodsPolicyValue   = int32(4)
	defaultScaleUpPercentValue      = int32(100)
	defaultScaleDownPercentValue    = int32(100)
	defaultHPAScalingPolicyPeriod   = int32(15)
	maxHPAMetrics                   = 16
	maxHPAPoliciesPerScalingRuleSet = 16
)

// HorizontalPodAutoscaler sets the replicas of a workload from the
// resource usage of its pods.
type HorizontalPodAutoscaler struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       HorizontalPodAutoscalerSpec   `json:"spec"`
	Status     HorizontalPodAutoscalerStatus `json:"status,omitzero"`
}

// HorizontalPodAutoscalerSpec is the desired behaviour of an HPA.
type HorizontalPodAutoscalerSpec struct {
	ScaleTargetRef CrossVersionObjectReference      `json:"scaleTargetRef"`
	MinReplicas    *int32                           `json:"minReplicas,omitempty"`
	MaxReplicas    int32                            `json:"maxReplicas"`
	Metrics        []MetricSpec                     `json:"metrics,omitempty"`
	Behavior       *HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
}

// CrossVersionObjectReference names the scaled object.
type CrossVersionObjectReference struct {
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	APIVersion string `json:"apiVersion,omitempty"`
}

// MetricSpec is one metric the HPA scales on. Only Resource is supported.
type MetricSpec struct {
	Type              string                         `json:"type"`
	Resource          *ResourceMetricSource          `json:"resource,omitempty"`
	Pods              *PodsMetricSource              `json:"pods,omitempty"`
	Object            *ObjectMetricSource            `json:"object,omitempty"`
	External          *ExternalMetricSource          `json:"external,omitempty"`
	ContainerResource *ContainerResourceMetricSource `json:"containerResource,omitempty"`
}

// ResourceMetricSource targets the average usage of a resource (cpu or
// memory) over the pods.
type ResourceMetricSource struct {
	Name   string       `json:"name"`
	Target MetricTarget `json:"target"`
}

// MetricTarget is the target value of a metric.
type MetricTarget struct {
	Type               string    `json:"type"`
	Value              *Quantity `json:"value,omitempty"`
	AverageValue       *Quantity `json:"averageValue,omitempty"`
	AverageUtilization *int32    `json:"averageUtilization,omitempty"`
}

// MetricIdentifier names a custom or external metric (not supported).
type MetricIdentifier struct {
	Name     string         `json:"name"`
	Selector *LabelSelector `json:"selector,omitempty"`
}

// PodsMetricSource is a per-pod custom metric (not supported).
type PodsMetricSource struct {
	Metric MetricIdentifier `json:"metric"`
	Target MetricTarget     `json:"target"`
}

// ObjectMetricSource is a metric of another object (not supported).
type ObjectMetricSource struct {
	DescribedObject CrossVersionObjectReference `json:"describedObject"`
	Metric          MetricIdentifier            `json:"metric"`
	Target          MetricTarget                `json:"target"`
}

// ExternalMetricSource is a metric from outside the cluster (not supported).
type ExternalMetricSource struct {
	Metric MetricIdentifier `json:"metric"`
	Target MetricTarget     `json:"target"`
}

// ContainerResourceMetricSource is the usage of one container of each pod
// (not supported: the agents report it, but the HPA scales on pods).
type ContainerResourceMetricSource struct {
	Name      string       `json:"name"`
	Container string       `json:"container"`
	Target    MetricTarget `json:"target"`
}

// HorizontalPodAutoscalerBehavior bounds how fast the HPA scales.
type HorizontalPodAutoscalerBehavior struct {
	ScaleUp   *HPAScalingRules `json:"scaleUp,omitempty"`
	ScaleDown *HPAScalingRules `json:"scaleDown,omitempty"`
}

// HPAScalingRules are the rules of one direction.
type HPAScalingRules struct {
	StabilizationWindowSeconds *int32             `json:"stabilizationWindowSeconds,omitempty"`
	SelectPolicy               *string            `json:"selectPolicy,omitempty"`
	Policies                   []HPAScalingPolicy `json:"policies,omitempty"`
}

// HPAScalingPolicy allows a change of Value pods (or percent) per
// PeriodSeconds.
type HPAScalingPolicy struct {
	Type          string `json:"type"`
	Value         int32  `json:"value"`
	PeriodSeconds int32  `json:"periodSeconds"`
}

// HorizontalPodAutoscalerStatus is what the controller last observed.
type HorizontalPodAutoscalerStatus struct {
	ObservedGeneration *int64                             `json:"observedGeneration,omitempty"`
	LastScaleTime      *time.Time                         `json:"lastScaleTime,omitempty"`
	CurrentReplicas    int32                              `json:"currentReplicas,omitempty"`
	DesiredReplicas    int32                              `json:"desiredReplicas"`
	CurrentMetrics     []MetricStatus                     `json:"currentMetrics,omitempty"`
	Conditions         []HorizontalPodAutoscalerCondition `json:"conditions,omitempty"`
}

// MetricStatus is the last reading of one metric.
type MetricStatus struct {
	Type     string                `json:"type"`
	Resource *ResourceMetricStatus `json:"resource,omitempty"`
}

// ResourceMetricStatus is the current usage of a resource.
type ResourceMetricStatus struct {
	Name    string            `json:"name"`
	Current MetricValueStatus `json:"current"`
}

// MetricValueStatus holds a metric's current value.
type MetricValueStatus struct {
	Value              *Quantity `json:"value,omitempty"`
	AverageValue       *Quantity `json:"averageValue,omitempty"`
	AverageUtilization *int32    `json:"averageUtilization,omitempty"`
}

// HorizontalPodAutoscalerCondition is one condition of an HPA.
type HorizontalPodAutoscalerCondition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	LastTransitionTime time.Time `json:"lastTransitionTime,omitzero"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
}

// HPACondition returns the condition of type t, or nil.
func HPACondition(h *HorizontalPodAutoscaler, t string) *HorizontalPodAutoscalerCondition {
	for i := range h.Status.Conditions {
		if h.Status.Conditions[i].Type == t {
			return &h.Status.Conditions[i]
		}
	}
	return nil
}

// DefaultHPAScaleUpRules are Kubernetes' scale-up rules: no
// stabilisation, at most 4 pods or 100 % more (the larger) every 15 s.
func DefaultHPAScaleUpRules() *HPAScalingRules {
	return &HPAScalingRules{
		StabilizationWindowSeconds: int32Ptr(DefaultScaleUpStabilization),
		SelectPolicy:               stringPtr(MaxChangePolicySelect),
		Policies: []HPAScalingPolicy{
			{Type: PodsScalingPolicy, Value: defaultScaleUpPodsPolicyValue, PeriodSeconds: defaultHPAScalingPolicyPeriod},
			{Type: PercentScalingPolicy, Value: defaultScaleUpPercentValue, PeriodSeconds: defaultHPAScalingPolicyPeriod},
		},
	}
}

// DefaultHPAScaleDownRules are Kubernetes' scale-down rules: the highest
// recommendation of the last 5 minutes, any decrease at once.
func DefaultHPAScaleDownRules() *HPAScalingRules {
	return &HPAScalingRules{
		StabilizationWindowSeconds: int32Ptr(DefaultScaleDownStabilization),
		SelectPolicy:               stringPtr(MaxChangePolicySelect),
		Policies: []HPAScalingPolicy{
			{Type: PercentScalingPolicy, Value: defaultScaleDownPercentValue, PeriodSeconds: defaultHPAScalingPolicyPeriod},
		},
	}
}

func stringPtr(s string) *string { return &s }

// fillScalingRules fills the unset fields of r from def.
func fillScalingRules(r *HPAScalingRules, def *HPAScalingRules) *HPAScalingRules {
	if r == nil {
		return def
	}
	if r.StabilizationWindowSeconds == nil {
		r.StabilizationWindowSeconds = def.StabilizationWindowSeconds
	}
	if r.SelectPolicy == nil {
		r.SelectPolicy = def.SelectPolicy
	}
	if len(r.Policies) == 0 {
		r.Policies = def.Policies
	}
	return r
}

// defaultHPA sets Kubernetes' defaults: minReplicas 1, a CPU target of
// 80 % when no metric is given, and the default scaling rules. Unlike
// Kubernetes, spec.behavior is always filled in (Kubernetes leaves it nil
// and applies the same defaults in the controller), so that
// `get -o yaml` shows the rules in force.
func defaultHPA(h *HorizontalPodAutoscaler) {
	s := &h.Spec
	if s.MinReplicas == nil {
		s.MinReplicas = int32Ptr(1)
	}
	if len(s.Metrics) == 0 {
		s.Metrics = []MetricSpec{{Type: ResourceMetricSourceType, Resource: &ResourceMetricSource{
			Name:   "cpu",
			Target: MetricTarget{Type: UtilizationMetricType, AverageUtilization: int32Ptr(DefaultHPAUtilization)},
		}}}
	}
	if s.Behavior == nil {
		s.Behavior = &HorizontalPodAutoscalerBehavior{}
	}
	s.Behavior.ScaleUp = fillScalingRules(s.Behavior.ScaleUp, DefaultHPAScaleUpRules())
	s.Behavior.ScaleDown = fillScalingRules(s.Behavior.ScaleDown, DefaultHPAScaleDownRules())
}

// ScalableKind reports whether k can be the target of an HPA: its objects
// have spec.replicas and spec.selector (Deployment, ReplicaSet,
// StatefulSet).
func ScalableKind(k Kind) bool {
	if k.New == nil {
		return false
	}
	t := reflect.TypeOf(k.New())
	if t.Kind() != reflect.Pointer {
		return false
	}
	spec, ok := t.Elem().FieldByName("Spec")
	if !ok || spec.Type.Kind() != reflect.Struct {
		return false
	}
	fields := jsonFields(spec.Type)
	_, hasReplicas := fields["replicas"]
	_, hasSelector := fields["selector"]
	return hasReplicas && hasSelector
}

// HPATargetKind resolves an HPA's spec.scaleTargetRef to a scalable kind.
// An empty apiVersion takes the kind's. The error names the field.
func HPATargetKind(ref CrossVersionObjectReference) (Kind, error) {
	k, ok := lookupKind(ref.Kind)
	switch {
	case !ok:
		return Kind{}, fmt.Errorf("kind: %q is not a supported kind (supported: %s)", ref.Kind, strings.Join(kindNames(), ", "))
	case ref.APIVersion != "" && ref.APIVersion != k.APIVersion:
		return Kind{}, fmt.Errorf("apiVersion: %q is not supported for kind %s (use %q)", ref.APIVersion, ref.Kind, k.APIVersion)
	case !ScalableKind(k):
		return Kind{}, fmt.Errorf("kind: %s cannot be scaled: it has no spec.replicas", k.Kind)
	}
	return k, nil
}

func validateHPA(l *errList, h *HorizontalPodAutoscaler) {
	s := &h.Spec
	ref := s.ScaleTargetRef
	p := "spec.scaleTargetRef"
	if ref.Kind == "" {
		l.required(p + ".kind")
	} else if _, err := HPATargetKind(ref); err != nil {
		field, why, _ := strings.Cut(err.Error(), ": ")
		l.add(p+"."+field, "%s", why)
	}
	if ref.Name == "" {
		l.required(p + ".name")
	} else if err := ValidateDNSSubdomain(ref.Name); err != nil {
		l.invalid(p+".name", ref.Name, err.Error())
	}
	minReplicas := int32(1)
	if s.MinReplicas != nil {
		minReplicas = *s.MinReplicas
		if minReplicas < 1 {
			l.invalid("spec.minReplicas", minReplicas, "must be greater than or equal to 1")
		}
	}
	switch {
	case s.MaxReplicas < 1:
		l.invalid("spec.maxReplicas", s.MaxReplicas, "must be greater than or equal to 1")
	case s.MaxReplicas < minReplicas:
		l.invalid("spec.maxReplicas", s.MaxReplicas, fmt.Sprintf("must be greater than or equal to `minReplicas` (%d)", minReplicas))
	}
	if len(s.Metrics) > maxHPAMetrics {
		l.add("spec.metrics", "too many: %d, must have at most %d", len(s.Metrics), maxHPAMetrics)
	}
	seen := map[string]bool{}
	for i, m := range s.Metrics {
		validateMetricSpec(l, m, fmt.Sprintf("spec.metrics[%d]", i), seen)
	}
	if b := s.Behavior; b != nil {
		validateScalingRules(l, b.ScaleUp, "spec.behavior.scaleUp")
		validateScalingRules(l, b.ScaleDown, "spec.behavior.scaleDown")
	}
}

func validateMetricSpec(l *errList, m MetricSpec, p string, seen map[string]bool) {
	switch m.Type {
	case ResourceMetricSourceType:
	case "":
		l.required(p + ".type")
		return
	case PodsMetricSourceType, ObjectMetricSourceType, ExternalMetricSourceType, ContainerResourceMetricSourceType:
		l.add(p+".type", "unsupported value %q: only Resource metrics (cpu, memory) are supported: agents report no custom, external or per-container metrics (docs/autoscaling.md)", m.Type)
		return
	default:
		l.unsupported(p+".type", m.Type, ResourceMetricSourceType)
		return
	}
	for _, other := range []struct {
		name string
		set  bool
	}{{"pods", m.Pods != nil}, {"object", m.Object != nil}, {"external", m.External != nil}, {"containerResource", m.ContainerResource != nil}} {
		if other.set {
			l.add(p+"."+other.name, "forbidden: must be empty when type is Resource")
		}
	}
	r := m.Resource
	if r == nil {
		l.add(p+".resource", "required when type is Resource")
		return
	}
	switch r.Name {
	case "cpu", "memory":
		if seen[r.Name] {
			l.add(p+".resource.name", "duplicate: %q is already a metric of this autoscaler", r.Name)
		}
		seen[r.Name] = true
	case "":
		l.required(p + ".resource.name")
	default:
		l.unsupported(p+".resource.name", r.Name, "cpu", "memory")
	}
	t := r.Target
	tp := p + ".resource.target"
	switch t.Type {
	case UtilizationMetricType:
		if t.AverageUtilization == nil {
			l.add(tp+".averageUtilization", "required when type is Utilization")
		} else if *t.AverageUtilization < 1 {
			l.invalid(tp+".averageUtilization", *t.AverageUtilization, "must be greater than 0")
		}
		if t.AverageValue != nil {
			l.add(tp+".averageValue", "forbidden: must be empty when type is Utilization")
		}
	case AverageValueMetricType:
		if t.AverageValue == nil {
			l.add(tp+".averageValue", "required when type is AverageValue")
		} else if t.AverageValue.Sign() <= 0 {
			l.invalid(tp+".averageValue", string(*t.AverageValue), "must be positive")
		}
		if t.AverageUtilization != nil {
			l.add(tp+".averageUtilization", "forbidden: must be empty when type is AverageValue")
		}
	case ValueMetricType:
		l.add(tp+".type", "unsupported value %q for a Resource metric: supported values: %q, %q", t.Type, UtilizationMetricType, AverageValueMetricType)
	case "":
		l.required(tp + ".type")
	default:
		l.unsupported(tp+".type", t.Type, UtilizationMetricType, AverageValueMetricType)
	}
	if t.Value != nil {
		l.add(tp+".value", "forbidden: a Resource metric targets averageUtilization or averageValue")
	}
}

func validateScalingRules(l *errList, r *HPAScalingRules, p string) {
	if r == nil {
		return
	}
	if w := r.StabilizationWindowSeconds; w != nil && (*w < 0 || *w > MaxHPAStabilizationWindow) {
		l.invalid(p+".stabilizationWindowSeconds", *w, fmt.Sprintf("must be from 0 to %d", MaxHPAStabilizationWindow))
	}
	if sp := r.SelectPolicy; sp != nil && !oneOf(*sp, MaxChangePolicySelect, MinChangePolicySelect, DisabledPolicySelect) {
		l.unsupported(p+".selectPolicy", *sp, MaxChangePolicySelect, MinChangePolicySelect, DisabledPolicySelect)
	}
	if len(r.Policies) > maxHPAPoliciesPerScalingRuleSet {
		l.add(p+".policies", "too many: %d, must have at most %d", len(r.Policies), maxHPAPoliciesPerScalingRuleSet)
	}
	for i, pol := range r.Policies {
		pp := fmt.Sprintf("%s.policies[%d]", p, i)
		switch pol.Type {
		case PodsScalingPolicy, PercentScalingPolicy:
		case "":
			l.required(pp + ".type")
		default:
			l.unsupported(pp+".type", pol.Type, PodsScalingPolicy, PercentScalingPolicy)
		}
		if pol.Value <= 0 {
			l.invalid(pp+".value", pol.Value, "must be greater than 0")
		}
		if pol.PeriodSeconds <= 0 || pol.PeriodSeconds > MaxHPAScalingPolicyPeriod {
			l.invalid(pp+".periodSeconds", pol.PeriodSeconds, fmt.Sprintf("must be from 1 to %d", MaxHPAScalingPolicyPeriod))
		}
	}
}
