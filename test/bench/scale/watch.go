package main

import (
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/test/bench/proc"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/edgeagent"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
	"github.com/nats-io/nats.go/jetstream"
)

func agentConfig(cfg config) func(int, *edgeagent.Config) {
	return func(_ int, ac *edgeagent.Config) {
		ac.PollInterval = cfg.agentPoll
		ac.BackoffBase, ac.BackoffMax = time.Second, 30*time.Second
	}
}

// nodeWatch counts the Ready nodes a watch shows and keeps the latest
// copy of each node.
type nodeWatch struct {
	mu    sync.Mutex
	nodes map[string]bool
	objs  map[string]*manifests.Node
}

func newNodeWatch() *nodeWatch {
	return &nodeWatch{nodes: map[string]bool{}, objs: map[string]*manifests.Node{}}
}

// follow reads the nodes' entries of the objects bucket.
func (w *nodeWatch) follow(entries <-chan jetstream.KeyValueEntry) {
	for e := range entries {
		if e == nil {
			continue // the end of the initial values
		}
		ready := false
		var node *manifests.Node
		if e.Operation() == jetstream.KeyValuePut {
			if o, err := manifests.FromJSON(e.Value()); err == nil {
				node, _ = o.(*manifests.Node)
				ready = node != nil && sim.NodeIsReady(node)
			}
		}
		w.mu.Lock()
		if node != nil {
			w.objs[e.Key()] = node
		} else {
			delete(w.objs, e.Key())
		}
		if ready {
			w.nodes[e.Key()] = true
		} else {
			delete(w.nodes, e.Key())
		}
		w.mu.Unlock()
	}
}

// objects returns the latest copy of every node.
func (w *nodeWatch) objects() []*manifests.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*manifests.Node, 0, len(w.objs))
	for _, n := range w.objs {
		out = append(out, n)
	}
	return out
}

func (w *nodeWatch) ready() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.nodes)
}

// podWatch records when each pod was first seen, first seen bound and
// first seen Running.
type podWatch struct {
	mu                       sync.Mutex
	first, bound, running    map[string]time.Time
	firstAt, lastAt, boundAt time.Time
}

func newPodWatch() *podWatch {
	return &podWatch{first: map[string]time.Time{}, bound: map[string]time.Time{}, running: map[string]time.Time{}}
}

func (w *podWatch) follow(events <-chan client.Event) {
	for ev := range events {
		w.see(ev, time.Now())
	}
}

func (w *podWatch) see(ev client.Event, now time.Time) {
	pod, ok := ev.Object.(*manifests.Pod)
	if !ok || ev.Type == client.Deleted {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	key := pod.UID
	if _, ok := w.first[key]; !ok {
		w.first[key] = now
		if w.firstAt.IsZero() {
			w.firstAt = now
		}
		w.lastAt = now
	}
	if _, ok := w.bound[key]; !ok && pod.Spec.NodeName != "" {
		w.bound[key] = now
		w.boundAt = now
	}
	if _, ok := w.running[key]; !ok && pod.Status.Phase == manifests.PodRunning {
		w.running[key] = now
	}
}

func (w *podWatch) counts() (created, bound, running int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.first), len(w.bound), len(w.running)
}

// times are when the first pod was seen, the last pod was first seen, and
// the last pod was first seen bound.
func (w *podWatch) times() (first, lastCreated, lastBound time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.firstAt, w.lastAt, w.boundAt
}

// procStat is what /proc says of a process.
type procStat struct {
	rss, hwm uint64        // VmRSS, VmHWM (peak)
	cpu      time.Duration // user + system
}

// readProc reads the memory and CPU time of pid; what it cannot read is 0.
func readProc(pid int) procStat {
	return procStat{rss: bytesOf(proc.RSSKiB(pid)), hwm: bytesOf(proc.HWMKiB(pid)), cpu: proc.CPUTime(pid)}
}

// bytesOf turns a figure of package proc in KiB into bytes; one it could
// not read (-1) is 0.
func bytesOf(kib int) uint64 {
	if kib < 0 {
		return 0
	}
	return uint64(kib) << 10
}
