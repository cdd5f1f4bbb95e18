package edgectl

import (
	"fmt"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// podSummary is what the pods table shows about a pod.
type podSummary struct {
	Ready       string // "1/1"
	Status      string // Running, Completed, CrashLoopBackOff, Init:0/1, ...
	Restarts    int32
	LastRestart time.Time // when the most recently restarted container last ended
}

// summarizePod computes READY, STATUS and RESTARTS the way kubectl does.
func summarizePod(p *manifests.Pod) podSummary {
	total := len(p.Spec.Containers)
	ready := 0
	var restarts int32
	var last time.Time
	reason := p.Status.Phase
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	if reason == "" {
		reason = manifests.PodPending
	}
	noteLast := func(cs manifests.ContainerStatus) {
		if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(last) {
			last = t.FinishedAt
		}
	}

	initializing := false
	for i, cs := range p.Status.InitContainerStatuses {
		restarts += cs.RestartCount
		noteLast(cs)
		switch {
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
			continue
		case cs.State.Terminated != nil:
			switch {
			case cs.State.Terminated.Reason != "":
				reason = "Init:" + cs.State.Terminated.Reason
			case cs.State.Terminated.Signal != 0:
				reason = fmt.Sprintf("Init:Signal:%d", cs.State.Terminated.Signal)
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", cs.State.Terminated.ExitCode)
			}
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + cs.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers))
		}
		initializing = true
		break
	}

	if !initializing {
		restarts = 0
		last = time.Time{}
		hasRunning := false
		for i := len(p.Status.ContainerStatuses) - 1; i >= 0; i-- {
			cs := p.Status.ContainerStatuses[i]
			restarts += cs.RestartCount
			noteLast(cs)
			switch {
			case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
				reason = cs.State.Waiting.Reason
			case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
				reason = cs.State.Terminated.Reason
			case cs.State.Terminated != nil && cs.State.Terminated.Signal != 0:
				reason = fmt.Sprintf("Signal:%d", cs.State.Terminated.Signal)
			case cs.State.Terminated != nil:
				reason = fmt.Sprintf("ExitCode:%d", cs.State.Terminated.ExitCode)
			case cs.Ready && cs.State.Running != nil:
				hasRunning = true
				ready++
			}
		}
		if reason == "Completed" && hasRunning {
			if podConditionTrue(p, manifests.PodReady) {
				reason = manifests.PodRunning
			} else {
				reason = "NotReady"
			}
		}
	}
	if p.DeletionTimestamp != nil {
		if p.Status.Reason == "NodeLost" {
			reason = manifests.PodUnknown
		} else {
			reason = "Terminating"
		}
	}
	return podSummary{
		Ready:       fmt.Sprintf("%d/%d", ready, total),
		Status:      reason,
		Restarts:    restarts,
		LastRestart: last,
	}
}

func podConditionTrue(p *manifests.Pod, condType string) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == condType {
			return c.Status == manifests.ConditionTrue
		}
	}
	return false
}

// restartsColumn is kubectl's RESTARTS cell: "2 (5m ago)".
func restartsColumn(s podSummary, now time.Time) string {
	if s.Restarts > 0 && !s.LastRestart.IsZero() {
		return fmt.Sprintf("%d (%s ago)", s.Restarts, humanDuration(now.Sub(s.LastRestart)))
	}
	return fmt.Sprint(s.Restarts)
}

// nodeStatus is the STATUS column of the nodes table.
func nodeStatus(n *manifests.Node) string {
	status := "Unknown"
	for _, c := range n.Status.Conditions {
		if c.Type == manifests.NodeReady {
			if c.Status == manifests.ConditionTrue {
				status = "Ready"
			} else {
				status = "NotReady"
			}
		}
	}
	if n.Spec.Unschedulable {
		status += ",SchedulingDisabled"
	}
	return status
}
