package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeorch/edgeorch/test/bench/internal/figures"
)

func TestTable(t *testing.T) {
	dir := t.TempDir()
	in, logPath := filepath.Join(dir, "figs"), filepath.Join(dir, "log")
	t.Setenv(figures.Env, in)
	figures.Record(figures.WasmApplyMedian, 8.5, "ms", "< 10 ms")
	figures.Record(figures.AgentRSSIdle, 16, "MiB", "< 15 MiB")
	printed := figures.Figure{Name: figures.Bind1000, Value: 1500, Unit: "pods/s", Goal: ">= 1000 pods/s"}
	deploy := figures.Figure{Name: figures.DeploymentBind1000, Value: 450, Unit: "pods/s"}
	log := "== test/bench/scale\n# a harness\n" + printed.Line() + "\n" + deploy.Line() + "\n" +
		(figures.Figure{Name: figures.WasmApplyMedian, Value: 99, Unit: "ms", Goal: "< 10 ms"}).Line() + "\n"
	if err := os.WriteFile(logPath, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	figs, err := load(in, logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	table(&out, figs)
	s := out.String()
	for _, want := range []string{
		"| " + figures.WasmApplyMedian + " | 8.50 ms | < 10 ms | yes |",
		"| " + figures.AgentRSSIdle + " | 16.0 MiB | < 15 MiB | NO |",
		"| " + figures.Bind1000 + " [scale] | 1500 pods/s | >= 1000 pods/s | yes |",
		// The Deployment's figure is shown as a reference; the goal is on
		// the pending pods' one.
		"| " + figures.DeploymentBind1000 + " [scale] | 450 pods/s | - | - |",
		"| " + figures.Bind10000 + " | not measured | >= 1000 pods/s | - |",
		"| " + figures.EdgectlApply1000 + " | not measured | < 0.5 s | - |",
		"2 of 3 goals met",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "99.0 ms") {
		t.Errorf("a printed figure already recorded was added again:\n%s", s)
	}
}

func TestLoadBadFile(t *testing.T) {
	in := filepath.Join(t.TempDir(), "figs")
	os.WriteFile(in, []byte("only\ttwo\n"), 0o644)
	if _, err := load(in, ""); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("load of a bad file = %v, want an error naming line 1", err)
	}
}
