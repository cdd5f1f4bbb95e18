package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// memoryAuto is the default of --memory-limit: a fraction of the memory
// the process's cgroup may use, none when it has no limit.
const memoryAuto = "auto"

// autoLimitPercent is the share of the cgroup's memory limit that
// --memory-limit=auto gives the Go heap and runtime: the rest is left to
// what Go does not count (the binary's pages, thread stacks outside the Go
// heap, the kernel's page cache charged to the cgroup by JetStream's
// files).
const autoLimitPercent = 80

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// memorySettings are what setMemory applied, for the start-up log.
type memorySettings struct {
	limit     int64  // bytes; 0: none
	from      string // "flag", "GOMEMLIMIT", "cgroup" or "none"
	gcPercent int
}

// setMemory applies --memory-limit and --gc-percent. GOMEMLIMIT and GOGC
// in the environment win over the flags' defaults, not over flags given.
func setMemory(limitFlag string, limitSet bool, gcPercent int, gcSet bool) (memorySettings, error) {
	s := memorySettings{gcPercent: gcPercent}
	if gcPercent < -1 || gcPercent == 0 {
		return s, fmt.Errorf("--gc-percent %d: want a positive percentage, or -1 for no collection", gcPercent)
	}
	limit, err := parseMemoryLimit(limitFlag)
	if err != nil {
		return s, err
	}
	if gcSet || os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	} else {
		s.gcPercent = debug.SetGCPercent(-1) // read GOGC's value back
		debug.SetGCPercent(s.gcPercent)
	}
	if !limitSet && os.Getenv("GOMEMLIMIT") != "" {
		s.limit, s.from = debug.SetMemoryLimit(-1), "GOMEMLIMIT"
		return s, nil
	}
	s.from = "flag"
	if limit < 0 { // auto
		s.from = "cgroup"
		if max := cgroupMemoryLimit(cgroupRoot, "/proc/self/cgroup"); max > 0 {
			limit = max / 100 * autoLimitPercent
		} else {
			limit = 0
		}
	}
	if limit == 0 {
		s.from = "none"
		debug.SetMemoryLimit(math.MaxInt64)
		return s, nil
	}
	s.limit = limit
	debug.SetMemoryLimit(limit)
	return s, nil
}

// parseMemoryLimit reads --memory-limit: "auto" (-1), "0" (none) or a
// quantity of bytes such as 900Mi.
func parseMemoryLimit(v string) (int64, error) {
	if strings.EqualFold(strings.TrimSpace(v), memoryAuto) {
		return -1, nil
	}
	q, err := manifests.ParseQuantity(v)
	if err != nil {
		return 0, fmt.Errorf("--memory-limit %q: want auto, 0 or a quantity such as 900Mi: %w", v, err)
	}
	n := q.Value()
	if n < 0 {
		return 0, fmt.Errorf("--memory-limit %q: must not be negative", v)
	}
	return n, nil
}

// cgroupMemoryLimit is the smallest memory limit of the process's cgroup
// and its ancestors, read from the cgroup file systems under root (cgroup
// v2's memory.max, else v1's memory.limit_in_bytes) for the cgroups named
// in procCgroup (/proc/self/cgroup); 0 when there is none or it cannot be
// read.
func cgroupMemoryLimit(root, procCgroup string) int64 {
	f, err := os.Open(procCgroup)
	if err != nil {
		return 0
	}
	defer f.Close()
	var best int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dirs []string
		var file string
		switch {
		case parts[0] == "0" && parts[1] == "": // v2: the unified hierarchy
			dirs, file = []string{root, filepath.Join(root, "unified")}, "memory.max"
		case containsController(parts[1], "memory"): // v1
			dirs, file = []string{filepath.Join(root, "memory")}, "memory.limit_in_bytes"
		default:
			continue
		}
		for _, d := range dirs {
			if l := smallestLimit(d, parts[2], file); l > 0 && (best == 0 || l < best) {
				best = l
			}
		}
	}
	return best
}

func containsController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// smallestLimit reads file in the cgroup path under mount and in each of
// its ancestors and returns the smallest limit found (0: none).
func smallestLimit(mount, path, file string) int64 {
	var best int64
	p := filepath.Clean("/" + path)
	for {
		if l := readLimit(filepath.Join(mount, p, file)); l > 0 && (best == 0 || l < best) {
			best = l
		}
		if p == "/" {
			return best
		}
		p = filepath.Dir(p)
	}
}

// readLimit reads one limit file: "max" or v1's page-rounded
// 0x7FFFFFFFFFFFF000 are no limit (0).
func readLimit(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0
	}
	return n
}
