package edgectl

import (
	"slices"
	"testing"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestRolloutRow(t *testing.T) {
	r := &manifests.Rollout{}
	r.Name = "fw"
	r.Spec.TargetRef = manifests.RolloutTargetRef{Kind: "DaemonSet", Name: "agent"}
	if got, want := rolloutRow(r, "fw", "5s"), []string{"fw", "daemonset/agent", "Pending", "-", "0/0", "0", "0", "5s"}; !slices.Equal(got, want) {
		t.Fatalf("pending row = %q, want %q", got, want)
	}
	r.Status = manifests.RolloutStatus{Phase: manifests.RolloutProgressing, CurrentWave: 1, Waves: []manifests.RolloutWaveStatus{
		{Total: 2, Ready: 2},
		{Total: 10, Ready: 3, Failed: 1, Offline: 2},
		{Total: 8},
	}}
	if got, want := rolloutRow(r, "fw", "5s"), []string{"fw", "daemonset/agent", "Progressing", "2/3", "5/20", "1", "2", "5s"}; !slices.Equal(got, want) {
		t.Fatalf("progress row = %q, want %q", got, want)
	}
	r.Status.Phase, r.Status.CurrentWave = manifests.RolloutCompleted, 3
	if got := rolloutRow(r, "fw", "5s")[3]; got != "3/3" {
		t.Fatalf("completed wave column = %q, want 3/3", got)
	}
	if h := rolloutHeaders(); len(h) != len(rolloutRow(r, "fw", "5s")) {
		t.Fatalf("%d headers for %d cells", len(h), len(rolloutRow(r, "fw", "5s")))
	}
}
