package rollout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/controlplane/controller/controllertest"
	"github.com/edgeorch/edgeorch/controlplane/daemonset"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

const fleet = 20

const daemonSetYAML = `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: probe, namespace: default}
spec:
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec:
      containers: [{name: c, image: "fake://run"}]
`

// rolloutYAML is a Rollout of the probe DaemonSet to image, tagged with
// version so that every template differs.
func rolloutYAML(name, image, version, action string) string {
	return probeRolloutYAML(name, image, version, action, 2, 20, 1)
}

// probeRolloutYAML is a Rollout of the probe DaemonSet to image, tagged
// with version (an annotation), in three waves (2 canaries among site=a,
// 25%, the rest), with the given health gate, failure action and offline
// wait.
func probeRolloutYAML(name, image, version, action string, readySeconds, timeoutSeconds, waitSeconds int) string {
	return fmt.Sprintf(`
apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: %s, namespace: default}
spec:
  targetRef: {kind: DaemonSet, name: probe}
  template:
    metadata: {labels: {app: probe}, annotations: {version: %q}}
    spec:
      containers: [{name: c, image: %q}]
  waves:
  - count: 2
    selector: {matchLabels: {site: a}}
  - count: 25%%
  - {}
  healthGate: {readySeconds: %d, timeoutSeconds: %d}
  failurePolicy: {maxFailedNodes: 0, action: %s}
  offlinePolicy: {waitSeconds: %d}
`, name, version, image, readySeconds, timeoutSeconds, action, waitSeconds)
}

// startFleet starts n simulated nodes, the even ones labelled site=a and
// the odd ones site=b, applies the probe DaemonSet and waits until every
// node runs its pod.
func startFleet(t *testing.T, ctx context.Context, n int) *fixture {
	t.Helper()
	c := sim.Start(ctx, t, sim.Options{
		Nodes: n,
		Labels: func(i int) map[string]string {
			if i%2 == 0 {
				return map[string]string{"site": "a"}
			}
			return map[string]string{"site": "b"}
		},
		HeartbeatInterval: 100 * time.Millisecond,
		NodeGrace:         time.Second,
	})
	f := &fixture{t: t, ctx: ctx, c: c}
	f.apply(daemonSetYAML)
	controllertest.Eventually(t, 20*time.Second, func() error { return f.convergedOn(n, f.dsHash()) })
	return f
}

type fixture struct {
	t   *testing.T
	ctx context.Context
	c   *sim.Cluster
}

func (f *fixture) apply(doc string) {
	f.t.Helper()
	objs, err := manifests.Decode([]byte(doc))
	if err != nil {
		f.t.Fatal(err)
	}
	if _, _, err := f.c.Client.Apply(f.ctx, objs[0]); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) rollout(name string) *manifests.Rollout {
	f.t.Helper()
	o, err := f.c.Client.Get(f.ctx, "rollouts", "default", name)
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*manifests.Rollout)
}

func (f *fixture) waitPhase(name, phase string, timeout time.Duration) *manifests.Rollout {
	f.t.Helper()
	var ro *manifests.Rollout
	controllertest.Eventually(f.t, timeout, func() error {
		ro = f.rollout(name)
		if ro.Status.Phase != phase {
			return fmt.Errorf("rollout %s: phase %q (%s), want %s; waves %+v", name, ro.Status.Phase, ro.Status.Message, phase, waveCounts(ro))
		}
		return nil
	})
	return ro
}

func waveCounts(ro *manifests.Rollout) []string {
	var out []string
	for _, w := range ro.Status.Waves {
		out = append(out, fmt.Sprintf("total=%d updated=%d ready=%d failed=%d offline=%d", w.Total, w.Updated, w.Ready, w.Failed, w.Offline))
	}
	return out
}

// converged checks that every node runs one Running, Ready probe pod of
// revision hash.
func (f *fixture) converged(hash string) func() error {
	return func() error { return f.convergedOn(fleet, hash) }
}

func (f *fixture) dsHash() string {
	f.t.Helper()
	o, err := f.c.Client.Get(f.ctx, "daemonsets", "default", "probe")
	if err != nil {
		f.t.Fatal(err)
	}
	return daemonset.TemplateHash(&o.(*manifests.DaemonSet).Spec.Template)
}

// TestRolloutOverFleet rolls a DaemonSet over 20 simulated nodes: a
// failing template is rolled back, a good one completes while 5 nodes are
// offline (they converge when they return), and a failing one with action
// Pause stops after its first wave.
func TestRolloutOverFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	f := startFleet(t, ctx, fleet)
	c := f.c
	original := f.dsHash()

	// 5 of the 20 nodes go offline before any rollout.
	offline := []int{3, 8, 13, 17, 19}
	for _, i := range offline {
		c.StopNode(i)
	}
	controllertest.Eventually(t, 15*time.Second, func() error {
		for _, i := range offline {
			o, err := c.Client.Get(ctx, "nodes", "", sim.NodeName(i))
			if err != nil {
				return err
			}
			if sim.NodeIsReady(o.(*manifests.Node)) {
				return fmt.Errorf("node %d still ready", i)
			}
		}
		return nil
	})

	// 1. With them offline, a crashing template fails the first wave's
	// health gate: rolled back.
	f.apply(rolloutYAML("bad", "fake://exit/1", "2", "Rollback"))
	ro := f.waitPhase("bad", manifests.RolloutRolledBack, 20*time.Second)
	if ro.Status.CurrentWave != 0 || ro.Status.Waves[0].Total != 2 {
		t.Fatalf("rolled back at wave %d, waves %v", ro.Status.CurrentWave, waveCounts(ro))
	}
	for _, n := range ro.Status.Waves[0].NodeNames {
		o, err := c.Client.Get(ctx, "nodes", "", n)
		if err != nil {
			t.Fatal(err)
		}
		if o.GetObjectMeta().Labels["site"] != "a" {
			t.Errorf("wave 1 took node %s outside its selector", n)
		}
	}
	controllertest.Eventually(t, 20*time.Second, f.converged(original))
	if got := f.dsHash(); got != original {
		t.Fatalf("daemonset template %s after rollback, want %s", got, original)
	}

	// 2. A good template, the same 5 nodes still offline: completes
	// without them; they converge to it when they return.
	f.apply(rolloutYAML("good", "fake://run", "3", "Rollback"))
	ro = f.waitPhase("good", manifests.RolloutCompleted, 30*time.Second)
	offCount := int32(0)
	for _, w := range ro.Status.Waves {
		offCount += w.Offline
		if w.Failed != 0 {
			t.Errorf("failed nodes in %v", waveCounts(ro))
		}
	}
	if offCount != int32(len(offline)) || len(ro.Status.Waves) != 3 {
		t.Fatalf("completed with waves %v, want %d offline nodes in 3 waves", waveCounts(ro), len(offline))
	}
	good := ro.Status.Revision
	if f.dsHash() != good {
		t.Fatalf("daemonset template is not the rollout's")
	}
	for _, i := range offline {
		c.StartNode(i)
	}
	controllertest.Eventually(t, 25*time.Second, f.converged(good))
	controllertest.Eventually(t, 10*time.Second, func() error {
		ro := f.rollout("good")
		for _, w := range ro.Status.Waves {
			if w.Offline != 0 || w.Ready != w.Total {
				return fmt.Errorf("waves %v", waveCounts(ro))
			}
		}
		return nil
	})

	// 3. A crashing template with action Pause stops in its first wave,
	// leaving the other nodes on the good template.
	f.apply(rolloutYAML("paused", "fake://exit/1", "4", "Pause"))
	ro = f.waitPhase("paused", manifests.RolloutPaused, 20*time.Second)
	if ro.Status.CurrentWave != 0 {
		t.Fatalf("paused at wave %d", ro.Status.CurrentWave)
	}
	list, _, err := c.Client.List(ctx, "pods", "default", "app=probe")
	if err != nil {
		t.Fatal(err)
	}
	onGood := 0
	for _, o := range list {
		if o.GetObjectMeta().Labels[daemonset.RevisionHashLabel] == good {
			onGood++
		}
	}
	if onGood != fleet-2 {
		t.Fatalf("%d pods on the previous template, want %d", onGood, fleet-2)
	}
}
