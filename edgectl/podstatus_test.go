package edgectl

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func twoContainerPod() *manifests.Pod {
	return &manifests.Pod{Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "a"}, {Name: "b"}}}}
}

func TestSummarizePod(t *testing.T) {
	running := manifests.ContainerState{Running: &manifests.ContainerStateRunning{}}
	finished := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name         string
		mutate       func(p *manifests.Pod)
		wantReady    string
		wantStatus   string
		wantRestarts int32
	}{
		{"no status", func(p *manifests.Pod) {}, "0/2", "Pending", 0},
		{"running and ready", func(p *manifests.Pod) {
			p.Status.Phase = "Running"
			p.Status.ContainerStatuses = []manifests.ContainerStatus{
				{Name: "a", Ready: true, State: running},
				{Name: "b", Ready: true, State: running, RestartCount: 2},
			}
		}, "2/2", "Running", 2},
		{"waiting reason wins", func(p *manifests.Pod) {
			p.Status.Phase = "Running"
			p.Status.ContainerStatuses = []manifests.ContainerStatus{
				{Name: "a", Ready: true, State: running},
				{Name: "b", State: manifests.ContainerState{Waiting: &manifests.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}, RestartCount: 4,
					LastTerminationState: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{ExitCode: 1, FinishedAt: finished}}},
			}
		}, "1/2", "CrashLoopBackOff", 4},
		{"terminated with reason", func(p *manifests.Pod) {
			p.Status.Phase = "Succeeded"
			p.Status.ContainerStatuses = []manifests.ContainerStatus{
				{Name: "a", State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{Reason: "Completed"}}},
				{Name: "b", State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{Reason: "Completed"}}},
			}
		}, "0/2", "Completed", 0},
		{"terminated without reason", func(p *manifests.Pod) {
			p.Status.Phase = "Failed"
			p.Status.ContainerStatuses = []manifests.ContainerStatus{
				{Name: "a", State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{ExitCode: 3}}},
			}
		}, "0/2", "ExitCode:3", 0},
		{"signal", func(p *manifests.Pod) {
			p.Status.ContainerStatuses = []manifests.ContainerStatus{
				{Name: "a", State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{ExitCode: 137, Signal: 9}}},
			}
		}, "0/2", "Signal:9", 0},
		{"completed but one still running and pod ready", func(p *manifests.Pod) {
			p.Status.Phase = "Running"
			p.Status.Conditions = []manifests.PodCondition{{Type: "Ready", Status: "True"}}
			p.Status.ContainerStatuses = []manifests.ContainerStatus{
				{Name: "a", Ready: true, State: running},
				{Name: "b", State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{Reason: "Completed"}}},
			}
		}, "1/2", "Running", 0},
		{"completed but one still running, not ready", func(p *manifests.Pod) {
			p.Status.Phase = "Running"
			p.Status.ContainerStatuses = []manifests.ContainerStatus{
				{Name: "a", Ready: true, State: running},
				{Name: "b", State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{Reason: "Completed"}}},
			}
		}, "1/2", "NotReady", 0},
		{"pod reason", func(p *manifests.Pod) {
			p.Status.Phase = "Failed"
			p.Status.Reason = "DeadlineExceeded"
		}, "0/2", "DeadlineExceeded", 0},
		{"init container running", func(p *manifests.Pod) {
			p.Spec.InitContainers = []manifests.Container{{Name: "i1"}, {Name: "i2"}}
			p.Status.Phase = "Pending"
			p.Status.InitContainerStatuses = []manifests.ContainerStatus{
				{Name: "i1", State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{ExitCode: 0}}},
				{Name: "i2", State: running},
			}
		}, "0/2", "Init:1/2", 0},
		{"init container failed", func(p *manifests.Pod) {
			p.Spec.InitContainers = []manifests.Container{{Name: "i1"}}
			p.Status.InitContainerStatuses = []manifests.ContainerStatus{
				{Name: "i1", RestartCount: 3, State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{ExitCode: 2}}},
			}
		}, "0/2", "Init:ExitCode:2", 3},
		{"init container waiting", func(p *manifests.Pod) {
			p.Spec.InitContainers = []manifests.Container{{Name: "i1"}}
			p.Status.InitContainerStatuses = []manifests.ContainerStatus{
				{Name: "i1", State: manifests.ContainerState{Waiting: &manifests.ContainerStateWaiting{Reason: "ErrImagePull"}}},
			}
		}, "0/2", "Init:ErrImagePull", 0},
		{"terminating", func(p *manifests.Pod) {
			now := time.Now()
			p.Status.Phase = "Running"
			p.DeletionTimestamp = &now
		}, "0/2", "Terminating", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := twoContainerPod()
			tc.mutate(p)
			s := summarizePod(p)
			if s.Ready != tc.wantReady || s.Status != tc.wantStatus || s.Restarts != tc.wantRestarts {
				t.Errorf("got ready %q status %q restarts %d, want %q %q %d", s.Ready, s.Status, s.Restarts, tc.wantReady, tc.wantStatus, tc.wantRestarts)
			}
		})
	}
}

func TestRestartsColumn(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 10, 0, 0, time.UTC)
	if got := restartsColumn(podSummary{Restarts: 0}, now); got != "0" {
		t.Errorf("no restarts: %q", got)
	}
	s := podSummary{Restarts: 4, LastRestart: now.Add(-5 * time.Minute)}
	if got := restartsColumn(s, now); got != "4 (5m ago)" {
		t.Errorf("restarts: %q", got)
	}
}

func TestNodeStatus(t *testing.T) {
	n := &manifests.Node{}
	if got := nodeStatus(n); got != "Unknown" {
		t.Errorf("no conditions: %q", got)
	}
	n.Status.Conditions = []manifests.NodeCondition{{Type: "Ready", Status: "True"}}
	if got := nodeStatus(n); got != "Ready" {
		t.Errorf("ready: %q", got)
	}
	n.Status.Conditions[0].Status = "Unknown"
	n.Spec.Unschedulable = true
	if got := nodeStatus(n); got != "NotReady,SchedulingDisabled" {
		t.Errorf("not ready, cordoned: %q", got)
	}
}
