package edgectl

import (
	"fmt"
	"strings"
	"time"

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

// pauseFleetRollout pauses (spec.paused) or resumes a fleet Rollout. A
// resume clears spec.paused and stamps rollout.edge.io/resumed-at, which
// also resumes a rollout its failure policy paused (accepting the failures
// seen so far).
func pauseFleetRollout(r *manifests.Rollout, pause bool, now time.Time) error {
	if !manifests.RolloutUnfinished(r) {
		return fmt.Errorf("rollout %q is %s: nothing to %s", r.Name, strings.ToLower(r.Status.Phase), map[bool]string{true: "pause", false: "resume"}[pause])
	}
	if pause {
		if r.Spec.Paused {
			return fmt.Errorf("rollout %q is already paused", r.Name)
		}
		r.Spec.Paused = true
		return nil
	}
	if !r.Spec.Paused && r.Status.Phase != manifests.RolloutPaused {
		return fmt.Errorf("rollout %q is not paused", r.Name)
	}
	r.Spec.Paused = false
	if r.Annotations == nil {
		r.Annotations = map[string]string{}
	}
	r.Annotations[manifests.RolloutResumedAtAnnotation] = now.UTC().Format(time.RFC3339Nano)
	return nil
}

// resumeRequested reports whether a Paused rollout was asked to resume
// and the controller has not acted on it yet.
func resumeRequested(r *manifests.Rollout) bool {
	if r.Spec.Paused {
		return false
	}
	if r.Status.PauseReason == manifests.RolloutPausedByUser {
		return true
	}
	at := r.Annotations[manifests.RolloutResumedAtAnnotation]
	return at != "" && at != r.Status.ObservedResumedAt
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
	if st.AcceptedFailures > 0 {
		fmt.Fprintf(&b, " [%d failures accepted on resume]", st.AcceptedFailures)
	}
	unit := "nodes"
	if r.Spec.TargetRef.Kind == "Deployment" {
		unit = "replicas"
	}
	n := len(st.Waves)
	for i, w := range st.Waves {
		fmt.Fprintf(&b, "\nwave %d/%d %s %d/%d %s ready", i+1, n, progressBar(w.Ready, w.Total), w.Ready, w.Total, unit)
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
	if st.Phase == manifests.RolloutPaused && resumeRequested(r) {
		return msg + "\n(resume requested)", false, nil // the controller has not seen it yet
	}
	switch st.Phase {
	case manifests.RolloutCompleted:
		return msg, true, nil
	case manifests.RolloutPaused, manifests.RolloutRolledBack, manifests.RolloutFailed:
		return msg, true, fmt.Errorf("rollout %q %s", r.Name, strings.ToLower(st.Phase))
	}
	return msg, false, nil
}
