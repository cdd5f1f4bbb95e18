package edgectl

import (
	"fmt"
	"strings"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

// cronJobHeaders are the columns of a CronJob, as kubectl prints them.
func cronJobHeaders(wide bool) []string {
	h := []string{"NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"}
	if wide {
		h = append(h, "CONTAINERS", "IMAGES", "SELECTOR")
	}
	return h
}

// cronJobRow summarises a CronJob: its schedule and zone, whether it is
// suspended, how many of its Jobs are active and how long ago it last
// scheduled one.
func cronJobRow(cj *manifests.CronJob, name, created string, now time.Time, wide bool) []string {
	tz := "<none>"
	if cj.Spec.TimeZone != nil {
		tz = *cj.Spec.TimeZone
	}
	last := "<none>"
	if t := cj.Status.LastScheduleTime; t != nil {
		last = age(now, *t)
	}
	suspend := cj.Spec.Suspend != nil && *cj.Spec.Suspend
	row := []string{name, cj.Spec.Schedule, tz, fmt.Sprint(suspend), fmt.Sprint(len(cj.Status.Active)), last, created}
	if wide {
		var names, images []string
		for _, c := range cj.Spec.JobTemplate.Spec.Template.Spec.Containers {
			names = append(names, c.Name)
			images = append(images, c.Image)
		}
		row = append(row, orNone(strings.Join(names, ",")), orNone(strings.Join(images, ",")), formatLabelSelector(cj.Spec.JobTemplate.Spec.Selector))
	}
	return row
}
