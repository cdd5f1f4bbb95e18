package edgeagent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/edgeagent/state"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/logfile"
	"github.com/edgeorch/edgeorch/runtime/oci"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// pushModules pushes wasm/build/<name>.wasm as <name>:v1 for each name.
func (cp *controlPlane) pushModules(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		f, err := os.Open(testmodules.Path(t, name))
		if err != nil {
			t.Fatal(err)
		}
		_, err = cp.cl.PushModule(ctxT(t), name+":v1", f)
		f.Close()
		if err != nil {
			t.Fatalf("push %s: %v", name, err)
		}
	}
}

// modulePod is a one-container wasm pod on node-1 running module:v1.
func modulePod(name, module, policy, memoryLimit string, args ...string) *manifests.Pod {
	wasmClass := manifests.RuntimeWasm
	p := &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.PodSpec{
			RuntimeClassName: &wasmClass, RestartPolicy: policy, NodeName: "node-1",
			Containers: []manifests.Container{{Name: "main", Image: module + ":v1", Args: args,
				Env: []manifests.EnvVar{{Name: "GREETING", Value: "hi"}, {Name: "NODE_NAME", Value: "node-1"}}}},
		},
	}
	if memoryLimit != "" {
		p.Spec.Containers[0].Resources.Limits = manifests.ResourceList{"memory": manifests.Quantity(memoryLimit)}
	}
	return p
}

// podLog is the text of a pod's container log (run 0), each line prefixed
// with its timestamp.
func podLog(t *testing.T, dataDir string, pod *manifests.Pod) string {
	t.Helper()
	var b bytes.Buffer
	path := filepath.Join(dataDir, "pods", "default_"+pod.Name+"_"+pod.UID, "logs", "main", "0.log")
	if err := logfile.Read(ctxT(t), path, logfile.ReadOptions{Timestamps: true}, &b); err != nil && !os.IsNotExist(err) {
		t.Fatalf("read log of %s: %v", pod.Name, err)
	}
	return b.String()
}

// allocatedMiB is N of the memory bomb's "allocated N MiB before malloc
// failed", or -1 when it has not said it yet.
func allocatedMiB(log string) int {
	i := strings.Index(log, "allocated ")
	if i < 0 {
		return -1
	}
	var n int
	if _, err := fmt.Sscanf(log[i:], "allocated %d MiB", &n); err != nil {
		return -1
	}
	return n
}

// TestRunawayPodsNeighbourKeepsLogging runs, on one node with the real
// agent, real NATS and wazero, a busy loop with activeDeadlineSeconds 2, a
// memory bomb with limits.memory 16Mi (restartPolicy Never), a memory bomb
// without a limit under the node's default cap of 32 MiB (restartPolicy
// Always) and a neighbour that logs every second. The loop pod fails with
// DeadlineExceeded, the first bomb is OOMKilled and its pod Failed, the
// second is OOMKilled again and again within the default cap, and the
// neighbour keeps logging throughout, never restarted.
func TestRunawayPodsNeighbourKeepsLogging(t *testing.T) {
	cp := startControlPlane(t)
	cp.pushModules(t, "hello", "loop", "membomb")
	dataDir := t.TempDir()
	startAgentWith(t, cp.url, dataDir, wasm.Options{DefaultMemoryLimitBytes: 32 << 20})

	neighbour := cp.assign(t, modulePod("neighbour", "hello", manifests.RestartAlways, "16Mi"))
	var neighbourID string
	eventually(t, 20*time.Second, func() error {
		p := cp.pod(t, "neighbour")
		if p.Status.Phase != manifests.PodRunning || len(p.Status.ContainerStatuses) != 1 {
			return fmt.Errorf("neighbour: %+v", p.Status)
		}
		if !strings.Contains(podLog(t, dataDir, neighbour), "hi from node-1 #1") {
			return fmt.Errorf("neighbour has not logged yet")
		}
		neighbourID = p.Status.ContainerStatuses[0].ContainerID
		return nil
	})

	deadline := int64(2)
	loopPod := modulePod("loop", "loop", manifests.RestartAlways, "")
	loopPod.Spec.ActiveDeadlineSeconds = &deadline
	assigned := time.Now()
	cp.assign(t, loopPod)
	bomb := cp.assign(t, modulePod("bomb", "membomb", manifests.RestartNever, "16Mi"))
	bombDefault := cp.assign(t, modulePod("bomb-default", "membomb", manifests.RestartAlways, ""))

	var loopRunning, loopFailed time.Time
	var loopStatus manifests.PodStatus
	eventually(t, 60*time.Second, func() error {
		var pending []string
		p := cp.pod(t, "loop")
		switch {
		case p.Status.Phase == manifests.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil:
			if loopRunning.IsZero() {
				loopRunning = time.Now()
			}
			pending = append(pending, "loop running")
		case p.Status.Phase == manifests.PodFailed:
			if loopFailed.IsZero() {
				loopFailed, loopStatus = time.Now(), p.Status
			}
		default:
			pending = append(pending, fmt.Sprintf("loop %s", p.Status.Phase))
		}
		p = cp.pod(t, "bomb")
		if p.Status.Phase != manifests.PodFailed {
			pending = append(pending, fmt.Sprintf("bomb %s", p.Status.Phase))
		}
		p = cp.pod(t, "bomb-default")
		if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].RestartCount < 2 {
			pending = append(pending, fmt.Sprintf("bomb-default %+v", cs))
		}
		if len(pending) > 0 {
			return fmt.Errorf("waiting for %v", pending)
		}
		return nil
	})

	// The loop ran, and was stopped by its deadline, counted from the
	// pod's start (after the assignment).
	cs := loopStatus.ContainerStatuses[0]
	term := cs.State.Terminated
	if loopStatus.Reason != "DeadlineExceeded" || term == nil || term.ExitCode != 137 || cs.RestartCount != 0 {
		t.Fatalf("loop pod: %+v, want Failed DeadlineExceeded, container terminated 137, not restarted", loopStatus)
	}
	// The module ran (the deadline counts from the pod's start, before the
	// module's compilation) and was killed running: it did not end by
	// itself, and was not stopped before it started.
	if !strings.HasPrefix(term.ContainerID, "wasm://") || term.Reason != runtime.ReasonKilled || term.Message != "stopped" || term.FinishedAt.Before(term.StartedAt) {
		t.Fatalf("loop container: %+v, want a run ended by a kill", term)
	}
	if took := loopFailed.Sub(assigned); took < 2*time.Second || took > 15*time.Second {
		t.Fatalf("loop pod failed %v after its assignment, want about its 2 s deadline", took)
	}
	seen := "never seen Running by the poll"
	if !loopRunning.IsZero() {
		seen = fmt.Sprintf("seen Running %v after the assignment", loopRunning.Sub(assigned).Round(time.Millisecond))
	}
	t.Logf("loop: %s, Failed/%s %v after it (container %s %d, ran %v in whole seconds)",
		seen, loopStatus.Reason, loopFailed.Sub(assigned).Round(time.Millisecond), term.Reason, term.ExitCode, term.FinishedAt.Sub(term.StartedAt))

	// The bomb with its own limit: OOMKilled within 16 MiB, the pod Failed.
	p := cp.pod(t, "bomb")
	term = p.Status.ContainerStatuses[0].State.Terminated
	if term == nil || term.Reason != "OOMKilled" || term.ExitCode != 137 || !strings.Contains(term.Message, "memory limit reached") || strings.Contains(term.Message, "default") {
		t.Fatalf("bomb: %+v, want OOMKilled 137 on its own limit", p.Status)
	}
	if n := allocatedMiB(podLog(t, dataDir, bomb)); n < 8 || n >= 16 {
		t.Fatalf("bomb with limits.memory 16Mi allocated %d MiB", n)
	}
	// The bomb without a limit: OOMKilled at the node's default, restarted.
	p = cp.pod(t, "bomb-default")
	last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated
	if last == nil || last.Reason != "OOMKilled" || last.ExitCode != 137 || !strings.Contains(last.Message, "the node's default limit of 32 MiB") {
		t.Fatalf("bomb-default: %+v, want its last run OOMKilled 137 at the default limit", p.Status.ContainerStatuses[0])
	}
	if n := allocatedMiB(podLog(t, dataDir, bombDefault)); n < 16 || n >= 32 {
		t.Fatalf("bomb without a limit allocated %d MiB under the default cap of 32 MiB", n)
	}
	t.Logf("bomb: %s %q; bomb-default: restarts %d, last %s %q", term.Reason, term.Message,
		p.Status.ContainerStatuses[0].RestartCount, last.Reason, last.Message)

	// The neighbour logs on, and its log shows no pause all along.
	before := strings.Count(podLog(t, dataDir, neighbour), "hi from node-1 #")
	eventually(t, 20*time.Second, func() error {
		if n := strings.Count(podLog(t, dataDir, neighbour), "hi from node-1 #"); n < before+2 {
			return fmt.Errorf("neighbour logged %d lines, want %d", n, before+2)
		}
		return nil
	})
	p = cp.pod(t, "neighbour")
	ncs := p.Status.ContainerStatuses[0]
	if p.Status.Phase != manifests.PodRunning || ncs.State.Running == nil || ncs.RestartCount != 0 || ncs.ContainerID != neighbourID {
		t.Fatalf("neighbour: %+v, want the same container still running, restart count 0", ncs)
	}
	var stamps []time.Time
	for _, line := range strings.Split(strings.TrimSpace(podLog(t, dataDir, neighbour)), "\n") {
		ts, _, _ := strings.Cut(line, " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("neighbour log line %q: %v", line, err)
		}
		stamps = append(stamps, at)
	}
	var maxGap time.Duration
	during := 0
	for i := 1; i < len(stamps); i++ {
		if stamps[i].After(assigned) {
			during++
			maxGap = max(maxGap, stamps[i].Sub(stamps[i-1]))
		}
	}
	// hello sleeps 1 s between lines; 4 s allows for a loaded machine, a
	// neighbour stalled by the loop or the bombs would show more.
	if maxGap > 4*time.Second || during < 3 {
		t.Fatalf("neighbour: %d lines after the runaway pods came, longest gap %v", during, maxGap)
	}
	t.Logf("neighbour: %d lines since the runaway pods came, longest gap between lines %v, restarts %d",
		during, maxGap.Round(time.Millisecond), ncs.RestartCount)

	// The loop pod stays failed: past its deadline nothing restarts it.
	if p := cp.pod(t, "loop"); p.Status.Phase != manifests.PodFailed || p.Status.ContainerStatuses[0].RestartCount != 0 || p.Status.ContainerStatuses[0].State.Running != nil {
		t.Fatalf("loop pod after its deadline: %+v", p.Status)
	}
}

// TestDeadlineSurvivesAgentRestart stops the agent while a pod with
// activeDeadlineSeconds runs and starts it again after the deadline: the
// deadline counts from the stored start time, so the pod fails with
// DeadlineExceeded at once and its container is not started again.
func TestDeadlineSurvivesAgentRestart(t *testing.T) {
	cp := startControlPlane(t)
	cp.pushModules(t, "sleep")
	dataDir := t.TempDir()
	ag := startAgentWith(t, cp.url, dataDir, wasm.Options{})

	deadline := int64(4)
	pod := modulePod("sleeper", "sleep", manifests.RestartAlways, "")
	pod.Spec.ActiveDeadlineSeconds = &deadline
	pod = cp.assign(t, pod)
	var running time.Time
	eventually(t, 20*time.Second, func() error {
		p := cp.pod(t, "sleeper")
		if p.Status.Phase != manifests.PodRunning || !strings.Contains(podLog(t, dataDir, pod), "sleeping forever") {
			return fmt.Errorf("sleeper: %+v", p.Status)
		}
		running = time.Now()
		return nil
	})
	ag.cancel()
	// The pod's start time is before running was seen: once this passes,
	// so has its deadline. (Not a synchronisation: the deadline is the
	// passing of this time while the agent is down.)
	time.Sleep(time.Until(running.Add(time.Duration(deadline)*time.Second + 200*time.Millisecond)))

	restarted := time.Now()
	ag2 := startAgentWith(t, cp.url, dataDir, wasm.Options{})
	eventually(t, 20*time.Second, func() error {
		if p := cp.pod(t, "sleeper"); p.Status.Phase != manifests.PodFailed {
			return fmt.Errorf("sleeper: %s", p.Status.Phase)
		}
		return nil
	})
	failedAfter := time.Since(restarted)
	p := cp.pod(t, "sleeper")
	cs := p.Status.ContainerStatuses[0]
	if p.Status.Reason != "DeadlineExceeded" || cs.State.Terminated == nil || cs.RestartCount != 0 {
		t.Fatalf("sleeper after the restart: %+v", p.Status)
	}
	if n := strings.Count(podLog(t, dataDir, pod), "sleeping forever"); n != 1 {
		t.Fatalf("the module started %d times, want once (not again after the agent restart)", n)
	}
	list, err := ag2.rt.ListContainers(ctxT(t), runtime.ContainerFilter{})
	if err != nil || len(list) != 0 {
		t.Fatalf("containers after the restart: %+v %v", list, err)
	}
	t.Logf("after the agent restart the pod was Failed/%s in %v", p.Status.Reason, failedAfter.Round(time.Millisecond))
}

// TestWorkerDeadlineSparesFinishedPod: a pod that completed before its
// activeDeadlineSeconds stays Succeeded after it (the kubelet does not
// sync a terminal pod again), while a pod failed by its deadline keeps
// that reason in a new worker (an agent restart).
func TestWorkerDeadlineSparesFinishedPod(t *testing.T) {
	ctx := context.Background()
	rt := newFakeRuntime()
	api := &fakeAPI{objects: map[string]manifests.Object{"configmaps/default/cfg": &manifests.ConfigMap{Data: map[string]string{"level": "x"}}}}
	a := newTestAgent(t, ociRuntime{rt}, api)
	deadline := int64(60)

	p := testWorkerPod("oci", "img:v1", manifests.RestartNever)
	p.Spec.ActiveDeadlineSeconds = &deadline
	w := newPodWorker(a, &state.Pod{Pod: p, Revision: 1})
	w.sync(ctx)
	rt.exit(strings.TrimPrefix(onlyStatus(t, w).ContainerID, "oci://"), 0)
	w.sync(ctx)
	w.sync(ctx)
	if w.rec.Status.Phase != manifests.PodSucceeded {
		t.Fatalf("phase %s, want Succeeded", w.rec.Status.Phase)
	}
	w.rec.StartTime = time.Now().Add(-time.Hour)
	w.sync(ctx)
	if st := w.rec.Status; st.Phase != manifests.PodSucceeded || st.Reason != "" {
		t.Fatalf("a completed pod past its deadline: %s %s, want Succeeded", st.Phase, st.Reason)
	}

	p2 := testWorkerPod("oci", "img:v1", manifests.RestartAlways)
	p2.Name, p2.UID = "p2", "uid-2"
	p2.Spec.ActiveDeadlineSeconds = &deadline
	w2 := newPodWorker(a, &state.Pod{Pod: p2, Revision: 1})
	w2.sync(ctx)
	w2.rec.StartTime = time.Now().Add(-time.Hour)
	w2.sync(ctx)
	if st := w2.rec.Status; st.Phase != manifests.PodFailed || st.Reason != "DeadlineExceeded" {
		t.Fatalf("past the deadline: %+v", st)
	}
	var rec *state.Pod
	recs, err := a.db.Pods()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Pod.Name == "p2" {
			rec = r
		}
	}
	if rec == nil {
		t.Fatalf("p2 not stored: %v", recs)
	}
	rt.forget()
	w3 := newPodWorker(a, rec)
	w3.sync(ctx)
	w3.sync(ctx)
	if st := w3.rec.Status; st.Phase != manifests.PodFailed || st.Reason != "DeadlineExceeded" || len(rt.containers) != 0 {
		t.Fatalf("after a restart: %+v, %d containers", st, len(rt.containers))
	}
}

// TestOCIDeadlineExceeded runs a shell busy loop in a real runc container
// with activeDeadlineSeconds 2: the pod fails with DeadlineExceeded and the
// container (PID 1 ignores SIGTERM) is killed after its grace period.
func TestOCIDeadlineExceeded(t *testing.T) {
	image := busyboxImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	rt, err := oci.New(ctx, oci.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, rt, &fakeAPI{})
	grace, deadline := int64(1), int64(2)
	p := ociPod(image)
	p.Spec.RestartPolicy = manifests.RestartAlways
	p.Spec.TerminationGracePeriodSeconds = &grace
	p.Spec.ActiveDeadlineSeconds = &deadline
	p.Spec.Containers[0].Command = []string{"sh", "-c", "while :; do :; done"}
	w := newPodWorker(a, &state.Pod{Pod: p, Revision: 1})
	defer w.teardown(context.Background())

	start := time.Now()
	cs := syncUntil(t, ctx, w, 20*time.Second, "running", func(cs manifests.ContainerStatus) bool { return cs.State.Running != nil })
	id := strings.TrimPrefix(cs.ContainerID, "oci://")
	cs = syncUntil(t, ctx, w, 20*time.Second, "terminated", func(cs manifests.ContainerStatus) bool { return cs.State.Terminated != nil })
	took := time.Since(start)
	st := w.rec.Status
	if st.Phase != manifests.PodFailed || st.Reason != "DeadlineExceeded" || cs.State.Terminated.ExitCode != 137 || cs.RestartCount != 0 {
		t.Fatalf("past the deadline: %+v, container %+v", st, cs.State.Terminated)
	}
	if took < 2*time.Second {
		t.Fatalf("failed %v after the start, before its 2 s deadline", took)
	}
	if rst, err := rt.ContainerStatus(ctx, id); err != nil || rst.State != runtime.StateExited {
		t.Fatalf("runc container: %+v %v", rst, err)
	}
	// Later syncs leave it failed and start nothing.
	w.sync(ctx)
	w.sync(ctx)
	if cs := onlyStatus(t, w); cs.State.Terminated == nil || cs.RestartCount != 0 || w.rec.Status.Phase != manifests.PodFailed {
		t.Fatalf("after more syncs: %+v", cs)
	}
	t.Logf("runc pod Failed/%s %v after the start (container %s %d)", st.Reason, took.Round(time.Millisecond), cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
}
