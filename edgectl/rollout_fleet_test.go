package edgectl

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/sim"
)

func TestProgressBar(t *testing.T) {
	for _, tc := range []struct {
		done, total int32
		want        string
	}{
		{0, 10, "[----------]"}, {5, 10, "[#####-----]"}, {10, 10, "[##########]"},
		{1, 3, "[###-------]"}, {0, 0, "[----------]"}, {12, 10, "[##########]"},
	} {
		if got := progressBar(tc.done, tc.total); got != tc.want {
			t.Errorf("progressBar(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
}

func TestFleetRolloutStatus(t *testing.T) {
	now := time.Now()
	r := &manifests.Rollout{ObjectMeta: manifests.ObjectMeta{Name: "agent"}}
	if msg, done, err := fleetRolloutStatus(r); msg != `Waiting for rollout "agent" to start...` || done || err != nil {
		t.Fatalf("not started: %q %v %v", msg, done, err)
	}
	r.Status = manifests.RolloutStatus{Phase: manifests.RolloutProgressing, Revision: "abc", CurrentWave: 1, Waves: []manifests.RolloutWaveStatus{
		{Total: 2, Updated: 2, Ready: 2, StartedAt: now, CompletedAt: now},
		{Total: 10, Updated: 6, Ready: 5, Offline: 1, StartedAt: now},
		{Total: 8},
	}}
	want := `rollout "agent": Progressing (revision abc)
wave 1/3 [##########] 2/2 nodes ready (done)
wave 2/3 [#####-----] 5/10 nodes ready (1 offline, in progress)
wave 3/3 [----------] 0/8 nodes ready`
	if msg, done, err := fleetRolloutStatus(r); msg != want || done || err != nil {
		t.Fatalf("progressing:\n%s\n%v %v\nwant:\n%s", msg, done, err, want)
	}
	r.Status.Phase, r.Status.Message = manifests.RolloutRolledBack, "1 nodes failed"
	msg, done, err := fleetRolloutStatus(r)
	if !done || err == nil || err.Error() != `rollout "agent" rolledback` || !strings.HasPrefix(msg, `rollout "agent": RolledBack (revision abc): 1 nodes failed`) {
		t.Fatalf("rolled back: %q %v %v", msg, done, err)
	}
	r.Status.Phase, r.Status.Message = manifests.RolloutCompleted, ""
	if _, done, err := fleetRolloutStatus(r); !done || err != nil {
		t.Fatalf("completed: %v %v", done, err)
	}
}

// TestFleetRolloutStatusOnSimulatedFleet follows a Rollout of a DaemonSet
// over a small simulated fleet with `rollout status rollout/NAME`.
func TestFleetRolloutStatusOnSimulatedFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{Nodes: 4})
	ctl := ctlAt(t, c.URL)
	mustOK(t, ctl(`
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: probe}
spec:
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec: {containers: [{name: c, image: "fake://run"}]}
`, "apply", "-f", "-"), "apply daemonset")
	mustOK(t, ctl("", "rollout", "status", "daemonset/probe", "--timeout", "30s"), "daemonset status")
	mustOK(t, ctl(`
apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: probe-v2}
spec:
  targetRef: {kind: DaemonSet, name: probe}
  template:
    metadata: {labels: {app: probe}, annotations: {version: "2"}}
    spec: {containers: [{name: c, image: "fake://run"}]}
  waves: [{count: 1}, {count: 50%}, {}]
`, "apply", "-f", "-"), "apply rollout")
	out := mustOK(t, ctl("", "rollout", "status", "ro/probe-v2", "--timeout", "40s"), "rollout status")
	t.Logf("rollout status:\n%s", out)
	for _, want := range []string{
		"wave 1/3 [##########] 1/1 nodes ready (done)",
		"wave 2/3 [##########] 2/2 nodes ready (done)",
		"wave 3/3 [##########] 1/1 nodes ready (done)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rollout status lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, `rollout "probe-v2": Completed`) {
		t.Errorf("rollout status does not end Completed:\n%s", out)
	}
}
