package oci

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
)

var _ runtime.Statser = (*Runtime)(nil)

// ContainerStats implements runtime.Statser from the container's cgroups:
// memory usage (v1 memory.usage_in_bytes, v2 memory.current) and CPU time
// (v1 cpuacct.usage, v2 cpu.stat usage_usec). A container that is not
// running uses nothing.
func (r *Runtime) ContainerStats(ctx context.Context, containerID string) (runtime.ContainerStats, error) {
	c, err := r.container(containerID)
	if err != nil {
		return runtime.ContainerStats{}, fmt.Errorf("stats: %w", err)
	}
	st := runtime.ContainerStats{Timestamp: time.Now()}
	status, started, err := r.status(ctx, c)
	if err != nil {
		return st, fmt.Errorf("stats of container %s: %w", containerID, err)
	}
	if status.State != runtime.StateRunning || started == nil {
		return st, nil
	}
	st.MemoryBytes, st.CPUNanoSecs = cgroupUsage(started.Cgroups)
	return st, nil
}

func cgroupUsage(d cgroupDirs) (mem, cpuNs uint64) {
	var ok bool
	if d.Memory != "" {
		mem, ok = readUint(filepath.Join(d.Memory, "memory.usage_in_bytes"))
	}
	if !ok && d.Unified != "" {
		mem, _ = readUint(filepath.Join(d.Unified, "memory.current"))
	}
	ok = false
	if d.CPUAcct != "" {
		cpuNs, ok = readUint(filepath.Join(d.CPUAcct, "cpuacct.usage"))
	}
	if !ok && d.Unified != "" {
		if us, ok := readKey(filepath.Join(d.Unified, "cpu.stat"), "usage_usec"); ok {
			cpuNs = us * 1000
		}
	}
	return mem, cpuNs
}
