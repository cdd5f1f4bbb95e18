package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

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

func readProc(pid int) procStat {
	var s procStat
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			f := bytes.Fields(sc.Bytes())
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseUint(string(f[1]), 10, 64)
			switch string(f[0]) {
			case "VmRSS:":
				s.rss = kb << 10
			case "VmHWM:":
				s.hwm = kb << 10
			}
		}
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command (which may hold spaces): utime is the
		// 14th field of the line, stime the 15th.
		if i := bytes.LastIndexByte(data, ')'); i >= 0 {
			f := bytes.Fields(data[i+1:])
			if len(f) > 13 {
				ut, _ := strconv.ParseUint(string(f[11]), 10, 64)
				st, _ := strconv.ParseUint(string(f[12]), 10, 64)
				s.cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
			}
		}
	}
	return s
}
