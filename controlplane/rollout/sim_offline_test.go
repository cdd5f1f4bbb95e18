package rollout_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/daemonset"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

// smallFleet is the size of the fleets of the offline tests: enough for
// three waves (2 canaries among site=a, 25%, the rest).
const smallFleet = 10

// offlineRolloutYAML is a Rollout of the probe DaemonSet to version (an
// annotation, so that every template differs) with the given health gate
// and offline wait.
func offlineRolloutYAML(name, version string, readySeconds, waitSeconds int) string {
	return probeRolloutYAML(name, "fake://run", version, "Rollback", readySeconds, 120, waitSeconds)
}

// convergedOn checks that each of the first n nodes runs one Running,
// Ready probe pod of revision hash.
func (f *fixture) convergedOn(n int, hash string) error {
	list, _, err := f.c.Client.List(f.ctx, "pods", "default", "app=probe")
	if err != nil {
		return err
	}
	byNode := map[string]int{}
	for _, o := range list {
		p := o.(*manifests.Pod)
		if got := p.Labels[daemonset.RevisionHashLabel]; got != hash {
			return fmt.Errorf("pod %s on %s has revision %s, want %s", p.Name, p.Spec.NodeName, got, hash)
		}
		if !manifests.IsPodReady(p) {
			return fmt.Errorf("pod %s on %s is not ready (%s)", p.Name, p.Spec.NodeName, p.Status.Phase)
		}
		byNode[p.Spec.NodeName]++
	}
	for i := range n {
		if byNode[sim.NodeName(i)] != 1 {
			return fmt.Errorf("node %s has %d pods", sim.NodeName(i), byNode[sim.NodeName(i)])
		}
	}
	return nil
}

// setLink takes nodes offline (down) or back online and waits until the
// control plane sees it.
func (f *fixture) setLink(down bool, nodes ...int) {
	f.t.Helper()
	for _, i := range nodes {
		if down {
			f.c.StopNode(i)
		} else {
			f.c.StartNode(i)
		}
	}
	controllertest.Eventually(f.t, 15*time.Second, func() error {
		for _, i := range nodes {
			o, err := f.c.Client.Get(f.ctx, "nodes", "", sim.NodeName(i))
			if err != nil {
				return err
			}
			if sim.NodeIsReady(o.(*manifests.Node)) == down {
				return fmt.Errorf("node %s: ready %v, want %v", sim.NodeName(i), !down, !down)
			}
		}
		return nil
	})
}

// podLog records, from a watch, every probe pod the control plane ever
// held, and the revisions each node's agent reported running.
type podLog struct {
	mu sync.Mutex
	// assigned: node -> revisions of the pods bound to it.
	assigned map[string][]string
	// ran: node -> revisions of the pods its agent reported a running
	// container of.
	ran map[string][]string
}

func (f *fixture) watchPods() *podLog {
	f.t.Helper()
	ctx, cancel := context.WithCancel(f.ctx)
	f.t.Cleanup(cancel)
	ch, err := f.c.Client.Watch(ctx, "pods", "default", "app=probe")
	if err != nil {
		f.t.Fatal(err)
	}
	l := &podLog{assigned: map[string][]string{}, ran: map[string][]string{}}
	add := func(m map[string][]string, node, rev string) {
		if !slices.Contains(m[node], rev) {
			m[node] = append(m[node], rev)
		}
	}
	go func() {
		for ev := range ch {
			p, ok := ev.Object.(*manifests.Pod)
			if !ok || p.Spec.NodeName == "" {
				continue
			}
			rev := p.Labels[daemonset.RevisionHashLabel]
			l.mu.Lock()
			add(l.assigned, p.Spec.NodeName, rev)
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Running != nil {
					add(l.ran, p.Spec.NodeName, rev)
				}
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *podLog) revisions(m map[string][]string, node string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(m[node])
}

// TestRolloutOfflineNodeReturnsMidRollout: a node offline since before a
// first rollout (v2) completed, and two more that went offline after it,
// are offline when a second rollout (v3) starts. They return while v3's
// wave 2 is gated (by one of them, offline, with a long waitSeconds):
//   - the one in wave 2 goes to v3 at once and lets the wave pass;
//   - the one in wave 3 keeps its pod until its wave starts, then goes
//     to v3;
//   - the one offline since before v2 completed goes straight from v1 to
//     v3, never to the intermediate v2. (Once v2 completed, the
//     DaemonSet's restored RollingUpdate deleted its old pod and created
//     none while it was NotReady, so it may not be in v3's plan: it then
//     gets v3 from the DaemonSet when it returns, as a node joining later.)
//
// None counts as a failure.
func TestRolloutOfflineNodeReturnsMidRollout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 110*time.Second)
	defer cancel()
	f := startFleet(t, ctx, smallFleet)
	// v3's plan (nodes sorted by name): wave 1 = 2 of site=a (nodes 0,
	// 2), wave 2 = 25% of the 9 or 10 planned nodes = 3 (nodes 1, 3, 4),
	// wave 3 = the rest (5-8, and 9 if planned).
	const sinceV1, inWave2, inWave3 = 9, 3, 5
	f.setLink(true, sinceV1)
	f.apply(offlineRolloutYAML("v2", "2", 0, 1))
	ro := f.waitPhase("v2", manifests.RolloutCompleted, 30*time.Second)
	v2 := ro.Status.Revision
	controllertest.Eventually(t, 20*time.Second, func() error { return f.convergedOn(smallFleet-1, v2) })
	f.setLink(true, inWave2, inWave3)

	log := f.watchPods()
	// v3 waits up to 90s for an offline node: only the node's return can
	// pass its wave 2 in time.
	f.apply(offlineRolloutYAML("v3", "3", 1, 90))
	ro = f.waitPhase("v3", manifests.RolloutProgressing, 20*time.Second)
	v3 := ro.Status.Revision
	if !slices.Contains(ro.Status.Waves[1].NodeNames, sim.NodeName(inWave2)) || !slices.Contains(ro.Status.Waves[2].NodeNames, sim.NodeName(inWave3)) {
		t.Fatalf("plan %+v", ro.Status.Waves)
	}
	controllertest.Eventually(t, 30*time.Second, func() error {
		ro := f.rollout("v3")
		w := ro.Status.Waves[1]
		if ro.Status.CurrentWave != 1 || w.Offline != 1 || w.Ready != w.Total-1 {
			return fmt.Errorf("wave %d, waves %v", ro.Status.CurrentWave, waveCounts(ro))
		}
		return nil
	})
	podOf := func(node string) *manifests.Pod {
		t.Helper()
		list, _, err := f.c.Client.List(ctx, "pods", "default", "app=probe")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range list {
			if p := o.(*manifests.Pod); p.Spec.NodeName == node {
				return p
			}
		}
		return nil
	}
	wave3Pod := podOf(sim.NodeName(inWave3))
	if wave3Pod == nil || wave3Pod.Labels[daemonset.RevisionHashLabel] != v2 {
		t.Fatalf("wave 3 node's pod before it returns: %+v", wave3Pod)
	}

	// They return while wave 2 is gated (only the wave-2 node's return
	// can pass it before waitSeconds).
	f.setLink(false, inWave2, inWave3, sinceV1)
	// The wave-2 node goes to v3; meanwhile (wave 2 still in progress)
	// the returned wave-3 node keeps its pod.
	checkedWave3 := false
	controllertest.Eventually(t, 30*time.Second, func() error {
		p3 := podOf(sim.NodeName(inWave3))
		if f.rollout("v3").Status.CurrentWave == 1 {
			checkedWave3 = true
			if p3 == nil || p3.UID != wave3Pod.UID {
				t.Errorf("wave 3 node got a new pod before its wave: %+v", p3)
			}
		}
		p := podOf(sim.NodeName(inWave2))
		if p == nil || p.Labels[daemonset.RevisionHashLabel] != v3 || !manifests.IsPodReady(p) {
			return fmt.Errorf("wave 2 node's pod: %v", p)
		}
		return nil
	})
	if !checkedWave3 {
		t.Errorf("wave 2 passed before its returned node was updated")
	}
	ro = f.waitPhase("v3", manifests.RolloutCompleted, 60*time.Second)
	w2 := ro.Status.Waves[1]
	if took := w2.CompletedAt.Sub(w2.StartedAt); took >= 90*time.Second {
		t.Errorf("wave 2 waited out waitSeconds (%v) instead of passing on the returned node", took)
	}
	controllertest.Eventually(t, 20*time.Second, func() error { return f.convergedOn(smallFleet, v3) })
	controllertest.Eventually(t, 10*time.Second, func() error {
		ro := f.rollout("v3")
		for _, w := range ro.Status.Waves {
			if w.Failed != 0 || w.Offline != 0 || w.Ready != w.Total {
				return fmt.Errorf("waves %v", waveCounts(ro))
			}
		}
		if ro.Status.AcceptedFailures != 0 {
			return fmt.Errorf("accepted failures %d", ro.Status.AcceptedFailures)
		}
		return nil
	})
	n := sim.NodeName(sinceV1)
	if got := log.revisions(log.assigned, n); slices.Contains(got, v2) || !slices.Contains(log.revisions(log.ran, n), v3) {
		t.Errorf("node %s offline since v1: pods bound %v, ran %v; want v3 (%s) only, never v2 (%s)", n, got, log.revisions(log.ran, n), v3, v2)
	}
	for _, i := range []int{inWave2, inWave3} {
		n := sim.NodeName(i)
		if got := log.revisions(log.assigned, n); !slices.Equal(got, []string{v2, v3}) {
			t.Errorf("node %s: pods bound %v, want v2 then v3", n, got)
		}
	}
}

// TestRolloutNodeOfflineMidWave: during wave 2 one node goes offline right
// after its new pod is Ready (before the health gate's readySeconds
// passed) and another went offline before its pod was updated. Neither
// passes the gate as ready nor fails it: the wave waits waitSeconds since
// it started, then continues; the rollout completes, and the nodes
// converge when they return (the updated one keeps its new pod).
func TestRolloutNodeOfflineMidWave(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := startFleet(t, ctx, smallFleet)
	// Wave 2 = nodes 1, 3, 4.
	const updated, before = 3, 4
	const wait = 8
	f.apply(offlineRolloutYAML("mid", "2", 4, wait))
	ro := f.waitPhase("mid", manifests.RolloutProgressing, 20*time.Second)
	rev := ro.Status.Revision
	if !slices.Contains(ro.Status.Waves[1].NodeNames, sim.NodeName(updated)) || !slices.Contains(ro.Status.Waves[1].NodeNames, sim.NodeName(before)) {
		t.Fatalf("plan %+v", ro.Status.Waves)
	}
	// During wave 1, node 4 (of wave 2) goes offline: its pod is never
	// updated while offline.
	f.setLink(true, before)
	if ro := f.rollout("mid"); ro.Status.CurrentWave != 0 {
		t.Logf("wave 1 passed before node %d went offline (wave %d)", before, ro.Status.CurrentWave)
	}

	// Node 3 goes offline as soon as its new pod is Ready.
	var newPod *manifests.Pod
	controllertest.Eventually(t, 30*time.Second, func() error {
		list, _, err := f.c.Client.List(ctx, "pods", "default", "app=probe")
		if err != nil {
			return err
		}
		for _, o := range list {
			p := o.(*manifests.Pod)
			if p.Spec.NodeName == sim.NodeName(updated) && p.Labels[daemonset.RevisionHashLabel] == rev && manifests.IsPodReady(p) {
				newPod = p
				return nil
			}
		}
		return fmt.Errorf("no ready new pod on %s yet", sim.NodeName(updated))
	})
	f.setLink(true, updated)
	ro = f.rollout("mid")
	if ro.Status.CurrentWave != 1 {
		t.Fatalf("wave 2 no longer in progress when its node went offline (the gate is %ds): wave %d %v", 4, ro.Status.CurrentWave, waveCounts(ro))
	}

	ro = f.waitPhase("mid", manifests.RolloutCompleted, 40*time.Second)
	w2 := ro.Status.Waves[1]
	if took := w2.CompletedAt.Sub(w2.StartedAt); took < wait*time.Second {
		t.Errorf("wave 2 passed %v after it started, before waitSeconds (%ds)", took, wait)
	}
	if w2.Failed != 0 || w2.Offline != 2 || w2.Ready != w2.Total-2 || w2.Updated != w2.Total-1 {
		t.Errorf("wave 2 at completion: %+v, want 2 offline (not ready), 1 of them updated, none failed", waveCounts(ro)[1])
	}
	for i, w := range ro.Status.Waves {
		if i != 1 && (w.Failed != 0 || w.Offline != 0 || w.Ready != w.Total) {
			t.Errorf("wave %d at completion: %s", i+1, waveCounts(ro)[i])
		}
	}

	f.setLink(false, updated, before)
	controllertest.Eventually(t, 20*time.Second, func() error { return f.convergedOn(smallFleet, rev) })
	list, _, err := f.c.Client.List(ctx, "pods", "default", "app=probe")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range list {
		if p := o.(*manifests.Pod); p.Spec.NodeName == newPod.Spec.NodeName && p.UID != newPod.UID {
			t.Errorf("the updated node's new pod was replaced (%s, was %s)", p.Name, newPod.Name)
		}
	}
	controllertest.Eventually(t, 10*time.Second, func() error {
		ro := f.rollout("mid")
		for _, w := range ro.Status.Waves {
			if w.Failed != 0 || w.Offline != 0 || w.Ready != w.Total {
				return fmt.Errorf("waves %v", waveCounts(ro))
			}
		}
		return nil
	})
}
