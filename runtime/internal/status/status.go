// Package status holds container-status helpers the runtimes share:
// filtering and ordering ListContainers results, and the lifecycle record
// of in-process containers.
package status

import (
	"sort"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
)

// Matches tells whether a container status passes a ListContainers filter.
func Matches(st runtime.ContainerStatus, f runtime.ContainerFilter) bool {
	if f.SandboxID != "" && st.SandboxID != f.SandboxID {
		return false
	}
	if f.State != nil && st.State != *f.State {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := st.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Select returns the statuses that pass the filter, oldest first (ties by
// ID), as ListContainers reports them.
func Select(all []runtime.ContainerStatus, f runtime.ContainerFilter) []runtime.ContainerStatus {
	var out []runtime.ContainerStatus
	for _, st := range all {
		if Matches(st, f) {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Lifecycle is the changing part of an in-process container's status. The
// runtime guards it with the container's lock.
type Lifecycle struct {
	State      runtime.ContainerState
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int32
	Reason     string
	Message    string
}

// EndUnstarted settles a stop request for a container that is not
// running: a created one is marked exited with the given code, reason and
// message. It returns false when the container runs and must be stopped.
func (l *Lifecycle) EndUnstarted(code int32, reason, message string) bool {
	switch l.State {
	case runtime.StateCreated:
		now := time.Now()
		l.State, l.StartedAt, l.FinishedAt = runtime.StateExited, now, now
		l.ExitCode, l.Reason, l.Message = code, reason, message
		return true
	case runtime.StateExited:
		return true
	}
	return false
}

// Apply copies the lifecycle into st.
func (l *Lifecycle) Apply(st *runtime.ContainerStatus) {
	st.State, st.StartedAt, st.FinishedAt = l.State, l.StartedAt, l.FinishedAt
	st.ExitCode, st.Reason, st.Message = l.ExitCode, l.Reason, l.Message
}
