// Command rollout prints the figure of the fleet Rollout controller: on a
// simulated fleet (package sim: an in-process control plane and N agents
// on runtime/fake, sharing this machine) it runs a DaemonSet (fake://run)
// on every node, then applies a Rollout of a new template in waves and
// prints how long each wave took (from the Rollout's status: start to
// health gate passed) and the whole rollout (apply to Completed).
//
// Run it with `go run ./test/bench/rollout -nodes 300`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

func main() {
	nodes := flag.Int("nodes", 300, "simulated nodes")
	waves := flag.String("waves", "1%,10%,25%,", "comma-separated wave sizes (count or percent; empty: the rest)")
	readySeconds := flag.Int("ready-seconds", 0, "health gate readySeconds")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	agentPoll := flag.Duration("agent-poll", time.Second, "how often each simulated pod worker polls its containers")
	flag.Parse()
	if *nodes < 1 {
		fmt.Fprintln(os.Stderr, "rollout bench: -nodes must be >= 1")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *nodes, strings.Split(*waves, ","), *readySeconds, *agentPoll); err != nil {
		fmt.Fprintln(os.Stderr, "rollout bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, nodes int, waves []string, readySeconds int, agentPoll time.Duration) error {
	fmt.Printf("rollout: %d simulated nodes, DaemonSet fake://run, waves %q, readySeconds %d\n", nodes, waves, readySeconds)
	start := time.Now()
	c, err := sim.New(ctx, sim.Options{
		Nodes:             nodes,
		HeartbeatInterval: 2 * time.Second,
		NodeGrace:         20 * time.Second,
		Agent:             func(_ int, cfg *edgeagent.Config) { cfg.PollInterval = agentPoll },
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "rollout bench: close:", err)
		}
	}()
	fmt.Printf("  %d nodes Ready in %v\n", nodes, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := apply(ctx, c, `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: probe, namespace: default}
spec:
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec: {containers: [{name: c, image: "fake://run"}]}
`); err != nil {
		return err
	}
	if err := poll(ctx, func() (bool, error) {
		o, err := c.Client.Get(ctx, "daemonsets", "default", "probe")
		if err != nil {
			return false, err
		}
		st := o.(*manifests.DaemonSet).Status
		return st.DesiredNumberScheduled == int32(nodes) && st.NumberReady == int32(nodes), nil
	}); err != nil {
		return fmt.Errorf("daemonset: %w", err)
	}
	fmt.Printf("  DaemonSet Ready on %d nodes in %v\n", nodes, time.Since(start).Round(time.Millisecond))

	var wl strings.Builder
	for _, w := range waves {
		w = strings.TrimSpace(w)
		switch {
		case w == "":
			wl.WriteString("  - {}\n")
		case strings.HasSuffix(w, "%"):
			fmt.Fprintf(&wl, "  - {count: %q}\n", w)
		default:
			fmt.Fprintf(&wl, "  - {count: %s}\n", w)
		}
	}
	start = time.Now()
	if err := apply(ctx, c, fmt.Sprintf(`
apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: probe-v2, namespace: default}
spec:
  targetRef: {kind: DaemonSet, name: probe}
  template:
    metadata: {labels: {app: probe}, annotations: {version: "2"}}
    spec: {containers: [{name: c, image: "fake://run"}]}
  waves:
%s  healthGate: {readySeconds: %d}
`, wl.String(), readySeconds)); err != nil {
		return err
	}
	var ro *manifests.Rollout
	if err := poll(ctx, func() (bool, error) {
		o, err := c.Client.Get(ctx, "rollouts", "default", "probe-v2")
		if err != nil {
			return false, err
		}
		ro = o.(*manifests.Rollout)
		switch ro.Status.Phase {
		case manifests.RolloutCompleted:
			return true, nil
		case manifests.RolloutPaused, manifests.RolloutRolledBack, manifests.RolloutFailed:
			return false, fmt.Errorf("rollout %s: %s", ro.Status.Phase, ro.Status.Message)
		}
		return false, nil
	}); err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	total := time.Since(start)
	for i, w := range ro.Status.Waves {
		fmt.Printf("  wave %d/%d: %4d nodes in %v\n", i+1, len(ro.Status.Waves), w.Total, w.CompletedAt.Sub(w.StartedAt).Round(time.Millisecond))
	}
	fmt.Printf("  rollout over %d nodes Completed in %v (apply to Completed)\n", nodes, total.Round(time.Millisecond))
	return nil
}

func apply(ctx context.Context, c *sim.Cluster, doc string) error {
	objs, err := manifests.Decode([]byte(doc))
	if err != nil {
		return err
	}
	_, _, err = c.Client.Apply(ctx, objs[0])
	return err
}

// poll calls f every 100ms until it is done, fails, or ctx ends.
func poll(ctx context.Context, f func() (bool, error)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := f()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
