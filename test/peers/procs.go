package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/edgeorch/edgeorch/test/bench/proc"
)

// procSet names a system's processes: the roots it started, every process
// whose executable lies under exeDir (K3s runs containerd and its shims from
// its data directory, and the shims leave its process tree), and all their
// descendants.
type procSet struct {
	roots  []int
	exeDir string
}

type procInfo struct {
	ppid int
	exe  string
}

func allProcs() map[int]procInfo {
	ents, _ := os.ReadDir("/proc")
	out := map[int]procInfo{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		out[pid] = procInfo{ppid: ppid, exe: exe}
	}
	return out
}

// pids lists the set's live processes.
func (s procSet) pids() []int {
	all := allProcs()
	in := map[int]bool{}
	for _, r := range s.roots {
		if _, ok := all[r]; ok {
			in[r] = true
		}
	}
	if s.exeDir != "" {
		for pid, p := range all {
			if strings.HasPrefix(p.exe, s.exeDir+"/") {
				in[pid] = true
			}
		}
	}
	// Descendants: repeat until no process is added.
	for added := true; added; {
		added = false
		for pid, p := range all {
			if !in[pid] && in[p.ppid] {
				in[pid], added = true, true
			}
		}
	}
	out := make([]int, 0, len(in))
	for pid := range in {
		out = append(out, pid)
	}
	return out
}

// pssKiB sums the proportional set size of the set's processes: pages
// shared among them are counted once in total.
func (s procSet) pssKiB() int {
	total := 0
	for _, pid := range s.pids() {
		if n := proc.PSSKiB(pid); n > 0 {
			total += n
		}
	}
	return total
}

// killPIDs kills what is left of a set listed before its roots stopped.
func killPIDs(pids []int) {
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// unmountUnder unmounts every mount point under one of the prefixes,
// deepest first, so that the directories can be removed.
func unmountUnder(prefixes ...string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var points []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		for _, p := range prefixes {
			if f[1] == p || strings.HasPrefix(f[1], p+"/") {
				points = append(points, f[1])
			}
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}
