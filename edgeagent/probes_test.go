package edgeagent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime/fake"
)

// podCondition returns the status of a condition of the worker's pod.
func podCondition(w *podWorker, typ string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rec.Status == nil {
		return ""
	}
	for _, c := range w.rec.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// syncUntil syncs the worker until cond holds for its container status.
func syncUntil(t *testing.T, ctx context.Context, w *podWorker, timeout time.Duration, what string, cond func(cs manifests.ContainerStatus) bool) manifests.ContainerStatus {
	t.Helper()
	var cs manifests.ContainerStatus
	eventually(t, timeout, func() error {
		w.sync(ctx)
		cs = onlyStatus(t, w)
		if !cond(cs) {
			return fmt.Errorf("%s: status %+v", what, cs)
		}
		return nil
	})
	return cs
}

func TestWorkerReadinessProbe(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	status.Store(503)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(status.Load())) }))
	defer srv.Close()
	_, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)

	rt := fake.New(manifests.RuntimeOCI)
	a := newTestAgent(t, rt, &fakeAPI{})
	pod := ociPod("fake://run")
	pod.Spec.Containers[0].Ports = []manifests.ContainerPort{{Name: "http", ContainerPort: int32(port)}}
	pod.Spec.Containers[0].ReadinessProbe = &manifests.Probe{
		HTTPGet: &manifests.HTTPGetAction{Path: "/ready", Port: manifests.FromString("http")}, PeriodSeconds: 1, FailureThreshold: 1}
	w := newPodWorker(a, &state.Pod{Pod: pod, Revision: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer w.teardown(context.Background())

	cs := syncStatus(t, w)
	if cs.State.Running == nil || cs.Ready || podCondition(w, manifests.PodReady) != manifests.ConditionFalse {
		t.Fatalf("running but not probed yet: %+v", cs)
	}
	time.Sleep(1200 * time.Millisecond)
	if cs := syncStatus(t, w); cs.Ready {
		t.Fatalf("ready while the probe fails: %+v", cs)
	}
	status.Store(200)
	syncUntil(t, ctx, w, 5*time.Second, "ready", func(cs manifests.ContainerStatus) bool { return cs.Ready })
	if podCondition(w, manifests.PodReady) != manifests.ConditionTrue || podCondition(w, manifests.ContainersReady) != manifests.ConditionTrue {
		t.Fatalf("conditions %+v", w.rec.Status.Conditions)
	}
	status.Store(500)
	cs = syncUntil(t, ctx, w, 5*time.Second, "unready", func(cs manifests.ContainerStatus) bool { return !cs.Ready })
	// Readiness never restarts a container.
	if cs.RestartCount != 0 || cs.State.Running == nil || podCondition(w, manifests.PodReady) != manifests.ConditionFalse {
		t.Fatalf("status %+v", cs)
	}
}

func TestWorkerLivenessAndStartupRestart(t *testing.T) {
	t.Parallel()
	rt := fake.New(manifests.RuntimeOCI)
	a := newTestAgent(t, rt, &fakeAPI{})
	grace := int64(0)
	pod := ociPod("fake://run")
	pod.Spec.TerminationGracePeriodSeconds = &grace
	pod.Spec.Containers[0].LivenessProbe = &manifests.Probe{
		Exec: &manifests.ExecAction{Command: []string{"false"}}, PeriodSeconds: 1, FailureThreshold: 1}
	// The startup probe waits a second before its first run, so the first
	// status is certainly from before it succeeded.
	pod.Spec.Containers[0].StartupProbe = &manifests.Probe{
		Exec: &manifests.ExecAction{Command: []string{"true"}}, PeriodSeconds: 1, InitialDelaySeconds: 1}
	w := newPodWorker(a, &state.Pod{Pod: pod, Revision: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer w.teardown(context.Background())

	cs := syncStatus(t, w)
	if cs.Started == nil || *cs.Started {
		t.Fatalf("started before the startup probe succeeded: %+v", cs)
	}
	// Started, then killed by liveness and restarted at once (first restart).
	cs = syncUntil(t, ctx, w, 5*time.Second, "restart", func(cs manifests.ContainerStatus) bool { return cs.RestartCount == 1 && cs.State.Running != nil })
	last := cs.LastTerminationState.Terminated
	if last == nil || last.Reason != "Error" || last.ExitCode != fake.ExitTerminated ||
		last.Message != `Liveness probe failed: command "false" exited with 1` {
		t.Fatalf("last state %+v", last)
	}
	// Killed again: now in back-off (BackoffBase is an hour in tests).
	cs = syncUntil(t, ctx, w, 5*time.Second, "back-off", func(cs manifests.ContainerStatus) bool {
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == reasonCrashLoop
	})
	if cs.RestartCount != 1 || cs.Ready || podCondition(w, manifests.PodReady) != manifests.ConditionFalse {
		t.Fatalf("status %+v", cs)
	}

	// A startup probe that never succeeds restarts the container too,
	// and liveness never runs.
	pod2 := ociPod("fake://run")
	pod2.UID, pod2.Name = "uid-2", "p2"
	pod2.Spec.TerminationGracePeriodSeconds = &grace
	pod2.Spec.Containers[0].StartupProbe = &manifests.Probe{Exec: &manifests.ExecAction{Command: []string{"exit", "2"}}, PeriodSeconds: 1, FailureThreshold: 2}
	w2 := newPodWorker(a, &state.Pod{Pod: pod2, Revision: 1})
	defer w2.teardown(context.Background())
	cs = syncUntil(t, ctx, w2, 6*time.Second, "startup restart", func(cs manifests.ContainerStatus) bool { return cs.RestartCount == 1 })
	if last := cs.LastTerminationState.Terminated; last == nil || last.Reason != "Error" || last.Message != `Startup probe failed: command "exit 2" exited with 2` {
		t.Fatalf("last state %+v", last)
	}
}

func TestWorkerProbesRestartPolicyNever(t *testing.T) {
	t.Parallel()
	rt := fake.New(manifests.RuntimeOCI)
	a := newTestAgent(t, rt, &fakeAPI{})
	grace := int64(0)
	pod := ociPod("fake://run")
	pod.Spec.RestartPolicy = manifests.RestartNever
	pod.Spec.TerminationGracePeriodSeconds = &grace
	pod.Spec.Containers[0].LivenessProbe = &manifests.Probe{TCPSocket: &manifests.TCPSocketAction{Port: manifests.FromInt(1)}, PeriodSeconds: 1, FailureThreshold: 1}
	w := newPodWorker(a, &state.Pod{Pod: pod, Revision: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer w.teardown(context.Background())
	cs := syncUntil(t, ctx, w, 5*time.Second, "terminated", func(cs manifests.ContainerStatus) bool { return cs.State.Terminated != nil })
	if term := cs.State.Terminated; term.Reason != "Error" || cs.RestartCount != 0 || w.rec.Status.Phase != manifests.PodFailed {
		t.Fatalf("status %+v phase %s", cs, w.rec.Status.Phase)
	}
}
