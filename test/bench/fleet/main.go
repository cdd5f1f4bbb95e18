// Command fleet prints the fleet figures of the workload controllers: on a
// simulated fleet (package sim: an in-process control plane and N agents
// on runtime/fake, each with its own NATS connection and bbolt file) it
// applies one Deployment of R replicas (image fake://run) and measures the
// time until every pod is scheduled (spec.nodeName set) and until every pod
// reports Running, the bind rate, and the Go heap in use of the process
// (control plane and agents together: they share it).
//
// Run it with `make bench` or `go run ./test/bench/fleet -nodes 100 -replicas 1000`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	goruntime "runtime"
	"runtime/pprof"
	"sort"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

func main() {
	nodes := flag.Int("nodes", 100, "simulated nodes")
	replicas := flag.Int("replicas", 1000, "replicas of the Deployment")
	syncAlways := flag.Bool("sync-always", true, "JetStream fsyncs every write (the control plane's default)")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	bare := flag.Bool("bare-pods", false, "apply the pods themselves (8 writers) instead of a Deployment: the figure without the workload controllers")
	flag.DurationVar(&agentPoll, "agent-poll", time.Second, "how often each simulated pod worker polls its containers (edge-agent's default is 100ms; every simulated device shares this machine's CPU)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured part to this file")
	flag.Parse()
	if *nodes < 1 || *replicas < 1 {
		fmt.Fprintln(os.Stderr, "fleet bench: -nodes and -replicas must be >= 1")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	profile = *cpuProfile
	if err := run(ctx, *nodes, *replicas, *syncAlways, *bare); err != nil {
		fmt.Fprintln(os.Stderr, "fleet bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, nodes, replicas int, syncAlways, bare bool) error {
	what := "one Deployment of"
	if bare {
		what = "bare pods:"
	}
	fmt.Printf("fleet: %d simulated nodes, %s %d replicas (fake://run), sync-always=%v, agent poll %v\n", nodes, what, replicas, syncAlways, agentPoll)
	start := time.Now()
	c, err := sim.New(ctx, sim.Options{
		Nodes:             nodes,
		HeartbeatInterval: 2 * time.Second,
		NodeGrace:         20 * time.Second,
		SyncAlways:        syncAlways,
		Labels: func(i int) map[string]string {
			return map[string]string{"site": fmt.Sprintf("site-%d", i%5)}
		},
		Agent: func(_ int, cfg *edgeagent.Config) { cfg.PollInterval = agentPoll },
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "fleet bench: close:", err)
		}
	}()
	fmt.Printf("  %d nodes Ready in %v\n", nodes, time.Since(start).Round(time.Millisecond))
	heapIdle := heapInUse()

	w := newWatcher()
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	events, err := c.Client.Watch(wctx, "pods", "default", "app=fleet")
	if err != nil {
		return fmt.Errorf("watch pods: %w", err)
	}
	go func() {
		for ev := range events {
			w.see(ev, time.Now())
		}
	}()

	n := int32(replicas)
	d := &manifests.Deployment{
		ObjectMeta: manifests.ObjectMeta{Name: "fleet", Namespace: "default"},
		Spec: manifests.DeploymentSpec{
			Replicas: &n,
			Selector: &manifests.LabelSelector{MatchLabels: map[string]string{"app": "fleet"}},
			Template: manifests.PodTemplateSpec{
				ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"app": "fleet"}},
				Spec: manifests.PodSpec{
					Containers: []manifests.Container{{Name: "main", Image: "fake://run"}},
				},
			},
		},
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	rv0, err := storeRevision(ctx, c.Client)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if bare {
		if err := applyPods(ctx, c.Client, &d.Spec.Template, replicas); err != nil {
			return err
		}
	} else if _, _, err := c.Client.Apply(ctx, d); err != nil {
		return fmt.Errorf("apply deployment: %w", err)
	}
	// The watch is the measure; a slow consumer may lose events, so a list
	// every few seconds fills any gap (at the time it is seen).
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	for {
		created, scheduled, running := w.counts()
		if running >= replicas {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %d pods created, %d scheduled, %d running of %d: %w",
				time.Since(t0).Round(time.Millisecond), created, scheduled, running, replicas, ctx.Err())
		case <-w.changed:
		case <-progress.C:
			fmt.Printf("  ... %v: %d created, %d scheduled, %d running\n", time.Since(t0).Round(time.Second), created, scheduled, running)
		case <-tick.C:
			objs, _, err := c.Client.List(ctx, "pods", "default", "app=fleet")
			if err != nil {
				return fmt.Errorf("list pods: %w", err)
			}
			now := time.Now()
			for _, o := range objs {
				w.see(client.Event{Type: client.Modified, Object: o}, now)
			}
		}
	}
	created, scheduled, running := w.times(t0)
	rv1, err := storeRevision(ctx, c.Client)
	if err != nil {
		return err
	}
	heapLoaded := heapInUse()
	fmt.Printf("  all %d pods created (first seen):        %v\n", replicas, created.Round(time.Millisecond))
	fmt.Printf("  all %d pods scheduled (spec.nodeName):   %v\n", replicas, scheduled.Round(time.Millisecond))
	fmt.Printf("  all %d pods Running (status):            %v\n", replicas, running.Round(time.Millisecond))
	fmt.Printf("  pods bound per second (apply → last bind): %.0f /s\n", float64(replicas)/scheduled.Seconds())
	fmt.Printf("  pods Running per second (apply → last Running): %.0f /s\n", float64(replicas)/running.Seconds())
	p50, p99 := w.latency()
	fmt.Printf("  per pod, creation → Running, median / p99: %v / %v\n", p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	fmt.Printf("  object store writes until all Running: %d (%.1f per pod)\n", rv1-rv0, float64(rv1-rv0)/float64(replicas))
	fmt.Printf("  Go heap in use (control plane + %d agents, one process): idle %.1f MiB, with %d pods %.1f MiB\n",
		nodes, mib(heapIdle), replicas, mib(heapLoaded))
	return nil
}

var (
	profile   string        // -cpuprofile
	agentPoll time.Duration // -agent-poll
)

// watcher records when each pod was first seen, first seen bound and first
// seen Running.
type watcher struct {
	changed chan struct{}
	mu      sync.Mutex
	first   map[string]time.Time
	bound   map[string]time.Time
	running map[string]time.Time
}

func newWatcher() *watcher {
	return &watcher{
		changed: make(chan struct{}, 1),
		first:   map[string]time.Time{},
		bound:   map[string]time.Time{},
		running: map[string]time.Time{},
	}
}

func (w *watcher) see(ev client.Event, now time.Time) {
	pod, ok := ev.Object.(*manifests.Pod)
	if !ok || ev.Type == client.Deleted {
		return
	}
	w.mu.Lock()
	key := pod.UID
	if _, ok := w.first[key]; !ok {
		w.first[key] = now
	}
	if _, ok := w.bound[key]; !ok && pod.Spec.NodeName != "" {
		w.bound[key] = now
	}
	if _, ok := w.running[key]; !ok && pod.Status.Phase == manifests.PodRunning {
		w.running[key] = now
	}
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *watcher) counts() (created, scheduled, running int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.first), len(w.bound), len(w.running)
}

// times are the durations from t0 until the last pod was created, bound and Running.
func (w *watcher) times(t0 time.Time) (created, scheduled, running time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := func(m map[string]time.Time) time.Duration {
		var max time.Time
		for _, t := range m {
			if t.After(max) {
				max = t
			}
		}
		return max.Sub(t0)
	}
	return last(w.first), last(w.bound), last(w.running)
}

// latency is the median and p99 of first seen → Running over the pods.
func (w *watcher) latency() (p50, p99 time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ds []time.Duration
	for k, r := range w.running {
		if f, ok := w.first[k]; ok {
			ds = append(ds, r.Sub(f))
		}
	}
	if len(ds) == 0 {
		return 0, 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], ds[(len(ds)*99)/100]
}

func heapInUse() uint64 {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// applyPods creates n pods from t with 8 concurrent writers.
func applyPods(ctx context.Context, cl *client.Client, t *manifests.PodTemplateSpec, n int) error {
	names := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range names {
				pod := &manifests.Pod{ObjectMeta: t.ObjectMeta, Spec: t.Spec}
				pod.Name, pod.Namespace = fmt.Sprintf("fleet-%d", i), "default"
				if _, _, err := cl.Apply(ctx, pod); err != nil {
					errs <- fmt.Errorf("apply pod %s: %w", pod.Name, err)
					return
				}
			}
		}()
	}
	var err error
loop:
	for i := range n {
		select {
		case names <- i:
		case err = <-errs:
			break loop
		}
	}
	close(names)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errs:
	default:
	}
	return err
}

// storeRevision is the object store's revision (its number of writes so
// far), read from a list's resourceVersion.
func storeRevision(ctx context.Context, cl *client.Client) (uint64, error) {
	_, rv, err := cl.List(ctx, "namespaces", "", "")
	if err != nil {
		return 0, fmt.Errorf("list namespaces: %w", err)
	}
	var n uint64
	if _, err := fmt.Sscan(rv, &n); err != nil {
		return 0, fmt.Errorf("resourceVersion %q: %w", rv, err)
	}
	return n, nil
}
