package edgectl

import (
	"regexp"
	"strings"
	"testing"
)

const autoscaleDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: fake://run
        resources:
          requests: {cpu: 100m}
`

// TestAutoscale: edgectl autoscale creates the HPA kubectl would, get hpa
// prints kubectl's columns, and bad arguments are refused.
func TestAutoscale(t *testing.T) {
	url := startControlPlane(t)
	ctl := ctlAt(t, url)
	mustOK(t, ctl(autoscaleDeployment, "apply", "-f", "-"), "apply deployment")
	out := mustOK(t, ctl("", "autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu-percent=50"), "autoscale")
	if strings.TrimSpace(out) != "horizontalpodautoscaler.autoscaling/web autoscaled" {
		t.Fatalf("autoscale printed %q", out)
	}
	out = mustOK(t, ctl("", "get", "hpa", "web", "-o", "json"), "get hpa -o json")
	for _, want := range []string{`"apiVersion": "autoscaling/v2"`, `"kind": "Deployment"`, `"minReplicas": 2`, `"maxReplicas": 5`, `"averageUtilization": 50`} {
		if !strings.Contains(out, want) {
			t.Errorf("hpa lacks %s:\n%s", want, out)
		}
	}
	// No controllers run here (controlplane/hpa and controllers test the
	// scaling): the row shows the spec, and 0 replicas before a status.
	out = mustOK(t, ctl("", "get", "hpa"), "get hpa")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("get hpa:\n%s", out)
	}
	cols := regexp.MustCompile(`\s{2,}`).Split(lines[0], -1)
	cells := regexp.MustCompile(`\s{2,}`).Split(lines[1], -1)
	if got, want := strings.Join(cols, "|"), "NAME|REFERENCE|TARGETS|MINPODS|MAXPODS|REPLICAS|AGE"; got != want {
		t.Fatalf("headers %q, want %q", got, want)
	}
	if got, want := strings.Join(cells[:6], "|"), "web|Deployment/web|cpu: <unknown>/50%|2|5|0"; got != want {
		t.Fatalf("row %q, want %q", got, want)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"autoscale", "deployment", "web", "--max=5"}, `"web" already exists`},
		{[]string{"autoscale", "deployment", "nothing", "--max=5"}, "nothing"},
		{[]string{"autoscale", "deployment", "web", "--name=x"}, "--max=MAXPODS is required"},
		{[]string{"autoscale", "deployment", "web", "--name=x", "--min=4", "--max=3"}, "must be larger or equal to --min"},
		{[]string{"autoscale", "daemonset", "agent", "--max=3"}, "no autoscale is implemented for daemonsets.apps"},
	} {
		if r := ctl("", tc.args...); r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
