// Command latency breaks the apply→Running latency of a cached wasm pod
// into stages. It starts a real edge-controlplane (--dev) and edge-agent
// from each -bin directory, applies one wasm pod at a time and watches the
// store itself (raw JetStream KV watchers on the objects and assignments
// buckets) and every message on the server (a wiretap subscription to
// ">"), so each sample gives:
//
//	apply     apply request sent → the pod's first entry in the objects bucket
//	schedule  first entry → the entry with spec.nodeName (the bind)
//	assign    bind entry → the assignment entry for the agent
//	agent     assignment → the entry with status.phase Running (agent start
//	          and its status report, including any earlier status writes)
//	watch     Running entry → the API watch event at the client
//	total     apply request sent → API watch event (the figure of
//	          docs/BENCHMARKS.md)
//
// and how many synced JetStream writes (KV puts and integration messages)
// happened from apply to Running. Several -bin directories are measured in
// alternating rounds in the same run, so that a baseline and a change see
// the same machine load.
//
// Run it with `go run ./test/bench/latency` after `make build wasm`.
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
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging"
	"github.com/edgeorch/edgeorch/test/bench/cluster"
	"github.com/edgeorch/edgeorch/test/bench/internal/figures"
	"github.com/edgeorch/edgeorch/test/bench/proc"
)

// rawPuts holds, per -bin directory, the times of raw JetStream KV puts
// (synced) on the same server: the floor of each write on the path.
var rawPuts = map[string][]time.Duration{}

// cpuPerPod holds, per -bin directory and session, the CPU time the
// control plane and the agent spent per pod (apply, Running, delete).
var cpuPerPod = map[string][][2]time.Duration{}

// keepLogs, when set, is where each session's daemon logs are kept.
var keepLogs string

// wiretap turns the subscription to every message on.
var wiretap bool

func main() {
	bins := flag.String("bin", "bin", "comma-separated directories holding edge-controlplane and edge-agent; each is measured")
	wasmDir := flag.String("wasm", "wasm/build", "directory holding the built test modules")
	samples := flag.Int("pods", 60, "samples per -bin directory (after one warm-up pod per round)")
	rounds := flag.Int("rounds", 2, "rounds per -bin directory, alternating between directories")
	timeline := flag.Bool("timeline", false, "print the message timeline of each directory's median sample")
	flag.StringVar(&keepLogs, "logs", "", "directory to keep the daemons' logs in (one subdirectory per session)")
	flag.BoolVar(&wiretap, "wiretap", true, "subscribe to every message (for the write count and -timeline); costs the server a copy of each")
	flag.Parse()
	dirs := strings.Split(*bins, ",")
	if *samples < 1 || *rounds < 1 {
		fmt.Fprintln(os.Stderr, "latency: -pods and -rounds must be >= 1")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	all := map[string][]sample{}
	per := (*samples + *rounds - 1) / *rounds
	for r := 0; r < *rounds; r++ {
		for _, d := range dirs {
			s, err := session(ctx, d, *wasmDir, per)
			if err != nil {
				fmt.Fprintf(os.Stderr, "latency: %s: %v\n", d, err)
				os.Exit(1)
			}
			all[d] = append(all[d], s...)
		}
	}
	for _, d := range dirs {
		report(d, all[d], *timeline)
	}
}

// sample is one pod's timings, as offsets from the apply request.
type sample struct {
	reply, create, bind, assign, running, watch time.Duration
	podWrites                                   int // pod entries until Running
	msgs                                        []wire
}

type wire struct {
	at   time.Duration
	subj string
	size int
}

func (s sample) stages() []time.Duration {
	return []time.Duration{s.create, s.bind - s.create, s.assign - s.bind, s.running - s.assign, s.watch - s.running, s.watch}
}

var stageNames = []string{"apply", "schedule", "assign", "agent", "watch", "total"}

func report(dir string, ss []sample, timeline bool) {
	fmt.Printf("\n# apply → Running, cached wasm pod, %s (%d samples)\n", dir, len(ss))
	for i, name := range stageNames {
		var d []time.Duration
		for _, s := range ss {
			d = append(d, s.stages()[i])
		}
		goal := ""
		if name == "total" {
			goal = "  (goal ≤ 10ms median)"
		}
		fmt.Printf("latency.%-9s %9s median  %9s p99%s\n", name, figures.Percentile(d, 50), figures.Percentile(d, 99), goal)
		if name == "total" { // the issue-8 figure, for make bench's summary
			med, p99 := figures.WasmApplyMedian, figures.WasmApplyP99
			if dir != "bin" {
				med, p99 = med+" ("+dir+")", p99+" ("+dir+")"
			}
			figures.Duration(med, figures.Percentile(d, 50), "< 10 ms")
			figures.Duration(p99, figures.Percentile(d, 99), "")
		}
	}
	var writes, pods []int
	for _, s := range ss {
		writes = append(writes, syncedWrites(s))
		pods = append(pods, s.podWrites)
	}
	if wiretap {
		fmt.Printf("latency.writes    %9d synced JetStream writes apply→Running (median)\n", medianInt(writes))
	}
	fmt.Printf("latency.rawput    %9s median  %9s p99  raw JetStream KV put, synced, same server\n", figures.Percentile(rawPuts[dir], 50), figures.Percentile(rawPuts[dir], 99))
	fmt.Printf("latency.podwrites %9d pod entries apply→Running (median)\n", medianInt(pods))
	var cpCPU, agCPU time.Duration
	for _, c := range cpuPerPod[dir] {
		cpCPU += c[0]
		agCPU += c[1]
	}
	if n := time.Duration(len(cpuPerPod[dir])); n > 0 {
		fmt.Printf("latency.cpu       %9s control plane  %9s agent  CPU per pod (apply, Running, delete)\n", (cpCPU / n).Round(10*time.Microsecond), (agCPU / n).Round(10*time.Microsecond))
	}
	if timeline && len(ss) > 0 {
		sorted := append([]sample(nil), ss...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].watch < sorted[j].watch })
		m := sorted[len(sorted)/2]
		fmt.Printf("# timeline of the median sample (%s): offset from apply, subject, bytes\n", m.watch.Round(10*time.Microsecond))
		for _, w := range m.msgs {
			if w.at > m.watch {
				break
			}
			fmt.Printf("  %9s  %s  %d\n", w.at.Round(time.Microsecond), w.subj, w.size)
		}
	}
}

// syncedWrites counts the stream writes among the messages up to Running:
// KV puts and integration messages.
func syncedWrites(s sample) int {
	n := 0
	for _, w := range s.msgs {
		if w.at > s.running {
			break
		}
		if strings.HasPrefix(w.subj, "$KV.") || strings.HasPrefix(w.subj, "_edge.ingest.") {
			n++
		}
	}
	return n
}

func medianInt(v []int) int {
	if len(v) == 0 {
		return 0
	}
	s := append([]int(nil), v...)
	sort.Ints(s)
	return s[len(s)/2]
}

// tracer records, while on, the time of every entry the KV watchers see
// and every message the wiretap sees.
type tracer struct {
	mu      sync.Mutex
	t0      time.Time
	on      bool
	pod     string // key of the pod measured, in the objects bucket
	asg     string // its assignment key
	s       sample
	running chan struct{}
}

func (t *tracer) begin(name string) {
	t.mu.Lock()
	t.t0 = time.Now()
	t.on = true
	t.pod = messaging.ObjectKey("pods", "default", name)
	t.asg = messaging.AssignmentKey("bench", "default", name)
	t.s = sample{}
	t.running = make(chan struct{})
	t.mu.Unlock()
}

func (t *tracer) end() sample {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.on = false
	return t.s
}

func (t *tracer) wiretap(m *nats.Msg) {
	now := time.Now()
	if strings.HasPrefix(m.Subject, "_INBOX.") || strings.HasPrefix(m.Subject, "$JS.ACK.") || strings.HasPrefix(m.Reply, "$JS.ACK.") {
		return // replies, acknowledgements and consumer deliveries (the tap
		// matches their inbox subjects but sees the stored subject)
	}
	t.mu.Lock()
	if t.on {
		t.s.msgs = append(t.s.msgs, wire{now.Sub(t.t0), m.Subject, len(m.Data)})
	}
	t.mu.Unlock()
}

func (t *tracer) podEntry(e jetstream.KeyValueEntry) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.on || e.Key() != t.pod || e.Operation() != jetstream.KeyValuePut {
		return
	}
	var p struct {
		Spec   struct{ NodeName string }
		Status struct{ Phase string }
	}
	_ = json.Unmarshal(e.Value(), &p)
	at := now.Sub(t.t0)
	if t.s.running == 0 {
		t.s.podWrites++
	}
	if t.s.create == 0 {
		t.s.create = at
	}
	if p.Spec.NodeName != "" && t.s.bind == 0 {
		t.s.bind = at
	}
	if p.Status.Phase == string(manifests.PodRunning) && t.s.running == 0 {
		t.s.running = at
	}
}

func (t *tracer) asgEntry(e jetstream.KeyValueEntry) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on && e.Key() == t.asg && e.Operation() == jetstream.KeyValuePut && t.s.assign == 0 {
		t.s.assign = now.Sub(t.t0)
	}
}

func (t *tracer) watchEvent(ev client.Event) {
	now := time.Now()
	p, ok := ev.Object.(*manifests.Pod)
	if !ok || p.Status.Phase != manifests.PodRunning {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on && p.Name == strings.TrimPrefix(t.pod, "pods.default.") && t.s.watch == 0 {
		t.s.watch = now.Sub(t.t0)
		close(t.running)
	}
}

// session starts a control plane and an agent from dir, measures n pods
// (after one warm-up pod that fetches and compiles the module) and stops
// them.
func session(ctx context.Context, dir, wasmDir string, n int) ([]sample, error) {
	tmp, err := os.MkdirTemp("", "edge-latency-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if keepLogs != "" {
		defer func() {
			dst, err := os.MkdirTemp(keepLogs, "session-")
			if err != nil {
				return
			}
			for _, f := range []string{"cp.log", "agent.log"} {
				if b, err := os.ReadFile(filepath.Join(tmp, f)); err == nil {
					os.WriteFile(filepath.Join(dst, f), b, 0o644)
				}
			}
		}()
	}
	cp, url, err := cluster.StartControlPlane(ctx, dir, tmp, 20*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	c := client.New(nc)
	ag, err := cluster.StartAgent(dir, tmp, url, "bench")
	if err != nil {
		return nil, err
	}
	defer ag.Stop()
	if err := proc.Poll(ctx, 50*time.Millisecond, func() error { return cluster.NodeReady(ctx, c, "bench") }); err != nil {
		return nil, fmt.Errorf("wait node: %w", err)
	}
	f, err := os.Open(filepath.Join(wasmDir, "sleep.wasm"))
	if err != nil {
		return nil, fmt.Errorf("module sleep: %w (run make wasm)", err)
	}
	_, err = c.PushModule(ctx, "sleep:bench", f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("push sleep: %w", err)
	}

	tr := &tracer{}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	for _, b := range []struct {
		bucket, filter string
		f              func(jetstream.KeyValueEntry)
	}{
		{messaging.BucketObjects, messaging.ObjectFilter("pods", "default"), tr.podEntry},
		{messaging.BucketAssignments, messaging.AssignmentFilter("bench"), tr.asgEntry},
	} {
		kv, err := js.KeyValue(ctx, b.bucket)
		if err != nil {
			return nil, err
		}
		w, err := kv.Watch(wctx, b.filter, jetstream.UpdatesOnly())
		if err != nil {
			return nil, err
		}
		go func(f func(jetstream.KeyValueEntry)) {
			for e := range w.Updates() {
				if e != nil {
					f(e)
				}
			}
		}(b.f)
	}
	// A second connection for the wiretap, so that its volume does not
	// delay the watchers' deliveries.
	if wiretap {
		tap, err := nats.Connect(url)
		if err != nil {
			return nil, err
		}
		defer tap.Close()
		if _, err := tap.Subscribe(">", tr.wiretap); err != nil {
			return nil, err
		}
		if err := tap.Flush(); err != nil {
			return nil, err
		}
	}
	events, err := c.Watch(wctx, "pods", "default", "bench=latency")
	if err != nil {
		return nil, err
	}
	go func() {
		for ev := range events {
			tr.watchEvent(ev)
		}
	}()
	if err := nc.Flush(); err != nil {
		return nil, err
	}

	var out []sample
	var cpu0 [2]time.Duration
	for i := 0; i <= n; i++ {
		if i == 1 {
			cpu0 = [2]time.Duration{proc.CPUTime(cp.PID()), proc.CPUTime(ag.PID())}
		}
		name := fmt.Sprintf("lat-%d", i)
		tr.begin(name)
		if _, _, err := c.ApplyRaw(ctx, podManifest(name), false); err != nil {
			return nil, fmt.Errorf("apply %s: %w", name, err)
		}
		select {
		case <-tr.running:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("pod %s not Running after 30s", name)
		}
		// Let the KV watchers' deliveries of the same writes land.
		if err := proc.Poll(ctx, time.Millisecond, func() error {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if tr.s.running == 0 || tr.s.assign == 0 || tr.s.bind == 0 {
				return fmt.Errorf("pod %s: KV watchers behind", name)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		s := tr.end()
		if i > 0 { // the first fetches and compiles the module
			out = append(out, s)
		}
		if _, err := c.Delete(ctx, "pods", "default", name); err != nil {
			return nil, err
		}
		// Wait until the agent has removed it, so samples do not overlap.
		if err := proc.Poll(ctx, 5*time.Millisecond, func() error {
			if _, err := c.Get(ctx, "pods", "default", name); !client.IsNotFound(err) {
				return fmt.Errorf("pod %s still there (%v)", name, err)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond) // space the samples: the deletion's writes end meanwhile
	}
	// The floor of each synced write: raw KV puts on the same server.
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "latency-raw"})
	if err != nil {
		return nil, err
	}
	for i := 0; i < 50; i++ {
		t0 := time.Now()
		if _, err := kv.Put(ctx, fmt.Sprintf("k%d", i), []byte(`{"k":"v"}`)); err != nil {
			return nil, err
		}
		rawPuts[dir] = append(rawPuts[dir], time.Since(t0))
	}
	_ = js.DeleteKeyValue(ctx, "latency-raw")
	if n > 0 {
		cpuPerPod[dir] = append(cpuPerPod[dir], [2]time.Duration{
			(proc.CPUTime(cp.PID()) - cpu0[0]) / time.Duration(n),
			(proc.CPUTime(ag.PID()) - cpu0[1]) / time.Duration(n)})
	}
	return out, nil
}

func podManifest(name string) json.RawMessage {
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "labels": map[string]string{"bench": "latency"}},
		"spec": map[string]any{
			"runtimeClassName": "wasm",
			"containers": []any{map[string]any{
				"name": "c", "image": "sleep:bench",
				"resources": map[string]any{"limits": map[string]any{"memory": "8Mi"}},
			}},
		},
	}
	b, _ := json.Marshal(pod)
	return b
}
