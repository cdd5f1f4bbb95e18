package status

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
)

func TestSelect(t *testing.T) {
	now := time.Now()
	running, exited := runtime.StateRunning, runtime.StateExited
	all := []runtime.ContainerStatus{
		{ID: "b", SandboxID: "s1", State: running, CreatedAt: now, Labels: map[string]string{"role": "web"}},
		{ID: "a", SandboxID: "s1", State: exited, CreatedAt: now},
		{ID: "c", SandboxID: "s2", State: running, CreatedAt: now.Add(-time.Second), Labels: map[string]string{"role": "db"}},
	}
	for _, tc := range []struct {
		f    runtime.ContainerFilter
		want string
	}{
		{runtime.ContainerFilter{}, "cab"},
		{runtime.ContainerFilter{SandboxID: "s1"}, "ab"},
		{runtime.ContainerFilter{State: &running}, "cb"},
		{runtime.ContainerFilter{State: &exited, SandboxID: "s2"}, ""},
		{runtime.ContainerFilter{Labels: map[string]string{"role": "web"}}, "b"},
	} {
		got := ""
		for _, st := range Select(all, tc.f) {
			got += st.ID
		}
		if got != tc.want {
			t.Errorf("filter %+v: %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestLifecycle(t *testing.T) {
	var l Lifecycle
	if !l.EndUnstarted(137, "Killed", "stopped") || l.State != runtime.StateExited || l.ExitCode != 137 || l.StartedAt.IsZero() {
		t.Fatalf("created: %+v", l)
	}
	if !l.EndUnstarted(1, "x", "y") || l.ExitCode != 137 {
		t.Fatalf("exited changed: %+v", l)
	}
	running := Lifecycle{State: runtime.StateRunning}
	if running.EndUnstarted(1, "x", "y") || running.State != runtime.StateRunning {
		t.Fatalf("running: %+v", running)
	}
	var st runtime.ContainerStatus
	l.Apply(&st)
	if st.State != runtime.StateExited || st.Reason != "Killed" || !st.FinishedAt.Equal(l.FinishedAt) {
		t.Fatalf("Apply: %+v", st)
	}
}
