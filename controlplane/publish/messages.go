package publish

import (
	"slices"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/nodes"
	"github.com/edgeorch/edgeorch/manifests"
)

// Schema identifiers, the "schema" field of each message
// (docs/schemas/<name>.json).
const (
	SchemaEvent      = "edge.events.v1"
	SchemaPodStatus  = "edge.status.v1.pod"
	SchemaNodeStatus = "edge.status.v1.node"
)

// Node states in NodeStatus.State.
const (
	NodeReady       = "Ready"
	NodeNotReady    = "NotReady"
	NodeUnreachable = "Unreachable"
	NodeDeleted     = "Deleted"
)

// ObjectRef names the object an event is about.
type ObjectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	FieldPath string `json:"fieldPath,omitempty"`
}

// Event is the message on messaging.EventSubject (docs/schemas/event.v1.json).
type Event struct {
	Schema          string    `json:"schema"`
	Namespace       string    `json:"namespace,omitempty"`
	Name            string    `json:"name"`
	UID             string    `json:"uid,omitempty"`
	ResourceVersion string    `json:"resourceVersion,omitempty"`
	InvolvedObject  ObjectRef `json:"involvedObject"`
	Type            string    `json:"type,omitempty"`
	Reason          string    `json:"reason,omitempty"`
	Message         string    `json:"message,omitempty"`
	Count           int32     `json:"count,omitempty"`
	Component       string    `json:"component,omitempty"`
	Host            string    `json:"host,omitempty"`
	FirstTimestamp  time.Time `json:"firstTimestamp,omitzero"`
	LastTimestamp   time.Time `json:"lastTimestamp,omitzero"`
}

// Condition is a condition in a status summary.
type Condition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Container summarises one container of a pod.
type Container struct {
	Name         string `json:"name"`
	Init         bool   `json:"init,omitempty"`
	State        string `json:"state"` // waiting, running, terminated or unknown
	Reason       string `json:"reason,omitempty"`
	ExitCode     *int32 `json:"exitCode,omitempty"`
	Ready        bool   `json:"ready"`
	RestartCount int32  `json:"restartCount"`
	Image        string `json:"image,omitempty"`
}

// PodSummary is the part of PodStatus whose change is published.
type PodSummary struct {
	Node       string      `json:"node,omitempty"`
	Phase      string      `json:"phase"`
	Reason     string      `json:"reason,omitempty"`
	Message    string      `json:"message,omitempty"`
	PodIP      string      `json:"podIP,omitempty"`
	Deleted    bool        `json:"deleted,omitempty"`
	Conditions []Condition `json:"conditions,omitempty"`
	Containers []Container `json:"containers,omitempty"`
}

// PodStatus is the message on messaging.PodStatusSubject
// (docs/schemas/pod-status.v1.json).
type PodStatus struct {
	Schema          string    `json:"schema"`
	Namespace       string    `json:"namespace"`
	Name            string    `json:"name"`
	UID             string    `json:"uid,omitempty"`
	ResourceVersion string    `json:"resourceVersion,omitempty"`
	Time            time.Time `json:"time"`
	PodSummary
}

// NodeSummary is the part of NodeStatus whose change is published.
type NodeSummary struct {
	State string `json:"state"`
}

// NodeStatus is the message on messaging.NodeStatusSubject
// (docs/schemas/node-status.v1.json).
type NodeStatus struct {
	Schema          string    `json:"schema"`
	Name            string    `json:"name"`
	UID             string    `json:"uid,omitempty"`
	ResourceVersion string    `json:"resourceVersion,omitempty"`
	Time            time.Time `json:"time"`
	NodeSummary
	Reason        string    `json:"reason,omitempty"`
	Message       string    `json:"message,omitempty"`
	LastHeartbeat time.Time `json:"lastHeartbeat,omitzero"`
}

func eventMessage(e *manifests.Event) Event {
	io := e.InvolvedObject
	return Event{
		Schema: SchemaEvent, Namespace: e.Namespace, Name: e.Name, UID: e.UID,
		ResourceVersion: e.ResourceVersion,
		InvolvedObject:  ObjectRef{Kind: io.Kind, Namespace: io.Namespace, Name: io.Name, UID: io.UID, FieldPath: io.FieldPath},
		Type:            e.Type, Reason: e.Reason, Message: e.Message, Count: e.Count,
		Component: e.Source.Component, Host: e.Source.Host,
		FirstTimestamp: e.FirstTimestamp, LastTimestamp: e.LastTimestamp,
	}
}

func podSummary(p *manifests.Pod) PodSummary {
	s := PodSummary{
		Node: p.Spec.NodeName, Phase: p.Status.Phase, Reason: p.Status.Reason,
		Message: p.Status.Message, PodIP: p.Status.PodIP,
	}
	if s.Phase == "" {
		s.Phase = "Pending"
	}
	for _, c := range p.Status.Conditions {
		s.Conditions = append(s.Conditions, Condition{Type: c.Type, Status: c.Status, Reason: c.Reason})
	}
	add := func(list []manifests.ContainerStatus, init bool) {
		for _, c := range list {
			sc := Container{Name: c.Name, Init: init, Ready: c.Ready, RestartCount: c.RestartCount, Image: c.Image, State: "unknown"}
			switch st := c.State; {
			case st.Running != nil:
				sc.State = "running"
			case st.Waiting != nil:
				sc.State, sc.Reason = "waiting", st.Waiting.Reason
			case st.Terminated != nil:
				code := st.Terminated.ExitCode
				sc.State, sc.Reason, sc.ExitCode = "terminated", st.Terminated.Reason, &code
			}
			s.Containers = append(s.Containers, sc)
		}
	}
	add(p.Status.InitContainerStatuses, true)
	add(p.Status.ContainerStatuses, false)
	return s
}

// nodeState reads the lifecycle state the node controller recorded: the
// Ready condition and the unreachable taint.
func nodeState(n *manifests.Node) (state string, cond manifests.NodeCondition) {
	if slices.ContainsFunc(n.Spec.Taints, func(t manifests.Taint) bool { return t.Key == nodes.TaintUnreachable }) {
		state = NodeUnreachable
	}
	for _, c := range n.Status.Conditions {
		if c.Type == manifests.NodeReady {
			cond = c
		}
	}
	if state == "" {
		state = NodeNotReady
		if cond.Status == manifests.ConditionTrue {
			state = NodeReady
		}
	}
	return state, cond
}

func nodeMessage(n *manifests.Node, now time.Time) NodeStatus {
	state, cond := nodeState(n)
	return NodeStatus{
		Schema: SchemaNodeStatus, Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion,
		Time: now, NodeSummary: NodeSummary{State: state},
		Reason: cond.Reason, Message: cond.Message, LastHeartbeat: cond.LastHeartbeatTime,
	}
}
