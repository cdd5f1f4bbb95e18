// Package podstatus computes a pod's status from its containers' states the
// way the kubelet does: phase, conditions and per-container readiness.
package podstatus

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// Input is what the agent observed of a pod.
type Input struct {
	Pod *manifests.Pod
	// Containers are the statuses of the pod's containers; Ready and Started
	// are filled in by Compute.
	Containers []manifests.ContainerStatus
	// InitContainers are the statuses of the init containers.
	InitContainers []manifests.ContainerStatus
	HostIP         string
	PodIP          string
	StartTime      time.Time
	// Message and Reason are pod-level (e.g. a missing runtime handler).
	Message, Reason string
	// Probes are the probe results of running containers by name; a
	// running container without an entry is started and ready.
	Probes map[string]ProbeResult
}

// ProbeResult is what a container's startup and readiness probes say.
type ProbeResult struct {
	Started, Ready bool
}

// Compute returns the pod status. prev (may be nil) supplies the
// lastTransitionTime of conditions whose status did not change.
func Compute(in Input, prev *manifests.PodStatus, now time.Time) manifests.PodStatus {
	now = now.UTC().Truncate(time.Second)
	byName := map[string]manifests.ContainerStatus{}
	for _, cs := range in.Containers {
		byName[cs.Name] = cs
	}
	var statuses []manifests.ContainerStatus
	var unready []string
	for _, c := range in.Pod.Spec.Containers {
		cs, ok := byName[c.Name]
		if !ok {
			cs = manifests.ContainerStatus{Name: c.Name, Image: c.Image,
				State: manifests.ContainerState{Waiting: &manifests.ContainerStateWaiting{Reason: "ContainerCreating"}}}
		}
		running := cs.State.Running != nil
		cs.Ready = running
		started := running
		if pr, ok := in.Probes[c.Name]; ok && running {
			cs.Ready, started = pr.Ready && pr.Started, pr.Started
		}
		cs.Started = &started
		if !cs.Ready {
			unready = append(unready, c.Name)
		}
		statuses = append(statuses, cs)
	}
	var initStatuses []manifests.ContainerStatus
	var incomplete []string
	initByName := map[string]manifests.ContainerStatus{}
	for _, cs := range in.InitContainers {
		initByName[cs.Name] = cs
	}
	for _, c := range in.Pod.Spec.InitContainers {
		cs, ok := initByName[c.Name]
		if !ok {
			cs = manifests.ContainerStatus{Name: c.Name, Image: c.Image,
				State: manifests.ContainerState{Waiting: &manifests.ContainerStateWaiting{Reason: "PodInitializing"}}}
		}
		cs.Ready = completed(cs)
		started := cs.State.Running != nil
		cs.Started = &started
		if !cs.Ready {
			incomplete = append(incomplete, c.Name)
		}
		initStatuses = append(initStatuses, cs)
	}
	phase := Phase(in.Pod, statuses)
	if p := initPhase(in.Pod, initStatuses); p != "" {
		phase = p
	}
	st := manifests.PodStatus{
		Phase:                 phase,
		InitContainerStatuses: initStatuses,
		HostIP:                in.HostIP,
		PodIP:                 in.PodIP,
		ContainerStatuses:     statuses,
		Message:               in.Message,
		Reason:                in.Reason,
		ObservedGeneration:    in.Pod.Generation,
	}
	if !in.StartTime.IsZero() {
		t := in.StartTime.UTC().Truncate(time.Second)
		st.StartTime = &t
	}
	ready := cond(manifests.ContainersReady, manifests.ConditionTrue, "", "")
	if len(unready) > 0 {
		ready = cond(manifests.ContainersReady, manifests.ConditionFalse, "ContainersNotReady",
			fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " ")))
	}
	if st.Phase == manifests.PodSucceeded || st.Phase == manifests.PodFailed {
		ready = cond(manifests.ContainersReady, manifests.ConditionFalse, "PodCompleted", "")
	}
	podReady := ready
	podReady.Type = manifests.PodReady
	initialized := cond(manifests.PodInitialized, manifests.ConditionTrue, "", "")
	if len(incomplete) > 0 {
		initialized = cond(manifests.PodInitialized, manifests.ConditionFalse, "ContainersNotInitialized",
			fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(incomplete, " ")))
	}
	st.Conditions = []manifests.PodCondition{
		initialized,
		podReady,
		ready,
		cond(manifests.PodScheduled, manifests.ConditionTrue, "", ""),
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		c.LastTransitionTime = now
		if prev != nil {
			for _, p := range prev.Conditions {
				if p.Type == c.Type && p.Status == c.Status && !p.LastTransitionTime.IsZero() {
					c.LastTransitionTime = p.LastTransitionTime
				}
			}
		}
	}
	return st
}

func cond(typ, status, reason, message string) manifests.PodCondition {
	return manifests.PodCondition{Type: typ, Status: status, Reason: reason, Message: message}
}

func completed(cs manifests.ContainerStatus) bool {
	return cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
}

// initPhase is the phase the init containers impose: Failed when one
// failed for good (restartPolicy Never), Pending while any is incomplete,
// "" once all completed.
func initPhase(pod *manifests.Pod, statuses []manifests.ContainerStatus) string {
	pending := false
	for _, cs := range statuses {
		if completed(cs) {
			continue
		}
		if cs.State.Terminated != nil && pod.Spec.RestartPolicy == manifests.RestartNever {
			return manifests.PodFailed
		}
		pending = true
	}
	if pending {
		return manifests.PodPending
	}
	return ""
}

// Phase is the kubelet's getPhase for regular containers.
func Phase(pod *manifests.Pod, statuses []manifests.ContainerStatus) string {
	var waiting, running, stopped, succeeded, unknown int
	byName := map[string]manifests.ContainerStatus{}
	for _, cs := range statuses {
		byName[cs.Name] = cs
	}
	for _, c := range pod.Spec.Containers {
		cs, ok := byName[c.Name]
		switch {
		case !ok:
			unknown++
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	switch {
	case waiting > 0:
		return manifests.PodPending
	case running > 0 && unknown == 0:
		return manifests.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		switch pod.Spec.RestartPolicy {
		case manifests.RestartNever:
			if succeeded == stopped {
				return manifests.PodSucceeded
			}
			return manifests.PodFailed
		case manifests.RestartOnFailure:
			if succeeded == stopped {
				return manifests.PodSucceeded
			}
			return manifests.PodRunning
		default:
			return manifests.PodRunning
		}
	}
	return manifests.PodPending
}

// Equal reports whether two statuses say the same thing: condition order
// and the timestamps of unchanged conditions do not matter.
func Equal(a, b *manifests.PodStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return canonical(*a) == canonical(*b)
}

func canonical(s manifests.PodStatus) string {
	conds := append([]manifests.PodCondition(nil), s.Conditions...)
	for i := range conds {
		conds[i].LastTransitionTime = time.Time{}
		conds[i].LastProbeTime = time.Time{}
	}
	sort.Slice(conds, func(i, j int) bool { return conds[i].Type < conds[j].Type })
	s.Conditions = conds
	norm := func(t *time.Time) {
		if t != nil && !t.IsZero() {
			*t = t.UTC().Truncate(time.Second)
		}
	}
	if s.StartTime != nil {
		t := *s.StartTime
		norm(&t)
		s.StartTime = &t
	}
	cs := append([]manifests.ContainerStatus(nil), s.ContainerStatuses...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	s.ContainerStatuses = cs
	raw, _ := json.Marshal(s)
	return string(raw)
}
