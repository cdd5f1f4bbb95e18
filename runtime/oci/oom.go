package oci

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupDirs are the host directories of a container's cgroups: the v1
// memory and cpuacct hierarchies, or the v2 unified one (a hybrid host has
// both; controllers live where the hierarchy that has them is mounted).
type cgroupDirs struct {
	Memory  string `json:"memory,omitempty"`
	CPUAcct string `json:"cpuacct,omitempty"`
	Unified string `json:"unified,omitempty"`
}

// findCgroups reads where the process pid is in each hierarchy
// (/proc/<pid>/cgroup) and where the hierarchies are mounted
// (/proc/self/mountinfo).
func findCgroups(pid int) (cgroupDirs, error) {
	var dirs cgroupDirs
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return dirs, fmt.Errorf("read cgroups of %d: %w", pid, err)
	}
	paths := map[string]string{} // controller ("" for v2) -> path
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			paths[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return dirs, err
	}
	join := func(m cgroupMount, p string) string {
		rel, err := filepath.Rel(m.root, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			rel = p
		}
		return filepath.Join(m.point, rel)
	}
	for _, m := range mounts {
		switch {
		case m.v2:
			if p, ok := paths[""]; ok {
				dirs.Unified = join(m, p)
			}
		default:
			if m.controllers["memory"] {
				dirs.Memory = join(m, paths["memory"])
			}
			if m.controllers["cpuacct"] {
				dirs.CPUAcct = join(m, paths["cpuacct"])
			}
		}
	}
	return dirs, nil
}

type cgroupMount struct {
	point, root string
	v2          bool
	controllers map[string]bool
}

func cgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var out []cgroupMount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		switch qf[0] {
		case "cgroup2":
			out = append(out, cgroupMount{point: pf[4], root: pf[3], v2: true})
		case "cgroup":
			m := cgroupMount{point: pf[4], root: pf[3], controllers: map[string]bool{}}
			for _, o := range strings.Split(qf[2], ",") {
				m.controllers[o] = true
			}
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

// oomKilled tells whether the kernel's OOM killer killed a process of the
// cgroup: v2 memory.events or v1 memory.oom_control, key oom_kill.
func oomKilled(dirs cgroupDirs) bool {
	for _, f := range []string{
		filepath.Join(dirs.Unified, "memory.events"),
		filepath.Join(dirs.Memory, "memory.oom_control"),
	} {
		if filepath.Dir(f) == "." || filepath.Dir(f) == "" {
			continue
		}
		if n, ok := readKey(f, "oom_kill"); ok && n > 0 {
			return true
		}
	}
	return false
}

// readKey reads "key value" from a flat-keyed cgroup file.
func readKey(path, key string) (uint64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// readUint reads a cgroup file holding one number.
func readUint(path string) (uint64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	return n, err == nil
}
