// Command peers runs the same scenarios against edgeorch (bin/) and, one
// after another, against the peer orchestrators whose binaries the
// environment names, and prints each figure with the ratio ours/peer:
//
//   - start-to-ready: from starting the server until its (single) node is
//     Ready to run work;
//
//   - memory: PSS of the system's processes (servers, agents, shims,
//     executors; not the tasks' own processes for ours, whose wasm tasks run
//     inside the agent) idle, and with N tasks running;
//
//   - submit→running for 1 task (median of -samples, after one warm-up)
//     and for N tasks submitted at once (until all are running);
//
//   - config writes: 100 and 1,000 config objects written one after
//     another through the system's API (ours: ConfigMaps; Nomad:
//     variables; K3s: ConfigMaps).
//
//     NOMAD_BIN=/usr/local/bin/nomad K3S_BIN=/usr/local/bin/k3s go run ./test/peers
//
// Nomad runs as a server+client agent on loopback ports with the raw_exec
// driver (tasks: /bin/sleep); K3s runs as a server with its agent, tasks
// are pods of a busybox image built here and imported from a tarball
// (imagePullPolicy Never: nothing is pulled). Both need root and get their
// own data directories under a temporary directory. A peer whose variable
// is unset or names no executable is skipped, saying so.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/test/bench/proc"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// config is what one run measures, and against whom.
type config struct {
	bin, wasmDir string
	task         string // ours: "wasm" or "container"
	tasks        int    // tasks running for the loaded figures
	samples      int    // submit→running samples of one task
	writes       []int  // config writes batches
	settle       time.Duration
	peers        []peerBin
}

// peerBin is a peer named by an environment variable.
type peerBin struct {
	env, path string
	new       func(path string) system
}

func parseFlags(args []string, getenv func(string) string) (config, error) {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	var cfg config
	var writes string
	fs.StringVar(&cfg.bin, "bin", "bin", "directory holding edge-controlplane and edge-agent")
	fs.StringVar(&cfg.wasmDir, "wasm", "wasm/build", "directory holding sleep.wasm")
	fs.StringVar(&cfg.task, "task", "wasm", "our task kind: wasm (module sleep) or container (busybox sleep, needs runc)")
	fs.IntVar(&cfg.tasks, "tasks", 50, "tasks submitted at once, and running for the loaded memory figure")
	fs.IntVar(&cfg.samples, "samples", 5, "submit→running samples of one task (median)")
	fs.StringVar(&writes, "writes", "100,1000", "comma-separated numbers of config writes")
	fs.DurationVar(&cfg.settle, "settle", 2*time.Second, "wait before each memory figure")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (peers are named by NOMAD_BIN and K3S_BIN)", fs.Arg(0))
	}
	if cfg.task != "wasm" && cfg.task != "container" {
		return config{}, fmt.Errorf("-task %q: want wasm or container", cfg.task)
	}
	if cfg.tasks < 1 || cfg.samples < 1 {
		return config{}, fmt.Errorf("-tasks and -samples must be >= 1 (got %d, %d)", cfg.tasks, cfg.samples)
	}
	for _, w := range strings.Split(writes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 1 {
			return config{}, fmt.Errorf("-writes %q: %q is not a positive number", writes, w)
		}
		cfg.writes = append(cfg.writes, n)
	}
	cfg.peers = []peerBin{
		{env: "NOMAD_BIN", path: getenv("NOMAD_BIN"), new: newNomad},
		{env: "K3S_BIN", path: getenv("K3S_BIN"), new: newK3s},
	}
	return cfg, nil
}

// A system is one orchestrator under test: a server with one node.
type system interface {
	name() string
	// start starts the system in dir and returns once its node is ready.
	start(ctx context.Context, dir string) error
	// prepare readies what tasks need (module, image) after start.
	prepare(ctx context.Context) error
	// submit submits one task per name, all labelled batch, and
	// returns once every one is running.
	submit(ctx context.Context, batch string, names []string) error
	// remove removes the batch's tasks and returns once they are gone.
	remove(ctx context.Context, batch string, names []string) error
	// writeConfigs writes n config objects named prefix-i, one after
	// another.
	writeConfigs(ctx context.Context, prefix string, n int) error
	// usage lists the processes whose memory the system costs.
	usage() procSet
	stop()
}

// results are one system's figures, by figure name.
type results struct {
	sys    string
	values map[string]float64
	units  map[string]string
	order  []string
}

func (r *results) add(w io.Writer, name string, v float64, unit string) {
	if r.values == nil {
		r.values, r.units = map[string]float64{}, map[string]string{}
	}
	r.values[name], r.units[name] = v, unit
	r.order = append(r.order, name)
	fmt.Fprintf(w, "%-6s %-44s %10s %s\n", r.sys, name, format(v), unit)
}

func run(ctx context.Context, cfg config, w io.Writer) error {
	tmp, err := os.MkdirTemp("", "edge-peers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(w, "# peers: %d tasks, %d samples of one task, config writes %v; ours runs %s tasks\n", cfg.tasks, cfg.samples, cfg.writes, cfg.task)
	ours, err := measure(ctx, cfg, newOurs(cfg), tmp+"/ours", w)
	if err != nil {
		return fmt.Errorf("ours: %w", err)
	}
	var peers []results
	for _, p := range cfg.peers {
		if p.path == "" {
			fmt.Fprintf(w, "%s not set: skipped\n", p.env)
			continue
		}
		path, err := exec.LookPath(p.path)
		if err != nil {
			fmt.Fprintf(w, "%s=%s: not an executable (%v): skipped\n", p.env, p.path, err)
			continue
		}
		r, err := measure(ctx, cfg, p.new(path), tmp+"/"+strings.ToLower(strings.TrimSuffix(p.env, "_BIN")), w)
		if err != nil {
			// One peer failing says nothing about the others.
			fmt.Fprintf(w, "%s=%s: %v: no figures\n", p.env, path, err)
			continue
		}
		peers = append(peers, r)
	}
	ratios(w, ours, peers)
	return nil
}

// measure runs every scenario against s, printing figures as they come.
func measure(ctx context.Context, cfg config, s system, dir string, w io.Writer) (results, error) {
	r := results{sys: s.name()}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	t0 := time.Now()
	err := s.start(ctx, dir)
	defer s.stop()
	if err != nil {
		return r, fmt.Errorf("start: %w", err)
	}
	r.add(w, "start-to-ready", ms(time.Since(t0)), "ms")
	if err := s.prepare(ctx); err != nil {
		return r, fmt.Errorf("prepare tasks: %w", err)
	}
	if err := proc.Sleep(ctx, cfg.settle); err != nil {
		return r, err
	}
	r.add(w, "PSS idle", float64(s.usage().pssKiB())/1024, "MiB")

	// One task at a time; the first warms caches and is dropped.
	var one []time.Duration
	for i := 0; i <= cfg.samples; i++ {
		batch := fmt.Sprintf("one-%d", i)
		names := []string{batch}
		t := time.Now()
		if err := s.submit(ctx, batch, names); err != nil {
			return r, fmt.Errorf("submit one task: %w", err)
		}
		if i > 0 {
			one = append(one, time.Since(t))
		}
		if err := s.remove(ctx, batch, names); err != nil {
			return r, fmt.Errorf("remove one task: %w", err)
		}
	}
	r.add(w, "submit->running, 1 task (median)", ms(median(one)), "ms")

	names := make([]string, cfg.tasks)
	for i := range names {
		names[i] = fmt.Sprintf("load-%d", i)
	}
	t := time.Now()
	if err := s.submit(ctx, "load", names); err != nil {
		return r, fmt.Errorf("submit %d tasks: %w", cfg.tasks, err)
	}
	r.add(w, fmt.Sprintf("submit->running, %d tasks at once", cfg.tasks), ms(time.Since(t)), "ms")
	if err := proc.Sleep(ctx, cfg.settle); err != nil {
		return r, err
	}
	r.add(w, fmt.Sprintf("PSS, %d tasks running", cfg.tasks), float64(s.usage().pssKiB())/1024, "MiB")
	if err := s.remove(ctx, "load", names); err != nil {
		return r, fmt.Errorf("remove %d tasks: %w", cfg.tasks, err)
	}

	for i, n := range cfg.writes {
		t := time.Now()
		if err := s.writeConfigs(ctx, fmt.Sprintf("w%d", i), n); err != nil {
			return r, fmt.Errorf("%d config writes: %w", n, err)
		}
		r.add(w, fmt.Sprintf("%d config writes", n), ms(time.Since(t)), "ms")
	}
	return r, nil
}

// ratios prints every figure of ours beside each peer's, with ours/peer:
// below 1, ours is faster or smaller.
func ratios(w io.Writer, ours results, peers []results) {
	fmt.Fprintln(w, "\n# ours/peer (below 1: ours is faster or smaller)")
	head := "| figure | ours |"
	sep := "|---|---|"
	for _, p := range peers {
		head += fmt.Sprintf(" %s | ours/%s |", p.sys, p.sys)
		sep += "---|---|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	for _, name := range ours.order {
		line := fmt.Sprintf("| %s | %s %s |", name, format(ours.values[name]), ours.units[name])
		for _, p := range peers {
			v, ok := p.values[name]
			switch {
			case !ok:
				line += " - | - |"
			case v == 0:
				line += fmt.Sprintf(" %s %s | - |", format(v), p.units[name])
			default:
				line += fmt.Sprintf(" %s %s | %.2f |", format(v), p.units[name], ours.values[name]/v)
			}
		}
		fmt.Fprintln(w, line)
	}
	if len(peers) == 0 {
		fmt.Fprintln(w, "(no peer measured: set NOMAD_BIN and/or K3S_BIN)")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func format(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

var errNotYet = errors.New("not yet")
