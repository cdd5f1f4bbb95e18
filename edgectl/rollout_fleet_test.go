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

func TestFleetRolloutStatusDeployment(t *testing.T) {
	now := time.Now()
	r := &manifests.Rollout{ObjectMeta: manifests.ObjectMeta{Name: "web-v2"}}
	r.Spec.TargetRef = manifests.RolloutTargetRef{Kind: "Deployment", Name: "web"}
	r.Status = manifests.RolloutStatus{Phase: manifests.RolloutPaused, Revision: "abc", Message: "paused by user", AcceptedFailures: 1, CurrentWave: 1, Waves: []manifests.RolloutWaveStatus{
		{Total: 5, Partition: 5, Updated: 5, Ready: 4, Failed: 1, StartedAt: now, CompletedAt: now},
		{Total: 10, Partition: 15, Updated: 2, StartedAt: now},
		{Total: 5, Partition: 20},
	}}
	want := `rollout "web-v2": Paused (revision abc): paused by user [1 failures accepted on resume]
wave 1/3 [########--] 4/5 replicas ready (1 failed, done)
wave 2/3 [----------] 0/10 replicas ready
wave 3/3 [----------] 0/5 replicas ready`
	msg, done, err := fleetRolloutStatus(r)
	if msg != want || !done || err == nil {
		t.Fatalf("paused:\n%s\n%v %v\nwant:\n%s", msg, done, err, want)
	}
}

func TestPauseFleetRollout(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := &manifests.Rollout{ObjectMeta: manifests.ObjectMeta{Name: "web-v2"}}
	r.Status.Phase = manifests.RolloutProgressing
	if err := pauseFleetRollout(r, false, now); err == nil || err.Error() != `rollout "web-v2" is not paused` {
		t.Fatalf("resume of a running rollout: %v", err)
	}
	if err := pauseFleetRollout(r, true, now); err != nil || !r.Spec.Paused {
		t.Fatalf("pause: %v %v", err, r.Spec.Paused)
	}
	if err := pauseFleetRollout(r, true, now); err == nil {
		t.Fatal("paused twice")
	}
	if err := pauseFleetRollout(r, false, now); err != nil || r.Spec.Paused || r.Annotations[manifests.RolloutResumedAtAnnotation] != "2026-01-02T03:04:05Z" {
		t.Fatalf("resume: %v %v %v", err, r.Spec.Paused, r.Annotations)
	}
	// Paused by its failure policy (spec.paused unset): resume stamps.
	r.Status.Phase = manifests.RolloutPaused
	if err := pauseFleetRollout(r, false, now.Add(time.Second)); err != nil || r.Annotations[manifests.RolloutResumedAtAnnotation] != "2026-01-02T03:04:06Z" {
		t.Fatalf("resume after failures: %v %v", err, r.Annotations)
	}
	r.Status.Phase = manifests.RolloutCompleted
	if err := pauseFleetRollout(r, true, now); err == nil || err.Error() != `rollout "web-v2" is completed: nothing to pause` {
		t.Fatalf("pause of a completed rollout: %v", err)
	}
}

// TestFleetRolloutOfDeploymentPauseResume applies a paused Rollout of a
// Deployment over a small simulated fleet, resumes it with `rollout
// resume rollout/NAME` and follows it to Completed.
func TestFleetRolloutOfDeploymentPauseResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	c := sim.Start(ctx, t, sim.Options{Nodes: 2})
	ctl := ctlAt(t, c.URL)
	mustOK(t, ctl(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: "fake://run"}]}
`, "apply", "-f", "-"), "apply deployment")
	mustOK(t, ctl("", "rollout", "status", "deployment/web", "--timeout", "30s"), "deployment status")
	mustOK(t, ctl(`
apiVersion: edge.io/v1alpha1
kind: Rollout
metadata: {name: web-v2}
spec:
  paused: true
  targetRef: {kind: Deployment, name: web}
  template:
    metadata: {labels: {app: web}, annotations: {version: "2"}}
    spec: {containers: [{name: c, image: "fake://run"}]}
  waves: [{count: 1}, {count: 50%}, {}]
`, "apply", "-f", "-"), "apply rollout")
	res := ctl("", "rollout", "status", "ro/web-v2", "--timeout", "30s")
	if res.code == 0 || !strings.Contains(res.stdout, `rollout "web-v2": Paused`) || !strings.Contains(res.stdout, "paused by user") {
		t.Fatalf("status of a paused rollout: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if out := mustOK(t, ctl("", "rollout", "resume", "rollout/web-v2"), "resume"); strings.TrimSpace(out) != "rollout.edge.io/web-v2 resumed" {
		t.Fatalf("resume printed %q", out)
	}
	out := mustOK(t, ctl("", "rollout", "status", "ro/web-v2", "--timeout", "40s"), "rollout status")
	t.Logf("rollout status:\n%s", out)
	for _, want := range []string{
		"wave 1/3 [##########] 1/1 replicas ready (done)",
		"wave 2/3 [##########] 2/2 replicas ready (done)",
		"wave 3/3 [##########] 1/1 replicas ready (done)",
		`rollout "web-v2": Completed`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rollout status lacks %q:\n%s", want, out)
		}
	}
	if res := ctl("", "rollout", "pause", "rollout/web-v2"); res.code == 0 || !strings.Contains(res.stderr, "nothing to pause") {
		t.Errorf("pause of a completed rollout: exit %d %s", res.code, res.stderr)
	}
}
