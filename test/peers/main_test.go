package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

func TestParseFlags(t *testing.T) {
	env := map[string]string{"NOMAD_BIN": "/opt/nomad"}
	cfg, err := parseFlags([]string{"-tasks", "7", "-writes", "10, 20"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.tasks != 7 || len(cfg.writes) != 2 || cfg.writes[0] != 10 || cfg.writes[1] != 20 || cfg.task != "wasm" {
		t.Errorf("parsed %+v", cfg)
	}
	if len(cfg.peers) != 2 || cfg.peers[0].path != "/opt/nomad" || cfg.peers[1].env != "K3S_BIN" || cfg.peers[1].path != "" {
		t.Errorf("peers %+v", cfg.peers)
	}
	for _, args := range [][]string{
		{"-tasks", "0"}, {"-samples", "0"}, {"-writes", "10,x"}, {"-writes", "0"},
		{"-task", "vm"}, {"nomad"}, {"-nope"},
	} {
		if _, err := parseFlags(args, func(string) string { return "" }); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

// TestOursSkipsAbsentPeers runs the script's whole path with small numbers:
// our side against real binaries, one peer unset and one not executable.
func TestOursSkipsAbsentPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemons")
	}
	root := testmodules.Root(t)
	sleep := testmodules.Path(t, "sleep")
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator), "./cmd/edge-controlplane", "./cmd/edge-agent")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	env := map[string]string{"K3S_BIN": filepath.Join(t.TempDir(), "no-k3s")}
	cfg, err := parseFlags([]string{"-bin", bin, "-wasm", filepath.Dir(sleep), "-tasks", "3", "-samples", "2",
		"-writes", "5,10", "-settle", "200ms"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, cfg, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"NOMAD_BIN not set: skipped",
		"K3S_BIN=" + env["K3S_BIN"] + ": not an executable",
		"| figure | ours |",
		"(no peer measured",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	// Every figure of ours is printed, with a positive value.
	for _, fig := range []string{"start-to-ready", "PSS idle", "submit->running, 1 task (median)",
		"submit->running, 3 tasks at once", "PSS, 3 tasks running", "5 config writes", "10 config writes"} {
		v, ok := figure(s, fig)
		if !ok {
			t.Errorf("no figure %q:\n%s", fig, s)
		} else if v <= 0 {
			t.Errorf("figure %q = %v, want > 0", fig, v)
		}
	}
}

// figure finds "ours   NAME   VALUE UNIT" in the output.
func figure(out, name string) (float64, bool) {
	for _, l := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(l, "ours ")
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, name+" ") {
			continue
		}
		f := strings.Fields(rest[len(name):])
		if len(f) != 2 {
			return 0, false
		}
		v, err := strconv.ParseFloat(f[0], 64)
		return v, err == nil
	}
	return 0, false
}
