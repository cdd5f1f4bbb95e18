package manifests

// apps/v1 ControllerRevision: a StatefulSet's pod template at one revision,
// kept so that pods below a rolling update's partition are recreated at
// the revision they had. Only the StatefulSet controller writes them.

// ControllerRevision is an immutable snapshot of a workload's template.
type ControllerRevision struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	// Data holds {"spec": {"template": ...}}, as Kubernetes' StatefulSet
	// revisions do (without Kubernetes' "$patch": "replace" marker).
	Data     ControllerRevisionData `json:"data,omitzero"`
	Revision int64                  `json:"revision"`
}

// ControllerRevisionData is the part of a StatefulSet a revision keeps.
type ControllerRevisionData struct {
	Spec ControllerRevisionSpec `json:"spec"`
}

// ControllerRevisionSpec holds the revision's pod template.
type ControllerRevisionSpec struct {
	Template PodTemplateSpec `json:"template"`
}
