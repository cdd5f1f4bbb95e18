package scheduler

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller"
	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/events"
	"github.com/edgeorch/edgeorch/controlplane/store"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/messaging/natstest"
)

// BenchmarkSchedule places one pod among 1,000 nodes running 10 pods each.
func BenchmarkSchedule(b *testing.B) {
	var nodes = make([]*manifests.Node, 0, 1000)
	running := map[string][]*manifests.Pod{}
	for i := range 1000 {
		name := fmt.Sprintf("node-%04d", i)
		nodes = append(nodes, node(name, labels("site", fmt.Sprint(i%10)), alloc("4", "4Gi", "110")))
		for j := range 10 {
			running[name] = append(running[name], pod(fmt.Sprintf("p-%d-%d", i, j), requests("50m", "10Mi"), podLabels("app", fmt.Sprint(j))))
		}
	}
	p := pod("new", selector("site", "3"), requests("100m", "20Mi"), podLabels("app", "1"))
	b.ResetTimer()
	for range b.N {
		if _, fe := Schedule(p, nodes, running); fe != nil {
			b.Fatal(fe)
		}
	}
}

// BenchmarkSchedule10k places one pod of a Deployment among 10,000 nodes
// running one pod each (the simulated fleet's shape).
func BenchmarkSchedule10k(b *testing.B) {
	nodes := make([]*manifests.Node, 0, 10000)
	running := map[string][]*manifests.Pod{}
	for i := range 10000 {
		name := fmt.Sprintf("node-%05d", i)
		nodes = append(nodes, node(name, labels(LabelZone, fmt.Sprintf("z%d", i%5)), alloc("4", "4Gi", "110")))
		running[name] = append(running[name], pod(fmt.Sprintf("p-%d", i), ownedBy("rs-1"), requests("10m", "16Mi"), podLabels("app", "web")))
	}
	p := pod("new", ownedBy("rs-1"), requests("10m", "16Mi"), podLabels("app", "web"))
	b.ResetTimer()
	for range b.N {
		if _, fe := Schedule(p, nodes, running); fe != nil {
			b.Fatal(fe)
		}
	}
}

// BenchmarkDecide10k is BenchmarkSchedule10k as the controller decides:
// over its cached node infos, each decision starting where the last one
// stopped.
func BenchmarkDecide10k(b *testing.B) {
	infos := make([]*nodeInfo, 0, 10000)
	for i := range 10000 {
		ni := &nodeInfo{}
		ni.setNode(node(fmt.Sprintf("node-%05d", i), labels(LabelZone, fmt.Sprintf("z%d", i%5)), alloc("4", "4Gi", "110")))
		ni.add(pod(fmt.Sprintf("p-%d", i), ownedBy("rs-1"), requests("10m", "16Mi"), podLabels("app", "web")))
		infos = append(infos, ni)
	}
	p := pod("new", ownedBy("rs-1"), requests("10m", "16Mi"), podLabels("app", "web"))
	next := 0
	b.ResetTimer()
	for range b.N {
		var fe *FitError
		if _, fe, next = schedule(p, infos, next); fe != nil {
			b.Fatal(fe)
		}
	}
}

// BenchmarkDecideBarePods is one decision (and the placed pod counted on
// its node) among 1,000 nodes each running 30 pods without a controller (a DaemonSet's, a Deployment's and bare
// pods of five label sets): the default spreading counts, on every
// candidate, the pods carrying the new pod's labels.
func BenchmarkDecideBarePods(b *testing.B) {
	infos := make([]*nodeInfo, 0, 1000)
	for i := range 1000 {
		ni := &nodeInfo{}
		ni.setNode(node(fmt.Sprintf("node-%04d", i), alloc("4", "4Gi", "110")))
		for j := range 30 {
			ni.add(pod(fmt.Sprintf("p-%d-%d", i, j), requests("10m", "16Mi"), podLabels("app", fmt.Sprint(j%5), "tier", "edge")))
		}
		infos = append(infos, ni)
	}
	byName := map[string]*nodeInfo{}
	for _, ni := range infos {
		byName[ni.node.Name] = ni
	}
	next := 0
	b.ResetTimer()
	for i := range b.N {
		// A burst of like pods, each counted on its node once placed
		// (as the scheduler does), up to 80 per node.
		p := pod(fmt.Sprintf("new-%d", i), requests("10m", "16Mi"), podLabels("app", "3", "tier", "edge"))
		var name string
		var fe *FitError
		if name, fe, next = schedule(p, infos, next); fe != nil {
			b.Fatal(fe)
		}
		byName[name].add(p)
	}
}

// BenchmarkBind1000 measures the scheduler controller end to end against a
// real store: 1,000 pending pods of one owner (as a Deployment creates
// them) are bound to 100 nodes; it reports pods bound per second.
func BenchmarkBind1000(b *testing.B) { benchBind(b, 100, 1000, true) }

// BenchmarkBind1000On10kNodes binds 1,000 pods among 10,000 nodes.
func BenchmarkBind1000On10kNodes(b *testing.B) { benchBind(b, 10000, 1000, false) }

// BenchmarkBind1000Synced is BenchmarkBind1000 with the buckets on disk,
// JetStream syncing every write (the control plane's default), and the
// Scheduled events recorded: the binding writes' ceiling.
func BenchmarkBind1000Synced(b *testing.B) { benchBindOn(b, syncedStore, 100, 1000, true, true) }

func benchBind(b *testing.B, nNodes, nPods int, checkSpread bool) {
	benchBindOn(b, func(b *testing.B) *store.Store { return controllertest.Start(b).Store }, nNodes, nPods, checkSpread, false)
}

// syncedStore starts a NATS server whose JetStream syncs every write to
// disk and returns a store over its objects bucket, on disk, committing
// concurrent writes in batches as the control plane's does.
func syncedStore(b *testing.B) *store.Store {
	env := natstest.StartSynced(b, "scheduler-bench")
	return store.New(env.Buckets.Objects, store.WithJetStream(env.JS))
}

func benchBindOn(b *testing.B, newStore func(*testing.B) *store.Store, nNodes, nPods int, checkSpread, withEvents bool) {
	controllertest.QuietLogs(b)
	for range b.N {
		b.StopTimer()
		st := newStore(b)
		ctx, cancel := context.WithCancel(context.Background())
		podInf := controller.NewInformer(st, "pods")
		nodeInf := controller.NewInformer(st, "nodes")
		create := func(objs []manifests.Object) {
			// Concurrently: a store syncing every write creates them
			// one sync at a time either way.
			errs := make(chan error, len(objs))
			sem := make(chan struct{}, 32)
			for _, o := range objs {
				sem <- struct{}{}
				go func() {
					defer func() { <-sem }()
					_, err := st.Create(ctx, o)
					errs <- err
				}()
			}
			for range objs {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
		}
		var objs []manifests.Object
		for i := range nNodes {
			n := node(fmt.Sprintf("node-%05d", i), labels(LabelZone, fmt.Sprintf("z%d", i%5)), alloc("4", "4Gi", "110"))
			n.APIVersion, n.Kind = "v1", "Node"
			objs = append(objs, n)
		}
		create(objs)
		objs = objs[:0]
		for i := range nPods {
			p := pod(fmt.Sprintf("web-%05d", i), ownedBy("rs-1"), podLabels("app", "web"), requests("10m", "16Mi"))
			p.APIVersion, p.Kind = "v1", "Pod"
			objs = append(objs, p)
		}
		create(objs)
		var bound atomic.Int64
		podInf.AddHandler(func(old, new manifests.Object) {
			np, _ := new.(*manifests.Pod)
			op, _ := old.(*manifests.Pod)
			if np != nil && np.Spec.NodeName != "" && (op == nil || op.Spec.NodeName == "") {
				bound.Add(1)
			}
		})
		var rec Recorder
		if withEvents {
			rec = events.NewRecorder(st, events.Options{Component: Name})
		}
		sched := NewController(st, podInf, nodeInf, rec)
		podInf.AddHandler(sched.PodChanged)
		nodeInf.AddHandler(sched.NodeChanged)
		go func() { _ = podInf.Run(ctx) }()
		go func() { _ = nodeInf.Run(ctx) }()
		if err := podInf.WaitForSync(ctx); err != nil {
			b.Fatal(err)
		}
		if err := nodeInf.WaitForSync(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		go sched.Run(ctx)
		for bound.Load() < int64(nPods) {
			time.Sleep(time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(nPods)/elapsed.Seconds(), "pods/s")
		if checkSpread {
			// Spread: one owner's pods evenly over the nodes.
			per := map[string]int{}
			for _, o := range podInf.List(manifests.Selector{}) {
				per[o.(*manifests.Pod).Spec.NodeName]++
			}
			for n, c := range per {
				if c != nPods/nNodes {
					b.Fatalf("node %s got %d pods, want %d", n, c, nPods/nNodes)
				}
			}
		}
		cancel()
		b.StartTimer()
	}
}
