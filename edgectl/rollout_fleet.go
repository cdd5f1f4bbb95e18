package edgectl

import (
	"fmt"
	"strings"

	"github.com/edgeorch/edgeorch/manifests"
)

// progressBarWidth is the number of cells of a wave's progress bar.
const progressBarWidth = 10

// progressBar draws done out of total as e.g. "[#####-----]".
func progressBar(done, total int32) string {
	filled := 0
	if total > 0 {
		filled = int(int64(min(max(done, 0), total)) * progressBarWidth / int64(total))
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", progressBarWidth-filled) + "]"
}

// fleetRolloutStatus is what rollout status prints for a fleet Rollout:
// a headline and one line per wave, done once it completed, an error once
// it paused, rolled back or failed.
func fleetRolloutStatus(r *manifests.Rollout) (string, bool, error) {
	st := r.Status
	if st.Phase == "" {
		return fmt.Sprintf("Waiting for rollout %q to start...", r.Name), false, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rollout %q: %s", r.Name, st.Phase)
	if st.Revision != "" {
		fmt.Fprintf(&b, " (revision %s)", st.Revision)
	}
	if st.Message != "" {
		fmt.Fprintf(&b, ": %s", st.Message)
	}
	n := len(st.Waves)
	for i, w := range st.Waves {
		fmt.Fprintf(&b, "\nwave %d/%d %s %d/%d nodes ready", i+1, n, progressBar(w.Ready, w.Total), w.Ready, w.Total)
		var extra []string
		if w.Failed > 0 {
			extra = append(extra, fmt.Sprintf("%d failed", w.Failed))
		}
		if w.Offline > 0 {
			extra = append(extra, fmt.Sprintf("%d offline", w.Offline))
		}
		switch {
		case !w.CompletedAt.IsZero():
			extra = append(extra, "done")
		case !w.StartedAt.IsZero() && st.Phase == manifests.RolloutProgressing:
			extra = append(extra, "in progress")
		}
		if len(extra) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(extra, ", "))
		}
	}
	msg := b.String()
	switch st.Phase {
	case manifests.RolloutCompleted:
		return msg, true, nil
	case manifests.RolloutPaused, manifests.RolloutRolledBack, manifests.RolloutFailed:
		return msg, true, fmt.Errorf("rollout %q %s", r.Name, strings.ToLower(st.Phase))
	}
	return msg, false, nil
}
