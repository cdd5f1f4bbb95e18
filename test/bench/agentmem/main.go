// Command agentmem measures the edge agent's memory: it starts a real
// edge-controlplane (--dev) and edge-agent from a bin directory on a random
// loopback port, reads the agent's VmRSS and PSS once it has settled idle,
// then applies -pods wasm pods of the `sleep` module (8 MiB memory limit
// each), waits until all are Running, lets the agent settle and reads them
// again.
//
// Each -run is "BINDIR [agent flags...]", e.g. -run bin -run "bin --gogc 100"
// to compare agent settings; runs alternate over -rounds rounds (medians
// printed), so that a baseline and a change see the same machine load. The
// first run's figures are recorded under the names (50 pods); the
// others under names that carry their -run.
//
// Run it with `go run ./test/bench/agentmem` after `make build wasm`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/test/bench/cluster"
	"github.com/edgeorch/edgeorch/test/bench/internal/figures"
	"github.com/edgeorch/edgeorch/test/bench/proc"
)

type runsFlag []string

func (r *runsFlag) String() string     { return strings.Join(*r, "; ") }
func (r *runsFlag) Set(s string) error { *r = append(*r, s); return nil }

func main() {
	var runs runsFlag
	flag.Var(&runs, "run", `"BINDIR [agent flags...]" (repeatable; default "bin")`)
	wasmDir := flag.String("wasm", "wasm/build", "directory holding the built test modules")
	pods := flag.Int("pods", 50, "wasm pods for the loaded figure")
	rounds := flag.Int("rounds", 1, "rounds over the runs (medians printed)")
	settle := flag.Duration("settle", 12*time.Second, "wait before each reading (longer than a heartbeat, so that the code the agent runs periodically is resident)")
	flag.Parse()
	if len(runs) == 0 {
		runs = runsFlag{"bin"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res := make([][]reading, len(runs))
	for round := 0; round < *rounds; round++ {
		for i, r := range runs {
			f := strings.Fields(r)
			if len(f) == 0 {
				fmt.Fprintln(os.Stderr, "agentmem: empty -run")
				os.Exit(2)
			}
			rd, err := measure(ctx, f[0], f[1:], *wasmDir, *pods, *settle)
			if err != nil {
				fmt.Fprintf(os.Stderr, "agentmem: run %q: %v\n", r, err)
				os.Exit(1)
			}
			res[i] = append(res[i], rd)
		}
	}
	for i, r := range runs {
		fmt.Printf("\n# agent memory, %q, %d round(s), median\n", r, *rounds)
		med := func(get func(reading) int) int {
			v := make([]int, 0, len(res[i]))
			for _, rd := range res[i] {
				v = append(v, get(rd))
			}
			sort.Ints(v)
			return v[len(v)/2]
		}
		rssIdle, pssIdle := med(func(r reading) int { return r.rssIdle }), med(func(r reading) int { return r.pssIdle })
		rssLoad, pssLoad := med(func(r reading) int { return r.rssLoad }), med(func(r reading) int { return r.pssLoad })
		if i == 0 && *pods == 50 {
			figures.MiB(figures.AgentRSSIdle, rssIdle, "< 15 MiB")
			figures.MiB(figures.AgentPSSIdle, pssIdle, "")
			figures.MiB(figures.AgentRSS50, rssLoad, "< 30 MiB")
			figures.MiB(figures.AgentPSS50, pssLoad, "")
			continue
		}
		n := fmt.Sprintf(" (agentmem %s)", r)
		figures.MiB("agent RSS idle"+n, rssIdle, "")
		figures.MiB("agent PSS idle"+n, pssIdle, "")
		figures.MiB(fmt.Sprintf("agent RSS, %d wasm pods%s", *pods, n), rssLoad, "")
		figures.MiB(fmt.Sprintf("agent PSS, %d wasm pods%s", *pods, n), pssLoad, "")
	}
}

// reading is one run's figures, in KiB.
type reading struct{ rssIdle, pssIdle, rssLoad, pssLoad int }

// measure runs one control plane and agent and reads the agent's memory
// idle and with pods wasm pods Running.
func measure(ctx context.Context, bin string, agentArgs []string, wasmDir string, pods int, settle time.Duration) (reading, error) {
	var rd reading
	tmp, err := os.MkdirTemp("", "edge-agentmem-")
	if err != nil {
		return rd, err
	}
	defer os.RemoveAll(tmp)
	cp, url, err := cluster.StartControlPlane(ctx, bin, tmp, 50*time.Millisecond)
	if err != nil {
		return rd, err
	}
	defer cp.Stop()
	nc, err := nats.Connect(url)
	if err != nil {
		return rd, fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	c := client.New(nc)
	ag, err := cluster.StartAgent(bin, tmp, url, "mem", agentArgs...)
	if err != nil {
		return rd, err
	}
	defer ag.Stop()
	if err := proc.Poll(ctx, 100*time.Millisecond, func() error { return cluster.NodeReady(ctx, c, "mem") }); err != nil {
		return rd, fmt.Errorf("wait for the node: %w", err)
	}
	pid := ag.PID()
	if err := proc.Sleep(ctx, settle); err != nil {
		return rd, err
	}
	rd.rssIdle, rd.pssIdle = proc.RSSKiB(pid), proc.PSSKiB(pid)
	breakdown(pid, "idle")

	f, err := os.Open(filepath.Join(wasmDir, "sleep.wasm"))
	if err != nil {
		return rd, fmt.Errorf("module sleep: %w (run make wasm)", err)
	}
	_, err = c.PushModule(ctx, "sleep:mem", f)
	f.Close()
	if err != nil {
		return rd, fmt.Errorf("push sleep: %w", err)
	}
	for i := 0; i < pods; i++ {
		if _, _, err := c.ApplyRaw(ctx, podManifest(fmt.Sprintf("mem-%d", i)), false); err != nil {
			return rd, fmt.Errorf("apply pod %d: %w", i, err)
		}
	}
	if err := proc.Poll(ctx, 200*time.Millisecond, func() error {
		return cluster.PodsRunning(ctx, c, "default", "bench=agentmem", pods)
	}); err != nil {
		return rd, err
	}
	if err := proc.Sleep(ctx, settle); err != nil {
		return rd, err
	}
	rd.rssLoad, rd.pssLoad = proc.RSSKiB(pid), proc.PSSKiB(pid)
	breakdown(pid, fmt.Sprintf("%d pods", pods))
	return rd, nil
}

func podManifest(name string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "labels": map[string]string{"bench": "agentmem"}},
		"spec": map[string]any{
			"runtimeClassName": "wasm",
			"containers": []any{map[string]any{
				"name": "c", "image": "sleep:mem",
				"resources": map[string]any{"limits": map[string]any{"memory": "8Mi"}},
			}},
		},
	})
	return b
}

// breakdown prints what the agent's resident memory is made of: anonymous
// pages (heap, stacks, runtime) and pages of files (the binary).
func breakdown(pid int, when string) {
	fmt.Printf("# %s %s: RssAnon %d KiB, RssFile %d KiB, threads %d\n", filepath.Base(os.Args[0]), when,
		proc.KiB(pid, "/status", "RssAnon:"), proc.KiB(pid, "/status", "RssFile:"), proc.KiB(pid, "/status", "Threads:"))
}
