package edgectl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func i32(v int32) *int32 { return &v }

func webTemplate(image string) manifests.PodTemplateSpec {
	return manifests.PodTemplateSpec{
		ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: manifests.PodSpec{Containers: []manifests.Container{
			{Name: "web", Image: image}, {Name: "sidecar", Image: "fake://run"},
		}},
	}
}

// tableText prints objs of resource as a table and returns its lines, the
// cells separated by " | " as the header's column starts split them.
func tableText(t *testing.T, resource string, objs []manifests.Object, o tableOptions) []string {
	t.Helper()
	var buf bytes.Buffer
	if err := printTable(&buf, mustKind(t, resource), objs, o); err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	// Column starts are where a header name begins after 3+ spaces.
	header := rows[0]
	starts := []int{0}
	for i := 3; i < len(header); i++ {
		if header[i] != ' ' && strings.HasSuffix(header[:i], "   ") {
			starts = append(starts, i)
		}
	}
	var out []string
	for _, r := range rows {
		var cells []string
		for j, s := range starts {
			end := len(r)
			if j+1 < len(starts) && starts[j+1] < end {
				end = starts[j+1]
			}
			cell := ""
			if s < len(r) {
				cell = strings.TrimSpace(r[s:end])
			}
			cells = append(cells, cell)
		}
		out = append(out, strings.Join(cells, " | "))
	}
	return out
}

func checkRows(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("table:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDeploymentTable(t *testing.T) {
	d := &manifests.Deployment{ObjectMeta: meta("default", "web", 3*time.Minute)}
	d.Spec.Replicas = i32(6)
	d.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web"}, MatchExpressions: []manifests.LabelSelectorRequirement{{Key: "tier", Operator: "In", Values: []string{"a", "b"}}}}
	d.Spec.Template = webTemplate("fake://run")
	d.Status = manifests.DeploymentStatus{Replicas: 7, UpdatedReplicas: 3, ReadyReplicas: 5, AvailableReplicas: 4}
	got := tableText(t, "deploy", []manifests.Object{d}, tableOptions{Now: tableNow})
	checkRows(t, got,
		"NAME | READY | UP-TO-DATE | AVAILABLE | AGE",
		"web | 5/6 | 3 | 4 | 3m")
	got = tableText(t, "deployments", []manifests.Object{d}, tableOptions{Now: tableNow, Wide: true, WithNamespace: true})
	checkRows(t, got,
		"NAMESPACE | NAME | READY | UP-TO-DATE | AVAILABLE | AGE | CONTAINERS | IMAGES | SELECTOR",
		"default | web | 5/6 | 3 | 4 | 3m | web,sidecar | fake://run,fake://run | app=web,tier in (a,b)")
}

func TestReplicaSetTable(t *testing.T) {
	rs := &manifests.ReplicaSet{ObjectMeta: meta("default", "web-6d4b8c", 90*time.Second)}
	rs.Spec.Replicas = i32(3)
	rs.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web", "pod-template-hash": "6d4b8c"}}
	rs.Spec.Template = webTemplate("fake://sleep/1h")
	rs.Status = manifests.ReplicaSetStatus{Replicas: 2, ReadyReplicas: 1}
	checkRows(t, tableText(t, "rs", []manifests.Object{rs}, tableOptions{Now: tableNow}),
		"NAME | DESIRED | CURRENT | READY | AGE",
		"web-6d4b8c | 3 | 2 | 1 | 90s")
	checkRows(t, tableText(t, "rs", []manifests.Object{rs}, tableOptions{Now: tableNow, Wide: true}),
		"NAME | DESIRED | CURRENT | READY | AGE | CONTAINERS | IMAGES | SELECTOR",
		"web-6d4b8c | 3 | 2 | 1 | 90s | web,sidecar | fake://sleep/1h,fake://run | app=web,pod-template-hash=6d4b8c")
}

func TestDaemonSetTable(t *testing.T) {
	ds := &manifests.DaemonSet{ObjectMeta: meta("kube-system", "probe", 2*time.Hour)}
	ds.Spec.Selector = &manifests.LabelSelector{MatchLabels: map[string]string{"app": "probe"}}
	ds.Spec.Template = webTemplate("fake://run")
	ds.Spec.Template.Spec.NodeSelector = map[string]string{"site": "north", "arch": "arm64"}
	ds.Status = manifests.DaemonSetStatus{DesiredNumberScheduled: 5, CurrentNumberScheduled: 4, NumberReady: 3, UpdatedNumberScheduled: 2, NumberAvailable: 1}
	noSel := &manifests.DaemonSet{ObjectMeta: meta("kube-system", "all", time.Hour)}
	checkRows(t, tableText(t, "ds", []manifests.Object{ds, noSel}, tableOptions{Now: tableNow}),
		"NAME | DESIRED | CURRENT | READY | UP-TO-DATE | AVAILABLE | NODE SELECTOR | AGE",
		"probe | 5 | 4 | 3 | 2 | 1 | arch=arm64,site=north | 120m",
		"all | 0 | 0 | 0 | 0 | 0 | <none> | 60m")
	checkRows(t, tableText(t, "daemonsets", []manifests.Object{noSel}, tableOptions{Now: tableNow, Wide: true}),
		"NAME | DESIRED | CURRENT | READY | UP-TO-DATE | AVAILABLE | NODE SELECTOR | AGE | CONTAINERS | IMAGES | SELECTOR",
		"all | 0 | 0 | 0 | 0 | 0 | <none> | 60m | <none> | <none> | <none>")
}

func TestJobTable(t *testing.T) {
	start := tableNow.Add(-5 * time.Minute)
	end := start.Add(47 * time.Second)
	done := &manifests.Job{ObjectMeta: meta("default", "done", 6*time.Minute)}
	done.Spec.Completions = i32(3)
	done.Status = manifests.JobStatus{Succeeded: 3, StartTime: &start, CompletionTime: &end}
	running := &manifests.Job{ObjectMeta: meta("default", "running", 6*time.Minute)}
	running.Spec.Parallelism = i32(4)
	running.Status = manifests.JobStatus{Succeeded: 1, StartTime: &start}
	pending := &manifests.Job{ObjectMeta: meta("default", "pending", 10*time.Second)}
	checkRows(t, tableText(t, "jobs", []manifests.Object{done, running, pending}, tableOptions{Now: tableNow}),
		"NAME | COMPLETIONS | DURATION | AGE",
		"done | 3/3 | 47s | 6m",
		"running | 1/1 of 4 | 5m | 6m",
		"pending | 0/1 |  | 10s")
}
