package podstatus

import (
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/manifests"
)

func pod(policy string, names ...string) *manifests.Pod {
	p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default", Generation: 1}}
	p.Spec.RestartPolicy = policy
	for _, n := range names {
		p.Spec.Containers = append(p.Spec.Containers, manifests.Container{Name: n, Image: n + ":v1"})
	}
	return p
}

func running(name string) manifests.ContainerStatus {
	return manifests.ContainerStatus{Name: name, State: manifests.ContainerState{Running: &manifests.ContainerStateRunning{}}}
}

func terminated(name string, code int32) manifests.ContainerStatus {
	return manifests.ContainerStatus{Name: name, State: manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{ExitCode: code}}}
}

func waiting(name string, crashed bool) manifests.ContainerStatus {
	cs := manifests.ContainerStatus{Name: name, State: manifests.ContainerState{Waiting: &manifests.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}
	if crashed {
		cs.LastTerminationState.Terminated = &manifests.ContainerStateTerminated{ExitCode: 1}
	}
	return cs
}

func TestPhase(t *testing.T) {
	cases := []struct {
		name   string
		pod    *manifests.Pod
		status []manifests.ContainerStatus
		want   string
	}{
		{"all running", pod("Always", "a", "b"), []manifests.ContainerStatus{running("a"), running("b")}, "Running"},
		{"one not reported", pod("Always", "a", "b"), []manifests.ContainerStatus{running("a")}, "Pending"},
		{"first start waiting", pod("Always", "a", "b"), []manifests.ContainerStatus{running("a"), waiting("b", false)}, "Pending"},
		{"crash loop counts as running", pod("Always", "a"), []manifests.ContainerStatus{waiting("a", true)}, "Running"},
		{"never failed", pod("Never", "a"), []manifests.ContainerStatus{terminated("a", 3)}, "Failed"},
		{"never succeeded", pod("Never", "a", "b"), []manifests.ContainerStatus{terminated("a", 0), terminated("b", 0)}, "Succeeded"},
		{"never one still running", pod("Never", "a", "b"), []manifests.ContainerStatus{terminated("a", 1), running("b")}, "Running"},
		{"onfailure succeeded", pod("OnFailure", "a"), []manifests.ContainerStatus{terminated("a", 0)}, "Succeeded"},
		{"onfailure failed restarts", pod("OnFailure", "a"), []manifests.ContainerStatus{terminated("a", 1)}, "Running"},
		{"always exited", pod("Always", "a"), []manifests.ContainerStatus{terminated("a", 0)}, "Running"},
	}
	for _, c := range cases {
		if got := Phase(c.pod, c.status); got != c.want {
			t.Errorf("%s: phase %s, want %s", c.name, got, c.want)
		}
	}
}

func condition(st manifests.PodStatus, typ string) manifests.PodCondition {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return manifests.PodCondition{}
}

func TestComputeConditionsAndTransitions(t *testing.T) {
	p := pod("Always", "a", "b")
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	in := Input{Pod: p, Containers: []manifests.ContainerStatus{running("a"), waiting("b", false)}, HostIP: "10.0.0.5", PodIP: "10.0.0.5", StartTime: t0}
	st := Compute(in, nil, t0)
	if st.Phase != "Pending" || st.HostIP != "10.0.0.5" || st.StartTime == nil || !st.StartTime.Equal(t0) {
		t.Fatalf("status %+v", st)
	}
	r := condition(st, "Ready")
	if r.Status != "False" || r.Reason != "ContainersNotReady" || r.Message != "containers with unready status: [b]" {
		t.Fatalf("Ready %+v", r)
	}
	if c := condition(st, "PodScheduled"); c.Status != "True" {
		t.Fatalf("PodScheduled %+v", c)
	}
	if !st.ContainerStatuses[0].Ready || *st.ContainerStatuses[1].Started {
		t.Fatalf("container readiness %+v", st.ContainerStatuses)
	}

	t1 := t0.Add(time.Minute)
	in.Containers = []manifests.ContainerStatus{running("a"), running("b")}
	st2 := Compute(in, &st, t1)
	if st2.Phase != "Running" || condition(st2, "Ready").Status != "True" {
		t.Fatalf("status %+v", st2)
	}
	if !condition(st2, "Ready").LastTransitionTime.Equal(t1) {
		t.Fatalf("Ready changed but kept its transition time")
	}
	if !condition(st2, "PodScheduled").LastTransitionTime.Equal(t0) {
		t.Fatalf("PodScheduled did not change but got a new transition time")
	}
	if Equal(&st, &st2) {
		t.Fatalf("different statuses compare equal")
	}
	st3 := Compute(in, &st2, t1.Add(time.Hour))
	if !Equal(&st2, &st3) {
		t.Fatalf("same statuses compare different:\n%+v\n%+v", st2, st3)
	}
}

func TestCompletedPodIsNotReady(t *testing.T) {
	st := Compute(Input{Pod: pod("Never", "a"), Containers: []manifests.ContainerStatus{terminated("a", 0)}}, nil, time.Now())
	if st.Phase != "Succeeded" {
		t.Fatalf("phase %s", st.Phase)
	}
	if c := condition(st, "Ready"); c.Status != "False" || c.Reason != "PodCompleted" {
		t.Fatalf("Ready %+v", c)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Base: 10 * time.Second, Max: 40 * time.Second}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next(time.Second))
	}
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 40 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("restart delays %v, want %v", got, want)
		}
	}
	if d := b.Next(BackoffResetAfter); d != 0 {
		t.Fatalf("after a long run the delay is %v, want 0", d)
	}
	if d := b.Next(time.Second); d != 10*time.Second {
		t.Fatalf("after reset the second delay is %v", d)
	}
	f := Backoff{Base: time.Second, Max: 3 * time.Second}
	if a, b, c := f.Failure(), f.Failure(), f.Failure(); a != time.Second || b != 2*time.Second || c != 3*time.Second {
		t.Fatalf("failure delays %v %v %v", a, b, c)
	}
}

func TestInitContainers(t *testing.T) {
	p := pod("Always", "app")
	p.Spec.InitContainers = []manifests.Container{{Name: "setup", Image: "setup:v1"}, {Name: "migrate", Image: "m:v1"}}
	in := Input{Pod: p, InitContainers: []manifests.ContainerStatus{terminated("setup", 0), running("migrate")},
		Containers: []manifests.ContainerStatus{{Name: "app", State: manifests.ContainerState{Waiting: &manifests.ContainerStateWaiting{Reason: "PodInitializing"}}}}}
	st := Compute(in, nil, time.Now())
	if st.Phase != "Pending" {
		t.Fatalf("phase %s", st.Phase)
	}
	if c := condition(st, "Initialized"); c.Status != "False" || c.Message != "containers with incomplete status: [migrate]" {
		t.Fatalf("Initialized %+v", c)
	}
	if len(st.InitContainerStatuses) != 2 || !st.InitContainerStatuses[0].Ready || st.InitContainerStatuses[1].Ready {
		t.Fatalf("init statuses %+v", st.InitContainerStatuses)
	}

	in.InitContainers[1] = terminated("migrate", 0)
	in.Containers = []manifests.ContainerStatus{running("app")}
	st = Compute(in, nil, time.Now())
	if st.Phase != "Running" || condition(st, "Initialized").Status != "True" || condition(st, "Ready").Status != "True" {
		t.Fatalf("after init %+v", st)
	}

	never := pod("Never", "app")
	never.Spec.InitContainers = []manifests.Container{{Name: "setup"}}
	st = Compute(Input{Pod: never, InitContainers: []manifests.ContainerStatus{terminated("setup", 2)}}, nil, time.Now())
	if st.Phase != "Failed" {
		t.Fatalf("failed init under Never: phase %s", st.Phase)
	}
	onFailure := pod("OnFailure", "app")
	onFailure.Spec.InitContainers = []manifests.Container{{Name: "setup"}}
	st = Compute(Input{Pod: onFailure, InitContainers: []manifests.ContainerStatus{waiting("setup", true)}}, nil, time.Now())
	if st.Phase != "Pending" {
		t.Fatalf("crash-looping init: phase %s", st.Phase)
	}
}

func TestComputeProbeResults(t *testing.T) {
	pod := &manifests.Pod{}
	pod.Spec.Containers = []manifests.Container{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	running := manifests.ContainerState{Running: &manifests.ContainerStateRunning{}}
	in := Input{Pod: pod, Containers: []manifests.ContainerStatus{{Name: "a", State: running}, {Name: "b", State: running}, {Name: "c", State: running}},
		Probes: map[string]ProbeResult{"a": {Started: true, Ready: true}, "b": {Started: true}, "c": {Ready: true}}}
	st := Compute(in, nil, time.Now())
	want := map[string][2]bool{"a": {true, true}, "b": {true, false}, "c": {false, false}}
	for _, cs := range st.ContainerStatuses {
		if w := want[cs.Name]; *cs.Started != w[0] || cs.Ready != w[1] {
			t.Fatalf("%s: started %v ready %v, want %v", cs.Name, *cs.Started, cs.Ready, w)
		}
	}
	if st.Phase != manifests.PodRunning {
		t.Fatalf("phase %s", st.Phase)
	}
	for _, c := range st.Conditions {
		if (c.Type == manifests.PodReady || c.Type == manifests.ContainersReady) &&
			(c.Status != manifests.ConditionFalse || c.Message != "containers with unready status: [b c]") {
			t.Fatalf("condition %+v", c)
		}
	}
	in.Probes = map[string]ProbeResult{"b": {Started: true, Ready: true}, "c": {Started: true, Ready: true}}
	for _, c := range Compute(in, &st, time.Now()).Conditions {
		if c.Type == manifests.PodReady && c.Status != manifests.ConditionTrue {
			t.Fatalf("condition %+v", c)
		}
	}
}
