package edgectl

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func TestCronJobTable(t *testing.T) {
	last := tableNow.Add(-90 * time.Second)
	tz := "Europe/Paris"
	yes := true
	cj := &manifests.CronJob{ObjectMeta: meta("default", "backup", 3*time.Hour)}
	cj.Spec.Schedule = "*/5 * * * *"
	cj.Spec.TimeZone = &tz
	cj.Spec.JobTemplate.Spec.Template = webTemplate("fake://exit/0")
	cj.Status.Active = []manifests.ObjectReference{{Kind: "Job", Name: "backup-1"}, {Kind: "Job", Name: "backup-2"}}
	cj.Status.LastScheduleTime = &last
	idle := &manifests.CronJob{ObjectMeta: meta("default", "idle", time.Hour)}
	idle.Spec.Schedule = "@daily"
	idle.Spec.Suspend = &yes
	checkRows(t, tableText(t, "cj", []manifests.Object{cj, idle}, tableOptions{Now: tableNow}),
		"NAME | SCHEDULE | TIMEZONE | SUSPEND | ACTIVE | LAST SCHEDULE | AGE",
		"backup | */5 * * * * | Europe/Paris | false | 2 | 90s | 3h",
		"idle | @daily | <none> | true | 0 | <none> | 60m")
	checkRows(t, tableText(t, "cronjobs", []manifests.Object{cj}, tableOptions{Now: tableNow, Wide: true}),
		"NAME | SCHEDULE | TIMEZONE | SUSPEND | ACTIVE | LAST SCHEDULE | AGE | CONTAINERS | IMAGES | SELECTOR",
		"backup | */5 * * * * | Europe/Paris | false | 2 | 90s | 3h | web,sidecar | fake://exit/0,fake://run | <none>")
}
