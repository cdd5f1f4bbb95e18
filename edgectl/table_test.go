package edgectl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

var tableNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func meta(ns, name string, ago time.Duration) manifests.ObjectMeta {
	return manifests.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: tableNow.Add(-ago)}
}

func mustKind(t *testing.T, name string) manifests.Kind {
	t.Helper()
	k, err := manifests.KindForResource(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// lines splits a table into rows of whitespace-separated cells.
func lines(s string) [][]string {
	var out [][]string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		out = append(out, strings.Fields(l))
	}
	return out
}

func TestPodTable(t *testing.T) {
	p := &manifests.Pod{ObjectMeta: meta("default", "hello", 65*time.Second)}
	p.Spec.Containers = []manifests.Container{{Name: "hello"}}
	p.Spec.NodeName = "node-b"
	p.Status.Phase = "Running"
	p.Status.PodIP = "10.1.0.5"
	p.Status.ContainerStatuses = []manifests.ContainerStatus{{Name: "hello", Ready: true, State: manifests.ContainerState{Running: &manifests.ContainerStateRunning{}}}}
	var buf bytes.Buffer
	opts := tableOptions{Wide: true, WithNamespace: true, Now: tableNow}
	if err := printTable(&buf, mustKind(t, "po"), []manifests.Object{p}, opts); err != nil {
		t.Fatal(err)
	}
	got := lines(buf.String())
	want := [][]string{
		{"NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"},
		{"default", "hello", "1/1", "Running", "0", "65s", "10.1.0.5", "node-b"},
	}
	if len(got) != 2 || strings.Join(got[0], " ") != strings.Join(want[0], " ") || strings.Join(got[1], " ") != strings.Join(want[1], " ") {
		t.Fatalf("table:\n%s", buf.String())
	}
	// Columns are aligned: every header starts where its cells start.
	rows := strings.Split(buf.String(), "\n")
	if strings.Index(rows[0], "STATUS") != strings.Index(rows[1], "Running") {
		t.Errorf("columns not aligned:\n%s", buf.String())
	}
}

func TestTablesPerKind(t *testing.T) {
	node := &manifests.Node{ObjectMeta: meta("", "node-a", 3*time.Hour)}
	node.Labels = map[string]string{"node-role.kubernetes.io/edge": ""}
	node.Status.Conditions = []manifests.NodeCondition{{Type: "Ready", Status: "True"}}
	node.Status.NodeInfo = manifests.NodeSystemInfo{KubeletVersion: "v0.1.0", OSImage: "Debian", KernelVersion: "6.1", ContainerRuntimeVersion: "wazero://1.12"}
	node.Status.Addresses = []manifests.NodeAddress{{Type: "InternalIP", Address: "192.168.1.4"}}
	cm := &manifests.ConfigMap{ObjectMeta: meta("default", "settings", 2*24*time.Hour), Data: map[string]string{"a": "1", "b": "2"}}
	sec := &manifests.Secret{ObjectMeta: meta("default", "creds", time.Minute), Data: map[string][]byte{"k": []byte("v")}}
	ns := &manifests.Namespace{ObjectMeta: meta("", "edge", 10*time.Second)}
	ev := &manifests.Event{ObjectMeta: meta("default", "hello.1", 0), Type: "Normal", Reason: "Scheduled",
		InvolvedObject: manifests.ObjectReference{Kind: "Pod", Name: "hello"}, Message: "assigned to node-b", LastTimestamp: tableNow.Add(-7 * time.Second)}
	for _, tc := range []struct {
		kind string
		obj  manifests.Object
		wide bool
		want []string
	}{
		{"nodes", node, false, []string{"node-a Ready edge 3h v0.1.0"}},
		{"nodes", node, true, []string{"node-a Ready edge 3h v0.1.0 192.168.1.4 Debian 6.1 wazero://1.12 <unknown>"}},
		{"cm", cm, false, []string{"settings 2 2d"}},
		{"secrets", sec, false, []string{"creds Opaque 1 60s"}},
		{"ns", ns, false, []string{"edge Active 10s"}},
		{"events", ev, false, []string{"7s Normal Scheduled pod/hello assigned to node-b"}},
	} {
		var buf bytes.Buffer
		if err := printTable(&buf, mustKind(t, tc.kind), []manifests.Object{tc.obj}, tableOptions{Wide: tc.wide, Now: tableNow}); err != nil {
			t.Fatal(err)
		}
		got := lines(buf.String())
		if len(got) != 2 || strings.Join(got[1], " ") != tc.want[0] {
			t.Errorf("%s table:\n%s\nwant row %q", tc.kind, buf.String(), tc.want[0])
		}
		if h := strings.Join(tableHeaders(mustKind(t, tc.kind), tableOptions{Wide: tc.wide}), " "); !strings.HasPrefix(buf.String(), strings.Fields(h)[0]) {
			t.Errorf("%s: header %q not first", tc.kind, h)
		}
	}
}

func TestTableWithKindAndNamespaceForClusterScope(t *testing.T) {
	node := &manifests.Node{ObjectMeta: meta("", "node-a", time.Minute)}
	row := tableRow(node, tableOptions{WithKind: true, WithNamespace: true, Now: tableNow})
	if row[0] != "node/node-a" {
		t.Errorf("row %q: want node/node-a first (no NAMESPACE for cluster-scoped kinds)", row)
	}
}

func TestSortForTable(t *testing.T) {
	objs := []manifests.Object{
		&manifests.Pod{ObjectMeta: meta("b", "x", 0)},
		&manifests.Pod{ObjectMeta: meta("a", "z", 0)},
		&manifests.Pod{ObjectMeta: meta("a", "y", 0)},
	}
	sortForTable(objs)
	var got []string
	for _, o := range objs {
		got = append(got, o.GetObjectMeta().Namespace+"/"+o.GetObjectMeta().Name)
	}
	if strings.Join(got, " ") != "a/y a/z b/x" {
		t.Errorf("order %v", got)
	}
}

func TestShowLabels(t *testing.T) {
	cm := &manifests.ConfigMap{ObjectMeta: meta("default", "c", time.Minute)}
	opts := tableOptions{ShowLabels: true, Now: tableNow}
	if row := tableRow(cm, opts); row[len(row)-1] != "<none>" {
		t.Errorf("no labels: %q", row)
	}
	cm.Labels = map[string]string{"tier": "demo", "app": "hello"}
	if row := tableRow(cm, opts); row[len(row)-1] != "app=hello,tier=demo" {
		t.Errorf("labels: %q", row)
	}
	if h := tableHeaders(mustKind(t, "cm"), opts); h[len(h)-1] != "LABELS" {
		t.Errorf("headers: %q", h)
	}
}
