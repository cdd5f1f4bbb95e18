// Command scale prints the control plane's figures at fleet scale: a real
// control plane (embedded NATS, the API and every controller) runs in a
// child process and a simulated fleet (package sim: N edge agents on
// runtime/fake, each with its own NATS connection, bbolt file and
// heartbeat) in others, so that the control plane's memory and CPU are
// measured apart from the fleet's and from this harness's watches. It prints the time to connect N
// nodes (start of the fleet → every Node Ready), the heartbeat load
// (lease writes per second and the control plane's CPU while idle), a
// DaemonSet's convergence to every node, pods scheduled and bound per
// second for Deployments of each -pods size (apply → last pod bound, and
// first pod created → last bound), pending pods scheduled and bound per
// second (-pending pods that fit no node until nodes get the label they
// select — as many nodes as hold -pending-per-node of them each, or every
// node: label → last bound), the control plane's and the fleet's
// peak RSS, and what one JetStream consumer per agent costs a NATS server
// (a third process) against one core NATS subscription per agent.
//
// Run it with `go run ./test/bench/scale` (1,000 nodes, Deployments of
// 1,000 then 10,000 pods, then as many pending pods: the make bench
// setting, ~4 minutes) or
// `go run ./test/bench/scale -nodes 10000` (the fleet; many
// minutes on a 2-core machine).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/sim"
	"github.com/edgeorch/edgeorch/test/bench/internal/figures"
	"github.com/nats-io/nats.go/jetstream"
)

type config struct {
	nodes        int
	pods         []int
	pending      []int
	heartbeat    time.Duration
	syncAlways   bool
	agentPoll    time.Duration
	concurrency  int
	consumerCost bool
	url          string
	first        int
	perProcess   int
	cpuProfile   string
	memProfile   string
	peakProfile  string
	phaseProfile string
	// pendingPerNode: the pending pods' label goes to as many nodes as
	// hold this many pods each (0: every node).
	pendingPerNode int
}

func main() {
	var cfg config
	// 10,000 nodes do not fit make bench's few minutes on the 2-core
	// machine (docs/scale.md): the default fleet is smaller.
	flag.IntVar(&cfg.nodes, "nodes", 1000, "simulated nodes (10000 for the issue's fleet)")
	podsFlag := flag.String("pods", "1000,10000", "comma-separated Deployment sizes to schedule, one after another")
	pendingFlag := flag.String("pending", "", "comma-separated counts of pending pods to schedule at once when nodes get a label (default: -pods)")
	flag.DurationVar(&cfg.heartbeat, "heartbeat", 10*time.Second, "agents' heartbeat interval")
	flag.BoolVar(&cfg.syncAlways, "sync-always", true, "JetStream fsyncs every write (the control plane's default)")
	flag.DurationVar(&cfg.agentPoll, "agent-poll", 10*time.Second, "how often each simulated pod worker polls its containers")
	flag.IntVar(&cfg.concurrency, "start-concurrency", 16, "agents started at once")
	flag.BoolVar(&cfg.consumerCost, "consumer-cost", true, "measure one JetStream consumer per agent against one core NATS subscription per agent")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	role := flag.String("role", "", "internal: controlplane, fleet or nats (child processes)")
	flag.StringVar(&cfg.url, "url", "", "internal: the control plane's NATS URL (role fleet)")
	flag.IntVar(&cfg.first, "first", 0, "internal: the number of the fleet process's first node (role fleet)")
	flag.IntVar(&cfg.perProcess, "nodes-per-process", 4000, "agents per fleet process (each takes 2 file descriptors)")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the control plane to this file (of the fleet to this file .fleet)")
	flag.StringVar(&cfg.memProfile, "memprofile", "", "write a heap profile of the control plane, once every figure is taken, to this file")
	flag.IntVar(&cfg.pendingPerNode, "pending-per-node", 50, "label as many nodes as the pending pods need at this many pods a node (0: every node)")
	flag.StringVar(&cfg.phaseProfile, "phase-cpuprofile", "", "write CPU profiles of the control plane (PREFIX-PHASE.cp), the fleet (PREFIX-PHASE.fleetN) and the harness (PREFIX-PHASE.harness) over the idle window (PHASE idle) and while the first pending pods are bound, from the first label write to the last pod bound (PHASE pending)")
	flag.StringVar(&cfg.peakProfile, "peakprofile", "", "write a heap profile of the control plane to this file each time its RSS passes its peak by 32 MiB")
	flag.Parse()
	if *pendingFlag == "" {
		*pendingFlag = *podsFlag
	}
	for _, l := range []struct {
		name string
		val  string
		out  *[]int
	}{{"pods", *podsFlag, &cfg.pods}, {"pending", *pendingFlag, &cfg.pending}} {
		for _, f := range strings.Split(l.val, ",") {
			if f = strings.TrimSpace(f); f == "" || f == "0" {
				continue
			}
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "scale bench: -%s: %q is not a positive count\n", l.name, f)
				os.Exit(2)
			}
			*l.out = append(*l.out, n)
		}
	}
	if cfg.nodes < 1 || cfg.heartbeat <= 0 || cfg.concurrency < 1 || cfg.perProcess < 1 {
		fmt.Fprintln(os.Stderr, "scale bench: -nodes, -nodes-per-process and -start-concurrency must be >= 1, -heartbeat > 0")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if cfg.cpuProfile != "" {
		path := cfg.cpuProfile
		if *role == "fleet" {
			path += ".fleet"
		}
		if *role == "fleet" && cfg.first > 0 {
			path += strconv.Itoa(cfg.first)
		}
		if *role == "" {
			path += ".harness"
		}
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale bench: cpu profile:", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	var err error
	switch *role {
	case "":
		err = run(ctx, cfg)
	case "controlplane":
		err = runControlPlane(ctx, cfg)
	case "fleet":
		err = runFleet(ctx, cfg)
	case "nats":
		err = runNATS(ctx)
	default:
		err = fmt.Errorf("-role %q: want controlplane, fleet or nats", *role)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "scale bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	fmt.Printf("scale: %d simulated nodes (fleet in child processes), heartbeat %v, sync-always=%v, Deployments of %v pods, %v pending pods (fake://run)\n",
		cfg.nodes, cfg.heartbeat, cfg.syncAlways, cfg.pods, cfg.pending)
	cp, err := startControlPlane(ctx, cfg)
	if err != nil {
		return err
	}
	defer cp.stop()
	// A client only: the control plane is cp's.
	c, err := sim.New(ctx, sim.Options{URL: cp.url, NoWait: true})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "scale bench: close control plane:", err)
		}
	}()
	nc, err := messaging.Connect(ctx, c.URL, "scale-bench")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := raiseMaxConsumers(ctx, js, "KV_"+messaging.BucketAssignments, cfg.nodes); err != nil {
		return err
	}
	idle := readProc(cp.pid())
	figures.Record("scale: control plane RSS, no nodes", mib(idle.rss), "MiB", "")

	// Connect the fleet.
	nodes := newNodeWatch()
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	// Nodes are followed in the objects bucket itself (an ordered
	// consumer, which loses nothing): an API watch, a core NATS
	// subscription, drops events when thousands of nodes change at once,
	// and a list of thousands of nodes is more than a NATS message holds.
	objects, err := js.KeyValue(ctx, messaging.BucketObjects)
	if err != nil {
		return err
	}
	nodeKV, err := objects.Watch(wctx, messaging.ObjectFilter("nodes", "*"))
	if err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	defer nodeKV.Stop()
	go nodes.follow(nodeKV.Updates())
	t0 := time.Now()
	var fleet fleetProcs
	defer fleet.stop()
	fail := func() error {
		if err := cp.err(); err != nil {
			return err
		}
		return fleet.err()
	}
	for first := 0; first < cfg.nodes; first += cfg.perProcess {
		f, err := startFleet(ctx, cfg, c.URL, first, min(cfg.perProcess, cfg.nodes-first))
		if err != nil {
			return err
		}
		fleet = append(fleet, f)
	}
	if err := waitFor(ctx, 5*time.Second, func() (bool, string) {
		ready := nodes.ready()
		return ready >= cfg.nodes, fmt.Sprintf("%d of %d nodes Ready", ready, cfg.nodes)
	}, fail, nil); err != nil {
		return err
	}
	connect := time.Since(t0)
	figures.Record(fmt.Sprintf("scale: connect %d nodes, fleet start -> all Ready", cfg.nodes), connect.Seconds(), "s", "")
	fmt.Printf("    (%d fleet processes launched their agents in %.1f s)\n", len(fleet), fleet.launched().Seconds())

	// Heartbeat load.
	window := max(cfg.heartbeat, 10*time.Second)
	lease0, err := lastSeq(ctx, js, "KV_"+messaging.BucketHeartbeats)
	if err != nil {
		return err
	}
	obj0, err := lastSeq(ctx, js, "KV_"+messaging.BucketObjects)
	if err != nil {
		return err
	}
	var prof *phaseProfiler
	if cfg.phaseProfile != "" {
		prof = &phaseProfiler{prefix: cfg.phaseProfile, cp: cp.stdin}
		for _, f := range fleet {
			prof.fleet = append(prof.fleet, f.stdin)
		}
	}
	prof.start("idle")
	p0, w0 := readProc(cp.pid()), time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(window):
	}
	p1, el := readProc(cp.pid()), time.Since(w0)
	prof.stop()
	lease1, err := lastSeq(ctx, js, "KV_"+messaging.BucketHeartbeats)
	if err != nil {
		return err
	}
	obj1, err := lastSeq(ctx, js, "KV_"+messaging.BucketObjects)
	if err != nil {
		return err
	}
	figures.Record(fmt.Sprintf("scale: heartbeats (lease writes), %d nodes every %v", cfg.nodes, cfg.heartbeat), float64(lease1-lease0)/el.Seconds(), "/s", "")
	figures.Record("scale: object writes while idle (Node heartbeat times)", float64(obj1-obj0)/el.Seconds(), "/s", "")
	figures.Record(fmt.Sprintf("scale: control plane CPU while idle, %d nodes", cfg.nodes), 100*(p1.cpu-p0.cpu).Seconds()/el.Seconds(), "% of a core", "")
	figures.Record(fmt.Sprintf("scale: control plane RSS, %d nodes idle", cfg.nodes), mib(p1.rss), "MiB", "")

	// A DaemonSet to every node.
	if err := daemonSet(ctx, c.Client, cfg.nodes, fail); err != nil {
		return err
	}
	// Deployments.
	for _, n := range cfg.pods {
		if err := deployment(ctx, c.Client, js, n, fail); err != nil {
			return err
		}
	}
	cpStat := readProc(cp.pid())
	var flHWM uint64
	for _, f := range fleet {
		flHWM += readProc(f.cmd.Process.Pid).hwm
	}
	heap, err := cp.heapInUse(ctx)
	if err != nil {
		return err
	}
	peakName := fmt.Sprintf("scale: control plane peak RSS, %d simulated nodes", cfg.nodes)
	if cfg.nodes == 10000 {
		peakName = figures.ControlPlanePeak10kN
	}
	figures.Record(peakName, mib(cpStat.hwm), "MiB", "< 1 GiB")
	fmt.Printf("    (Go heap in use now %.1f MiB)\n", mib(heap))
	figures.Record(fmt.Sprintf("scale: fleet peak RSS, %d agents in %d processes", cfg.nodes, len(fleet)), mib(flHWM), "MiB", "")
	fmt.Printf("    (%.0f KiB per agent)\n", float64(flHWM)/1024/float64(cfg.nodes))
	// Pending pods, scheduled when the nodes get the label they ask for;
	// after the peaks above, which are those of the fleet running the
	// DaemonSet and the Deployments, as before this figure existed.
	for i, n := range cfg.pending {
		pendingProf := prof
		if i > 0 {
			pendingProf = nil
		}
		if err := pendingPods(ctx, c.Client, js, nodes, n, cfg.pendingPerNode, fail, pendingProf); err != nil {
			return err
		}
	}
	if len(cfg.pending) > 0 {
		fmt.Printf("    (control plane peak RSS with the pending pods too: %.0f MiB)\n", mib(readProc(cp.pid()).hwm))
	}
	if cfg.memProfile != "" {
		if _, err := cp.heapInUse(ctx); err != nil { // writes the profile
			return err
		}
	}
	fleet.stop()
	if cfg.consumerCost {
		if err := consumerCost(ctx, cfg.nodes); err != nil {
			return err
		}
	}
	return nil
}

// daemonSet applies a DaemonSet and waits until every node runs its pod.
func daemonSet(ctx context.Context, cl *client.Client, nodes int, fail func() error) error {
	ds := &manifests.DaemonSet{
		ObjectMeta: manifests.ObjectMeta{Name: "scale-ds", Namespace: "default"},
		Spec: manifests.DaemonSetSpec{
			Selector: &manifests.LabelSelector{MatchLabels: map[string]string{"app": "scale-ds"}},
			Template: manifests.PodTemplateSpec{
				ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"app": "scale-ds"}},
				Spec:       manifests.PodSpec{Containers: []manifests.Container{{Name: "main", Image: "fake://run"}}},
			},
		},
	}
	t0 := time.Now()
	if _, _, err := cl.Apply(ctx, ds); err != nil {
		return fmt.Errorf("apply daemonset: %w", err)
	}
	var st manifests.DaemonSetStatus
	var phases map[string]int
	var lastList time.Time
	err := waitFor(ctx, 10*time.Second, func() (bool, string) {
		o, err := cl.Get(ctx, "daemonsets", "default", ds.Name)
		if err != nil {
			return false, err.Error()
		}
		if d, ok := o.(*manifests.DaemonSet); ok {
			st = d.Status
		}
		return int(st.NumberReady) >= nodes, fmt.Sprintf("DaemonSet desired %d, scheduled %d, ready %d; pods by phase %v", st.DesiredNumberScheduled, st.CurrentNumberScheduled, st.NumberReady, phases)
	}, fail, func() {
		// Pods by phase, for the progress lines: a list of every pod
		// costs the control plane, so not more than every 30 s.
		if time.Since(lastList) < 30*time.Second {
			return
		}
		lastList = time.Now()
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		objs, _, err := cl.List(lctx, "pods", "default", "app=scale-ds")
		if err != nil {
			return
		}
		m := map[string]int{}
		for _, o := range objs {
			if p, ok := o.(*manifests.Pod); ok {
				m[p.Status.Phase]++
			}
		}
		phases = m
	})
	if err != nil {
		return err
	}
	figures.Record(fmt.Sprintf("scale: DaemonSet to %d nodes, apply -> all pods Ready", nodes), time.Since(t0).Seconds(), "s", "")
	return nil
}

// deployment applies a Deployment of n replicas and measures its binds.
func deployment(ctx context.Context, cl *client.Client, js jetstream.JetStream, n int, fail func() error) error {
	name := fmt.Sprintf("scale-%d", n)
	sel := "app=" + name
	w := newPodWatch()
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	events, err := cl.Watch(wctx, "pods", "default", sel)
	if err != nil {
		return fmt.Errorf("watch pods: %w", err)
	}
	go w.follow(events)
	r := int32(n)
	d := &manifests.Deployment{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.DeploymentSpec{
			Replicas: &r,
			Selector: &manifests.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: manifests.PodTemplateSpec{
				ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       manifests.PodSpec{Containers: []manifests.Container{{Name: "main", Image: "fake://run"}}},
			},
		},
	}
	seq0, err := lastSeq(ctx, js, "KV_"+messaging.BucketObjects)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if _, _, err := cl.Apply(ctx, d); err != nil {
		return fmt.Errorf("apply deployment: %w", err)
	}
	// The watch is the measure; a slow consumer may lose events, so when
	// it shows no progress for a few seconds a list fills any gap (at the
	// time it is seen). Lists of thousands of pods are heavy for the
	// control plane, whose memory this process measures: only then.
	var seenC, seenB, seenR int
	fill := func() {
		c, b, r := w.counts()
		if c != seenC || b != seenB || r != seenR {
			seenC, seenB, seenR = c, b, r
			return
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		objs, _, err := cl.List(lctx, "pods", "default", sel)
		if err != nil {
			return
		}
		now := time.Now()
		for _, o := range objs {
			w.see(client.Event{Type: client.Modified, Object: o}, now)
		}
	}
	if err := waitFor(ctx, 10*time.Second, func() (bool, string) {
		created, bound, _ := w.counts()
		return bound >= n, fmt.Sprintf("%d of %d pods created, %d bound", created, n, bound)
	}, fail, fill); err != nil {
		return err
	}
	first, lastCreated, lastBound := w.times()
	all := lastBound.Sub(t0)
	figName := fmt.Sprintf("scale: Deployment of %d, apply -> all bound, pods/s", n)
	switch n {
	case 1000:
		figName = figures.DeploymentBind1000
	case 10000:
		figName = figures.DeploymentBind10000
	}
	// The ReplicaSet's pace and the scheduler's together: a reference;
	// the goal is on the pending pods' figure (pendingPods).
	figures.Record(figName, float64(n)/all.Seconds(), "pods/s", "")
	fmt.Printf("    (%d pods: apply -> all bound %.2f s; first created -> last bound %.2f s; all created after %.2f s, the ReplicaSet's pace; %s)\n",
		n, all.Seconds(), lastBound.Sub(first).Seconds(), lastCreated.Sub(t0).Seconds(), objectWrites(ctx, js, seq0, n, t0, nil))
	if err := waitFor(ctx, 10*time.Second, func() (bool, string) {
		_, _, running := w.counts()
		return running >= n, fmt.Sprintf("%d of %d pods Running", running, n)
	}, fail, fill); err != nil {
		return err
	}
	figures.Record(fmt.Sprintf("scale: %d pods, apply -> all Running", n), time.Since(t0).Seconds(), "s", "")
	return nil
}

// waitFor polls done every 50ms until it reports true, printing its
// progress every report interval; fail ends the wait with an error, and
// fill runs every 3 s.
func waitFor(ctx context.Context, report time.Duration, done func() (bool, string), fail func() error, fill func()) error {
	t0 := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastReport, lastFill := t0, t0
	for {
		ok, what := done()
		if ok {
			return nil
		}
		if err := fail(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		now := time.Now()
		if now.Sub(lastReport) >= report {
			fmt.Printf("    ... %.0f s: %s\n", now.Sub(t0).Seconds(), what)
			lastReport = now
		}
		if fill != nil && now.Sub(lastFill) >= 3*time.Second {
			fill()
			lastFill = now
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// objectWrites says how many writes the objects bucket took since its
// stream's sequence was seq0 at t0: per pod of n and per second. Every one
// is a disk sync, one at a time (JetStream's file store syncs each message
// under the stream's lock), which bounds pods per second.
func objectWrites(ctx context.Context, js jetstream.JetStream, seq0 uint64, n int, t0 time.Time, wc *writeCounter) string {
	seq, err := lastSeq(ctx, js, "KV_"+messaging.BucketObjects)
	if err != nil {
		return err.Error()
	}
	w := float64(seq - seq0)
	kinds := "not counted"
	if wc != nil {
		kinds = wc.result(seq)
	}
	return fmt.Sprintf("%.0f object writes since, %.1f per pod, %.0f /s: %s", w, w/float64(n), w/time.Since(t0).Seconds(), kinds)
}

// writeCounter counts the object writes after a stream sequence as they
// happen (the bucket keeps one revision per key: counted later, a pod's
// binding would be gone under its status), by resource, the pods' by
// what they changed.
type writeCounter struct {
	mu     sync.Mutex
	counts map[string]int
	last   uint64
	stop   context.CancelFunc
	done   chan struct{}
}

func countWrites(ctx context.Context, js jetstream.JetStream, seq0 uint64) (*writeCounter, error) {
	ctx, cancel := context.WithCancel(ctx)
	cons, err := js.OrderedConsumer(ctx, "KV_"+messaging.BucketObjects, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq0 + 1})
	if err != nil {
		cancel()
		return nil, err
	}
	c := &writeCounter{counts: map[string]int{}, last: seq0, stop: cancel, done: make(chan struct{})}
	prefix := "$KV." + messaging.BucketObjects + "."
	it, err := cons.Messages()
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(c.done)
		defer it.Stop()
		for ctx.Err() == nil {
			msg, err := it.Next()
			if err != nil {
				return
			}
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			resource, _, _ := strings.Cut(strings.TrimPrefix(msg.Subject(), prefix), ".")
			if resource == "pods" {
				resource += " " + podWrite(msg.Data())
			}
			c.mu.Lock()
			c.counts[resource]++
			c.last = md.Sequence.Stream
			c.mu.Unlock()
		}
	}()
	return c, nil
}

// podWrite says what a pod's stored revision is.
func podWrite(data []byte) string {
	if len(data) == 0 {
		return "deleted"
	}
	var p struct {
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
		Status struct {
			Phase      string `json:"phase"`
			Conditions []struct {
				Type, Status string
			} `json:"conditions"`
		} `json:"status"`
	}
	_ = json.Unmarshal(data, &p)
	unsched := false
	for _, c := range p.Status.Conditions {
		unsched = unsched || (c.Type == "PodScheduled" && c.Status == "False")
	}
	switch {
	case p.Spec.NodeName == "" && unsched:
		return "unschedulable"
	case p.Spec.NodeName == "":
		return "created"
	case p.Status.Phase == "Pending":
		return "bound"
	}
	return strings.ToLower(p.Status.Phase)
}

// result stops counting once the writes up to seq are counted (or after
// 5 s) and says what they were.
func (c *writeCounter) result(seq uint64) string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		last := c.last
		c.mu.Unlock()
		if last >= seq || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c.counts)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, c.counts[k]))
	}
	return strings.Join(parts, ", ")
}

func lastSeq(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s info: %w", stream, err)
	}
	return info.State.LastSeq, nil
}

// fleetProc is the child process running the simulated agents.
type fleetProc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	launched time.Duration
	done     chan error
	stopped  bool
}

// fleetProcs are the fleet's processes.
type fleetProcs []*fleetProc

func (fs fleetProcs) err() error {
	for _, f := range fs {
		if err := f.err(); err != nil {
			return err
		}
	}
	return nil
}

func (fs fleetProcs) stop() {
	for _, f := range fs {
		f.stdin.Close() // all at once: each closes its agents
	}
	for _, f := range fs {
		f.stop()
	}
}

func (fs fleetProcs) launched() time.Duration {
	var d time.Duration
	for _, f := range fs {
		d = max(d, f.launched)
	}
	return d
}

func startFleet(ctx context.Context, cfg config, url string, first, n int) (*fleetProc, error) {
	cmd, stdin, sc, err := startChild(ctx, "fleet", "-role=fleet", "-url="+url,
		"-first="+strconv.Itoa(first), "-nodes="+strconv.Itoa(n), "-heartbeat="+cfg.heartbeat.String(),
		"-agent-poll="+cfg.agentPoll.String(), "-start-concurrency="+strconv.Itoa(cfg.concurrency),
		"-cpuprofile="+cfg.cpuProfile)
	if err != nil {
		return nil, err
	}
	f := &fleetProc{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	if !sc.Scan() {
		err := cmd.Wait()
		return nil, fmt.Errorf("fleet exited before starting its agents: %v", err)
	}
	line := sc.Text()
	d, err := time.ParseDuration(strings.TrimPrefix(line, "launched "))
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("fleet said %q", line)
	}
	f.launched = d
	go func() {
		for sc.Scan() {
			fmt.Println("    fleet:", sc.Text())
		}
		f.done <- cmd.Wait()
	}()
	return f, nil
}

// err reports whether the fleet exited.
func (f *fleetProc) err() error {
	select {
	case err := <-f.done:
		f.done <- err
		if err == nil {
			err = errors.New("exited")
		}
		return fmt.Errorf("fleet: %w", err)
	default:
		return nil
	}
}

// stop closes the fleet's stdin (it closes its agents and exits) and
// waits for it.
func (f *fleetProc) stop() {
	if f.stopped {
		return
	}
	f.stopped = true
	f.stdin.Close()
	select {
	case <-f.done:
	case <-time.After(60 * time.Second):
		f.cmd.Process.Kill()
		<-f.done
	}
}

// runFleet is the child: it starts the agents, says how long that took,
// and runs them until its stdin closes.
func runFleet(ctx context.Context, cfg config) error {
	if cfg.url == "" {
		return errors.New("-role fleet needs -url")
	}
	t0 := time.Now()
	c, err := sim.New(ctx, sim.Options{
		URL:               cfg.url,
		FirstNode:         cfg.first,
		Nodes:             cfg.nodes,
		NoWait:            true,
		HeartbeatInterval: cfg.heartbeat,
		StartConcurrency:  cfg.concurrency,
		Agent:             agentConfig(cfg),
	})
	if err != nil {
		return err
	}
	fmt.Printf("launched %v\n", time.Since(t0))
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		phaseProfileCommand(sc.Text())
	}
	return c.Close()
}

// raiseMaxConsumers lets stream hold a consumer per node and then some:
// nats-server (2.11 on) allows 1,000 consumers per stream unless the
// stream (or account) says otherwise, and every agent's assignments watch
// is one. Without this, the agents past the ~1,000th never see their pods.
func raiseMaxConsumers(ctx context.Context, js jetstream.JetStream, stream string, nodes int) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	cfg := s.CachedInfo().Config
	if want := nodes + 1000; cfg.MaxConsumers < 0 || cfg.MaxConsumers < want {
		cfg.MaxConsumers = want
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("raise %s max_consumers to %d: %w", stream, want, err)
		}
	}
	return nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// phaseProfiler asks the control plane and the fleet's processes for CPU
// profiles of one phase (-phase-cpuprofile).
type phaseProfiler struct {
	prefix string
	cp     io.Writer
	fleet  []io.Writer
}

// start starts the profiles of the phase named phase.
func (p *phaseProfiler) start(phase string) {
	if p == nil {
		return
	}
	prefix := p.prefix + "-" + phase
	phaseProfileCommand("cpu " + prefix + ".harness")
	fmt.Fprintf(p.cp, "cpu %s.cp\n", prefix)
	for i, f := range p.fleet {
		fmt.Fprintf(f, "cpu %s.fleet%d\n", prefix, i)
	}
}

func (p *phaseProfiler) stop() {
	if p == nil {
		return
	}
	phaseProfileCommand("cpustop")
	io.WriteString(p.cp, "cpustop\n")
	for _, f := range p.fleet {
		io.WriteString(f, "cpustop\n")
	}
}
