package dashboard

import (
	"fmt"
	"slices"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/nodes"
	"github.com/edgeorch/edgeorch/manifests"
)

// Node states, as the node controller records them (docs/node-lifecycle.md).
const (
	NodeReady       = "Ready"
	NodeNotReady    = "NotReady"
	NodeUnreachable = "Unreachable"
)

// NodeRow is one node of /api/nodes.
type NodeRow struct {
	Name string `json:"name"`
	// State is Ready, NotReady or Unreachable; Online is State == Ready.
	State  string `json:"state"`
	Online bool   `json:"online"`
	Reason string `json:"reason,omitempty"`
	// LastSeen is the Ready condition's lastHeartbeatTime; SeenAgo is
	// the seconds since then by the control plane's clock (-1: never).
	LastSeen      time.Time `json:"lastSeen,omitzero"`
	SeenAgo       int64     `json:"seenAgo"`
	Pods          int       `json:"pods"`
	Arch          string    `json:"arch,omitempty"`
	OS            string    `json:"os,omitempty"`
	Runtimes      []string  `json:"runtimes,omitempty"`
	Unschedulable bool      `json:"unschedulable,omitempty"`
}

// nodeState reads the lifecycle state the node controller recorded: the
// unreachable taint, then the Ready condition.
func nodeState(n *manifests.Node) (string, manifests.NodeCondition) {
	var cond manifests.NodeCondition
	for _, c := range n.Status.Conditions {
		if c.Type == manifests.NodeReady {
			cond = c
		}
	}
	switch {
	case slices.ContainsFunc(n.Spec.Taints, func(t manifests.Taint) bool { return t.Key == nodes.TaintUnreachable }):
		return NodeUnreachable, cond
	case cond.Status != manifests.ConditionTrue,
		slices.ContainsFunc(n.Spec.Taints, func(t manifests.Taint) bool { return t.Key == nodes.TaintNotReady }):
		return NodeNotReady, cond
	}
	return NodeReady, cond
}

func nodeRow(n *manifests.Node, pods int, now time.Time) NodeRow {
	state, cond := nodeState(n)
	r := NodeRow{
		Name: n.Name, State: state, Online: state == NodeReady, Reason: cond.Reason,
		LastSeen: cond.LastHeartbeatTime, SeenAgo: -1, Pods: pods,
		Arch: n.Status.NodeInfo.Architecture, OS: n.Status.NodeInfo.OperatingSystem,
		Unschedulable: n.Spec.Unschedulable,
	}
	if !cond.LastHeartbeatTime.IsZero() {
		r.SeenAgo = max(int64(now.Sub(cond.LastHeartbeatTime)/time.Second), 0)
	}
	for _, h := range n.Status.RuntimeHandlers {
		r.Runtimes = append(r.Runtimes, h.Name)
	}
	return r
}

// PodRow is one pod of /api/pods.
type PodRow struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Node      string `json:"node,omitempty"`
	Phase     string `json:"phase"`
	// Status is what kubectl's STATUS column shows: a container's waiting
	// or terminated reason when there is one, else the phase.
	Status   string    `json:"status"`
	Ready    string    `json:"ready"`
	Restarts int32     `json:"restarts"`
	Runtime  string    `json:"runtime,omitempty"`
	Created  time.Time `json:"created,omitzero"`
	Deleting bool      `json:"deleting,omitempty"`
}

func podRow(p *manifests.Pod) PodRow {
	r := PodRow{
		Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName, Phase: p.Status.Phase,
		Created: p.CreationTimestamp, Deleting: p.DeletionTimestamp != nil,
	}
	if p.Spec.RuntimeClassName != nil {
		r.Runtime = *p.Spec.RuntimeClassName
	}
	if r.Phase == "" {
		r.Phase = manifests.PodPending
	}
	r.Status = r.Phase
	if p.Status.Reason != "" {
		r.Status = p.Status.Reason
	}
	ready := 0
	for _, c := range p.Status.ContainerStatuses {
		r.Restarts += c.RestartCount
		if c.Ready {
			ready++
		}
		switch {
		case c.State.Waiting != nil && c.State.Waiting.Reason != "":
			r.Status = c.State.Waiting.Reason
		case c.State.Terminated != nil && c.State.Terminated.Reason != "" && r.Phase != manifests.PodSucceeded:
			r.Status = c.State.Terminated.Reason
		}
	}
	if r.Deleting {
		r.Status = "Terminating"
	}
	r.Ready = fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
	return r
}

// WorkloadRow is one workload of /api/workloads.
type WorkloadRow struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Desired pods (a Job: completions), Ready pods (a Job: succeeded),
	// UpToDate and Available as kubectl shows them.
	Desired   int32     `json:"desired"`
	Ready     int32     `json:"ready"`
	UpToDate  int32     `json:"upToDate"`
	Available int32     `json:"available"`
	Status    string    `json:"status,omitempty"`
	Created   time.Time `json:"created,omitzero"`
}

func workloadRow(o manifests.Object) (WorkloadRow, bool) {
	m := o.GetObjectMeta()
	r := WorkloadRow{Namespace: m.Namespace, Name: m.Name, Created: m.CreationTimestamp}
	switch w := o.(type) {
	case *manifests.Deployment:
		r.Kind, r.Desired = "Deployment", replicas(w.Spec.Replicas)
		r.Ready, r.UpToDate, r.Available = w.Status.ReadyReplicas, w.Status.UpdatedReplicas, w.Status.AvailableReplicas
		if w.Spec.Paused {
			r.Status = "Paused"
		}
	case *manifests.ReplicaSet:
		r.Kind, r.Desired = "ReplicaSet", replicas(w.Spec.Replicas)
		r.Ready, r.UpToDate, r.Available = w.Status.ReadyReplicas, w.Status.Replicas, w.Status.AvailableReplicas
	case *manifests.DaemonSet:
		r.Kind, r.Desired = "DaemonSet", w.Status.DesiredNumberScheduled
		r.Ready, r.UpToDate, r.Available = w.Status.NumberReady, w.Status.UpdatedNumberScheduled, w.Status.NumberAvailable
	case *manifests.Job:
		r.Kind, r.Desired = "Job", 1
		if w.Spec.Completions != nil {
			r.Desired = *w.Spec.Completions
		}
		r.Ready, r.Available = w.Status.Succeeded, w.Status.Active
		r.Status = "Running"
		for _, c := range w.Status.Conditions {
			if c.Status == manifests.ConditionTrue && (c.Type == "Complete" || c.Type == "Failed") {
				r.Status = c.Type
			}
		}
		if w.Status.Failed > 0 && r.Status == "Running" {
			r.Status = fmt.Sprintf("Running (%d failed)", w.Status.Failed)
		}
	default:
		return r, false
	}
	return r, true
}

func replicas(n *int32) int32 {
	if n == nil {
		return 1
	}
	return *n
}

// RolloutRow is one fleet Rollout of /api/rollouts, with its waves as
// `edgectl rollout status` shows them.
type RolloutRow struct {
	Namespace   string    `json:"namespace"`
	Name        string    `json:"name"`
	Target      string    `json:"target"`
	Phase       string    `json:"phase"`
	Revision    string    `json:"revision,omitempty"`
	Message     string    `json:"message,omitempty"`
	CurrentWave int32     `json:"currentWave"`
	Unit        string    `json:"unit"`
	Waves       []WaveRow `json:"waves"`
}

// WaveRow is the progress of one wave.
type WaveRow struct {
	Total   int32 `json:"total"`
	Updated int32 `json:"updated"`
	Ready   int32 `json:"ready"`
	Failed  int32 `json:"failed"`
	Offline int32 `json:"offline"`
	// State is done, in progress or pending.
	State string `json:"state"`
}

func rolloutRow(r *manifests.Rollout) RolloutRow {
	st := r.Status
	row := RolloutRow{
		Namespace: r.Namespace, Name: r.Name, Target: r.Spec.TargetRef.Kind + "/" + r.Spec.TargetRef.Name,
		Phase: st.Phase, Revision: st.Revision, Message: st.Message, CurrentWave: st.CurrentWave,
		Unit: "nodes", Waves: []WaveRow{},
	}
	if row.Phase == "" {
		row.Phase = "Pending"
	}
	if r.Spec.TargetRef.Kind == "Deployment" {
		row.Unit = "replicas"
	}
	for _, w := range st.Waves {
		wr := WaveRow{Total: w.Total, Updated: w.Updated, Ready: w.Ready, Failed: w.Failed, Offline: w.Offline, State: "pending"}
		switch {
		case !w.CompletedAt.IsZero():
			wr.State = "done"
		case !w.StartedAt.IsZero():
			wr.State = "in progress"
			if st.Phase != manifests.RolloutProgressing {
				wr.State = "stopped"
			}
		}
		row.Waves = append(row.Waves, wr)
	}
	return row
}

// EventRow is one Event of /api/events and of the stream.
type EventRow struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Reason    string    `json:"reason"`
	Object    string    `json:"object"`
	Message   string    `json:"message"`
	Count     int32     `json:"count"`
	Last      time.Time `json:"last,omitzero"`
}

func eventRow(e *manifests.Event) EventRow {
	obj := e.InvolvedObject.Kind + "/" + e.InvolvedObject.Name
	if e.InvolvedObject.Namespace != "" {
		obj = e.InvolvedObject.Kind + "/" + e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Name
	}
	last := e.LastTimestamp
	if last.IsZero() {
		last = e.FirstTimestamp
	}
	if last.IsZero() {
		last = e.CreationTimestamp
	}
	return EventRow{
		Namespace: e.Namespace, Name: e.Name, Type: e.Type, Reason: e.Reason, Object: obj,
		Message: e.Message, Count: max(e.Count, 1), Last: last,
	}
}
