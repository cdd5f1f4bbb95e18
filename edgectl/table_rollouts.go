package edgectl

import (
	"fmt"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// rolloutHeaders are the columns of a fleet Rollout.
func rolloutHeaders() []string {
	return []string{"NAME", "TARGET", "PHASE", "WAVE", "READY", "FAILED", "OFFLINE", "AGE"}
}

// rolloutRow summarises a Rollout: its target, phase, the wave in progress
// ("2/3") and ready, failed and offline counts over all waves out of the
// planned total (nodes for a DaemonSet, replicas for a Deployment).
func rolloutRow(r *manifests.Rollout, name, created string) []string {
	var total, ready, failed, offline int32
	for _, w := range r.Status.Waves {
		total += w.Total
		ready += w.Ready
		failed += w.Failed
		offline += w.Offline
	}
	wave := "-"
	if n := len(r.Status.Waves); n > 0 {
		cur := min(int(r.Status.CurrentWave)+1, n)
		wave = fmt.Sprintf("%d/%d", cur, n)
	}
	phase := r.Status.Phase
	if phase == "" {
		phase = "Pending"
	}
	target := strings.ToLower(r.Spec.TargetRef.Kind) + "/" + r.Spec.TargetRef.Name
	return []string{name, target, phase, wave, fmt.Sprintf("%d/%d", ready, total),
		fmt.Sprint(failed), fmt.Sprint(offline), created}
}
