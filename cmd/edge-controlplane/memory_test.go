package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// keepMemorySettings restores the process's GC settings after a test.
func keepMemorySettings(t *testing.T) {
	limit := debug.SetMemoryLimit(-1)
	gc := debug.SetGCPercent(100)
	debug.SetGCPercent(gc)
	t.Cleanup(func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(gc)
	})
}

func TestMemoryFlagDefaults(t *testing.T) {
	cmd := newCommand()
	for name, want := range map[string]string{"memory-limit": "auto", "gc-percent": "100"} {
		if f := cmd.Flags().Lookup(name); f == nil || f.DefValue != want {
			t.Errorf("flag --%s: %+v, want default %q", name, f, want)
		}
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{"auto": -1, "AUTO": -1, "0": 0, "900Mi": 900 << 20, "1Gi": 1 << 30, "500M": 500e6} {
		got, err := parseMemoryLimit(in)
		if err != nil || got != want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "-1Gi", ""} {
		if _, err := parseMemoryLimit(in); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
			t.Errorf("parseMemoryLimit(%q): err %v, want one naming --memory-limit", in, err)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	t.Run("v2 own cgroup and ancestors, smallest wins", func(t *testing.T) {
		root := t.TempDir()
		proc := filepath.Join(root, "cgroup")
		writeFile(t, proc, "0::/system.slice/edge-controlplane.service\n")
		writeFile(t, filepath.Join(root, "system.slice/edge-controlplane.service/memory.max"), "2147483648\n")
		writeFile(t, filepath.Join(root, "system.slice/memory.max"), "1073741824\n")
		writeFile(t, filepath.Join(root, "memory.max"), "max\n")
		if got := cgroupMemoryLimit(root, proc); got != 1<<30 {
			t.Errorf("limit %d, want %d (the parent's)", got, 1<<30)
		}
	})
	t.Run("v2 no limit", func(t *testing.T) {
		root := t.TempDir()
		proc := filepath.Join(root, "cgroup")
		writeFile(t, proc, "0::/user.slice\n")
		writeFile(t, filepath.Join(root, "user.slice/memory.max"), "max\n")
		if got := cgroupMemoryLimit(root, proc); got != 0 {
			t.Errorf("limit %d, want 0", got)
		}
	})
	t.Run("v1 memory controller", func(t *testing.T) {
		root := t.TempDir()
		proc := filepath.Join(root, "cgroup")
		writeFile(t, proc, "9:name=systemd:/\n4:memory:/box/1\n3:cpu,cpuacct:/\n0::/\n")
		writeFile(t, filepath.Join(root, "memory/box/1/memory.limit_in_bytes"), "536870912\n")
		writeFile(t, filepath.Join(root, "memory/memory.limit_in_bytes"), "9223372036854771712\n")
		if got := cgroupMemoryLimit(root, proc); got != 512<<20 {
			t.Errorf("limit %d, want %d", got, 512<<20)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		if got := cgroupMemoryLimit(t.TempDir(), filepath.Join(t.TempDir(), "missing")); got != 0 {
			t.Errorf("limit %d, want 0", got)
		}
	})
}

func TestSetMemory(t *testing.T) {
	keepMemorySettings(t)
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "")
	s, err := setMemory("900Mi", true, 80, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 900<<20 || s.limit != 900<<20 || s.from != "flag" {
		t.Errorf("limit %d (settings %+v), want %d from the flag", got, s, 900<<20)
	}
	if got := debug.SetGCPercent(100); got != 80 {
		t.Errorf("gc percent %d, want 80", got)
	}
	if _, err := setMemory("0", false, 100, false); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("limit %d after 0, want none", got)
	}

	// GOMEMLIMIT wins over the default, not over a flag given.
	t.Setenv("GOMEMLIMIT", "700MiB")
	debug.SetMemoryLimit(700 << 20) // what the runtime read at start
	s, err = setMemory(memoryAuto, false, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 700<<20 || s.from != "GOMEMLIMIT" {
		t.Errorf("limit %d (settings %+v), want GOMEMLIMIT's %d", got, s, 700<<20)
	}
	if _, err := setMemory("1Gi", true, 100, false); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("limit %d, want the flag's %d over GOMEMLIMIT", got, 1<<30)
	}

	for _, bad := range []struct {
		limit string
		gc    int
		want  string
	}{{"lots", 100, "--memory-limit"}, {"1Gi", 0, "--gc-percent"}, {"1Gi", -5, "--gc-percent"}} {
		if _, err := setMemory(bad.limit, true, bad.gc, true); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("setMemory(%q, %d): err %v, want one naming %s", bad.limit, bad.gc, err, bad.want)
		}
	}
}
