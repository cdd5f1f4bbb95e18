package edgectl

import (
	"strings"
	"testing"
)

const backupCronJob = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
spec:
  schedule: "0 3 * * *"
  timeZone: Europe/Paris
  jobTemplate:
    metadata:
      labels: {app: backup}
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: b
            image: fake://exit/0
`

func TestCreateJobFromCronJob(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)
	mustOK(t, ctl(backupCronJob, "apply", "-f", "-"), "apply cronjob")
	out := mustOK(t, ctl("", "get", "cj"), "get cj")
	if !strings.Contains(out, "LAST SCHEDULE") || !strings.Contains(out, "0 3 * * *") || !strings.Contains(out, "Europe/Paris") {
		t.Fatalf("get cj:\n%s", out)
	}
	out = mustOK(t, ctl("", "create", "job", "backup-now", "--from=cronjob/backup"), "create job")
	if strings.TrimSpace(out) != "job.batch/backup-now created" {
		t.Fatalf("create job printed %q", out)
	}
	out = mustOK(t, ctl("", "get", "job", "backup-now", "-o", "json"), "get job")
	for _, want := range []string{`"kind": "CronJob"`, `"name": "backup"`, `"cronjob.kubernetes.io/instantiate": "manual"`, `"app": "backup"`, `"image": "fake://exit/0"`} {
		if !strings.Contains(out, want) {
			t.Errorf("job lacks %s:\n%s", want, out)
		}
	}
	if r := ctl("", "create", "job", "backup-now", "--from=cronjob/backup"); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("second create: exit %d, %s", r.code, r.stderr)
	}
	if r := ctl("", "create", "job", "x", "--from=cronjob/nothing"); r.code == 0 || !strings.Contains(r.stderr, "nothing") {
		t.Fatalf("missing cronjob: exit %d, %s", r.code, r.stderr)
	}
	if r := ctl("", "create", "job", "x", "--from=deployment/web"); r.code == 0 || !strings.Contains(r.stderr, "only a cronjob") {
		t.Fatalf("--from a deployment: exit %d, %s", r.code, r.stderr)
	}
}
