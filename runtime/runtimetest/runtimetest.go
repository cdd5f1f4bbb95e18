// Package runtimetest is the conformance suite every runtime.Runtime
// implementation runs from its own tests.
package runtimetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/logfile"
)

// Images names the image each scenario runs. Programs write their output to
// the container's log as described.
type Images struct {
	// ExitCode prints a line to stdout, then exits with the code given as
	// its first argument.
	ExitCode string
	// Env prints every argument as "arg[<i>]=<arg>" and every environment
	// variable as "env <KEY>=<value>", one a line, then exits 0.
	Env string
	// SleepForever runs until stopped.
	SleepForever string
	// BusyLoop spins without making system calls until stopped; empty skips
	// that scenario.
	BusyLoop string
	// Missing is an image the runtime cannot find; empty skips that check.
	Missing string
}

// Run runs the suite. newRuntime returns a fresh runtime for one scenario;
// the suite closes it when the scenario ends.
func Run(t *testing.T, newRuntime func(t *testing.T) runtime.Runtime, images Images) {
	s := &suite{newRuntime: newRuntime, images: images}
	t.Run("SandboxLifecycle", s.sandboxLifecycle)
	t.Run("ExitCodes", s.exitCodes)
	t.Run("EnvAndArgs", s.envAndArgs)
	t.Run("CRILogFormat", s.criLogFormat)
	t.Run("StopLongRunner", func(t *testing.T) { s.stopRunner(t, images.SleepForever) })
	t.Run("StopBusyLoop", func(t *testing.T) {
		if images.BusyLoop == "" {
			t.Skip("no busy-loop image")
		}
		s.stopRunner(t, images.BusyLoop)
	})
	t.Run("RemoveRules", s.removeRules)
	t.Run("ListFilters", s.listFilters)
	t.Run("UnknownIDs", s.unknownIDs)
	t.Run("MissingImage", s.missingImage)
}

type suite struct {
	newRuntime func(t *testing.T) runtime.Runtime
	images     Images
}

// env is one scenario's runtime, context and log directory.
type env struct {
	t      *testing.T
	rt     runtime.Runtime
	ctx    context.Context
	logDir string
}

func (s *suite) setup(t *testing.T) *env {
	t.Helper()
	rt := s.newRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		if err := rt.Close(cctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		cancel()
	})
	return &env{t: t, rt: rt, ctx: ctx, logDir: t.TempDir()}
}

func (e *env) sandbox(name string, labels map[string]string) string {
	e.t.Helper()
	id, err := e.rt.RunPodSandbox(e.ctx, runtime.PodSandboxConfig{
		Name: name, Namespace: "conformance", UID: "uid-" + name, Labels: labels,
		LogDirectory: filepath.Join(e.logDir, name), Hostname: name,
	})
	if err != nil {
		e.t.Fatalf("RunPodSandbox %s: %v", name, err)
	}
	if id == "" {
		e.t.Fatalf("RunPodSandbox %s: empty ID", name)
	}
	return id
}

func (e *env) config(name, image string, args ...string) runtime.ContainerConfig {
	return runtime.ContainerConfig{
		Name:    name,
		Image:   image,
		Args:    args,
		LogPath: filepath.Join(e.logDir, name+".log"),
	}
}

func (e *env) create(sb string, cfg runtime.ContainerConfig) string {
	e.t.Helper()
	id, err := e.rt.CreateContainer(e.ctx, sb, cfg)
	if err != nil {
		e.t.Fatalf("CreateContainer %s: %v", cfg.Name, err)
	}
	if id == "" {
		e.t.Fatalf("CreateContainer %s: empty ID", cfg.Name)
	}
	return id
}

func (e *env) run(sb string, cfg runtime.ContainerConfig) string {
	e.t.Helper()
	id := e.create(sb, cfg)
	if err := e.rt.StartContainer(e.ctx, id); err != nil {
		e.t.Fatalf("StartContainer %s: %v", cfg.Name, err)
	}
	return id
}

func (e *env) status(id string) runtime.ContainerStatus {
	e.t.Helper()
	st, err := e.rt.ContainerStatus(e.ctx, id)
	if err != nil {
		e.t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	return st
}

// waitState polls until the container reaches state.
func (e *env) waitState(id string, state runtime.ContainerState, within time.Duration) runtime.ContainerStatus {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := e.status(id)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("container %s (%s) is %s after %v, want %s (%+v)", st.Name, id, st.State, within, state, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logText reads the container's log back as text.
func (e *env) logText(path string) string {
	e.t.Helper()
	var b bytes.Buffer
	if err := logfile.Read(e.ctx, path, logfile.ReadOptions{}, &b); err != nil {
		e.t.Fatalf("read log %s: %v", path, err)
	}
	return b.String()
}

func wantErr(t *testing.T, what string, err, class error) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Fatalf("%s: err = %v, want %v", what, err, class)
	}
}

func (s *suite) sandboxLifecycle(t *testing.T) {
	e := s.setup(t)
	sb := e.sandbox("life", nil)
	other := e.sandbox("other", nil)
	if sb == other {
		t.Fatalf("two sandboxes share ID %s", sb)
	}
	id := e.run(sb, e.config("sleeper", s.images.SleepForever))
	e.waitState(id, runtime.StateRunning, 5*time.Second)
	for i := 0; i < 2; i++ {
		if err := e.rt.StopPodSandbox(e.ctx, sb); err != nil {
			t.Fatalf("StopPodSandbox #%d: %v", i+1, err)
		}
	}
	if st := e.status(id); st.State != runtime.StateExited {
		t.Fatalf("container is %s after its sandbox stopped", st.State)
	}
	_, err := e.rt.CreateContainer(e.ctx, sb, e.config("late", s.images.ExitCode, "0"))
	if err == nil {
		t.Fatal("CreateContainer in a stopped sandbox succeeded")
	}
	for i := 0; i < 2; i++ {
		if err := e.rt.RemovePodSandbox(e.ctx, sb); err != nil {
			t.Fatalf("RemovePodSandbox #%d: %v", i+1, err)
		}
	}
	_, err = e.rt.ContainerStatus(e.ctx, id)
	wantErr(t, "status of a container of a removed sandbox", err, runtime.ErrNotFound)
	_, err = e.rt.CreateContainer(e.ctx, sb, e.config("gone", s.images.ExitCode, "0"))
	wantErr(t, "CreateContainer in a removed sandbox", err, runtime.ErrNotFound)
	// The other sandbox is untouched.
	e.waitState(e.run(other, e.config("ok", s.images.ExitCode, "0")), runtime.StateExited, 10*time.Second)
}

func (s *suite) exitCodes(t *testing.T) {
	e := s.setup(t)
	sb := e.sandbox("exit", nil)
	for _, tc := range []struct {
		arg    string
		code   int32
		reason string
	}{{"0", 0, runtime.ReasonCompleted}, {"3", 3, runtime.ReasonError}} {
		cfg := e.config("exit-"+tc.arg, s.images.ExitCode, tc.arg)
		before := time.Now()
		id := e.create(sb, cfg)
		if st := e.status(id); st.State != runtime.StateCreated || st.Name != cfg.Name || st.Image != cfg.Image || st.SandboxID != sb {
			t.Fatalf("status after create: %+v", st)
		}
		if err := e.rt.StartContainer(e.ctx, id); err != nil {
			t.Fatalf("StartContainer: %v", err)
		}
		st := e.waitState(id, runtime.StateExited, 10*time.Second)
		if st.ExitCode != tc.code || st.Reason != tc.reason {
			t.Fatalf("exit %s: code %d reason %q, want %d %q", tc.arg, st.ExitCode, st.Reason, tc.code, tc.reason)
		}
		if st.StartedAt.Before(before.Add(-time.Second)) || st.FinishedAt.Before(st.StartedAt) || st.CreatedAt.After(st.StartedAt) {
			t.Fatalf("timestamps out of order: created %v started %v finished %v", st.CreatedAt, st.StartedAt, st.FinishedAt)
		}
		if st.LogPath == "" {
			t.Fatal("status has no log path")
		}
		if text := e.logText(st.LogPath); strings.TrimSpace(text) == "" {
			t.Fatalf("exit %s: log is empty", tc.arg)
		}
		// The status stays after exit, and a second start is refused.
		if again := e.status(id); again.State != runtime.StateExited || again.ExitCode != tc.code || !again.FinishedAt.Equal(st.FinishedAt) {
			t.Fatalf("status changed after exit: %+v", again)
		}
		wantErr(t, "second StartContainer", e.rt.StartContainer(e.ctx, id), runtime.ErrState)
	}
}

func (s *suite) envAndArgs(t *testing.T) {
	e := s.setup(t)
	sb := e.sandbox("env", nil)
	cfg := e.config("printer", s.images.Env, "first-arg", "second arg")
	cfg.Env = []runtime.KeyValue{{Key: "GREETING", Value: "hi there"}, {Key: "EMPTY", Value: ""}}
	id := e.run(sb, cfg)
	st := e.waitState(id, runtime.StateExited, 10*time.Second)
	if st.ExitCode != 0 {
		t.Fatalf("env exited %d (%s %s)", st.ExitCode, st.Reason, st.Message)
	}
	text := e.logText(st.LogPath)
	for _, want := range []string{"arg[1]=first-arg", "arg[2]=second arg", "env GREETING=hi there", "env EMPTY="} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	// Only the configured environment reaches the process.
	if n := strings.Count(text, "\nenv ") + boolInt(strings.HasPrefix(text, "env ")); n != len(cfg.Env) {
		t.Errorf("process saw %d environment variables, want %d:\n%s", n, len(cfg.Env), text)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

var criLine = regexp.MustCompile(`^(\S+) (stdout|stderr) (F|P) (.*)$`)

func (s *suite) criLogFormat(t *testing.T) {
	e := s.setup(t)
	sb := e.sandbox("logs", nil)
	id := e.run(sb, e.config("printer", s.images.Env, "x"))
	st := e.waitState(id, runtime.StateExited, 10*time.Second)
	data, err := os.ReadFile(st.LogPath)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("log has %d lines:\n%s", len(lines), data)
	}
	for _, l := range lines {
		m := criLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("log line %q is not in CRI format", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Fatalf("log line %q: timestamp: %v", l, err)
		}
	}
	if !strings.Contains(string(data), " stdout F arg[1]=x\n") {
		t.Fatalf("log lacks the argument line:\n%s", data)
	}
}

func (s *suite) stopRunner(t *testing.T, image string) {
	e := s.setup(t)
	sb := e.sandbox("stop", nil)
	id := e.run(sb, e.config("runner", image))
	e.waitState(id, runtime.StateRunning, 5*time.Second)
	// Give it a moment to really be running (not merely starting).
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		if st := e.status(id); st.State != runtime.StateRunning {
			t.Fatalf("runner ended on its own: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if err := e.rt.StopContainer(e.ctx, id, time.Second); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("StopContainer took %v", took)
	}
	st := e.waitState(id, runtime.StateExited, 2*time.Second)
	if st.ExitCode == 0 {
		t.Fatalf("stopped container reports exit 0: %+v", st)
	}
	if st.FinishedAt.IsZero() {
		t.Fatal("stopped container has no finish time")
	}
	if err := e.rt.StopContainer(e.ctx, id, time.Second); err != nil {
		t.Fatalf("second StopContainer: %v", err)
	}
	if again := e.status(id); again.ExitCode != st.ExitCode || again.Reason != st.Reason {
		t.Fatalf("second stop changed the status: %+v, was %+v", again, st)
	}
}

func (s *suite) removeRules(t *testing.T) {
	e := s.setup(t)
	sb := e.sandbox("remove", nil)
	id := e.run(sb, e.config("runner", s.images.SleepForever))
	e.waitState(id, runtime.StateRunning, 5*time.Second)
	wantErr(t, "RemoveContainer of a running container", e.rt.RemoveContainer(e.ctx, id), runtime.ErrState)
	if st := e.status(id); st.State != runtime.StateRunning {
		t.Fatalf("refused remove changed the container: %+v", st)
	}
	if err := e.rt.StopContainer(e.ctx, id, time.Second); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := e.rt.RemoveContainer(e.ctx, id); err != nil {
			t.Fatalf("RemoveContainer #%d: %v", i+1, err)
		}
	}
	_, err := e.rt.ContainerStatus(e.ctx, id)
	wantErr(t, "status of a removed container", err, runtime.ErrNotFound)

	// A created, never started container can be removed.
	created := e.create(sb, e.config("idle", s.images.ExitCode, "0"))
	if err := e.rt.RemoveContainer(e.ctx, created); err != nil {
		t.Fatalf("RemoveContainer of a created container: %v", err)
	}
	list, err := e.rt.ListContainers(e.ctx, runtime.ContainerFilter{SandboxID: sb})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Fatalf("removed containers still listed: %+v", list)
	}
}

func (s *suite) listFilters(t *testing.T) {
	e := s.setup(t)
	sbA := e.sandbox("a", map[string]string{"pod": "a"})
	sbB := e.sandbox("b", map[string]string{"pod": "b"})
	cfg := e.config("a-run", s.images.SleepForever)
	cfg.Labels = map[string]string{"role": "server"}
	aRun := e.run(sbA, cfg)
	aDone := e.run(sbA, e.config("a-done", s.images.ExitCode, "0"))
	cfg = e.config("b-run", s.images.SleepForever)
	cfg.Labels = map[string]string{"role": "server"}
	bRun := e.run(sbB, cfg)
	e.waitState(aDone, runtime.StateExited, 10*time.Second)
	e.waitState(aRun, runtime.StateRunning, 5*time.Second)
	e.waitState(bRun, runtime.StateRunning, 5*time.Second)

	running, exited := runtime.StateRunning, runtime.StateExited
	for _, tc := range []struct {
		name   string
		filter runtime.ContainerFilter
		want   []string
	}{
		{"all", runtime.ContainerFilter{}, []string{aRun, aDone, bRun}},
		{"sandbox", runtime.ContainerFilter{SandboxID: sbA}, []string{aRun, aDone}},
		{"running", runtime.ContainerFilter{State: &running}, []string{aRun, bRun}},
		{"exited in a", runtime.ContainerFilter{SandboxID: sbA, State: &exited}, []string{aDone}},
		{"label", runtime.ContainerFilter{Labels: map[string]string{"role": "server"}}, []string{aRun, bRun}},
		{"sandbox label", runtime.ContainerFilter{Labels: map[string]string{"pod": "b"}}, []string{bRun}},
		{"label mismatch", runtime.ContainerFilter{Labels: map[string]string{"role": "client"}}, nil},
		{"unknown sandbox", runtime.ContainerFilter{SandboxID: "no-such-sandbox"}, nil},
	} {
		list, err := e.rt.ListContainers(e.ctx, tc.filter)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := map[string]bool{}
		for _, st := range list {
			got[st.ID] = true
		}
		if len(got) != len(tc.want) || len(list) != len(tc.want) {
			t.Fatalf("%s: listed %v, want %v", tc.name, ids(list), tc.want)
		}
		for _, id := range tc.want {
			if !got[id] {
				t.Fatalf("%s: listed %v, want %v", tc.name, ids(list), tc.want)
			}
		}
	}
}

func ids(list []runtime.ContainerStatus) []string {
	var out []string
	for _, st := range list {
		out = append(out, fmt.Sprintf("%s(%s)", st.ID, st.Name))
	}
	return out
}

func (s *suite) unknownIDs(t *testing.T) {
	e := s.setup(t)
	const id = "0123456789abcdef-unknown"
	wantErr(t, "StartContainer", e.rt.StartContainer(e.ctx, id), runtime.ErrNotFound)
	wantErr(t, "StopContainer", e.rt.StopContainer(e.ctx, id, time.Second), runtime.ErrNotFound)
	_, err := e.rt.ContainerStatus(e.ctx, id)
	wantErr(t, "ContainerStatus", err, runtime.ErrNotFound)
	_, err = e.rt.CreateContainer(e.ctx, id, e.config("x", s.images.ExitCode, "0"))
	wantErr(t, "CreateContainer in an unknown sandbox", err, runtime.ErrNotFound)
	wantErr(t, "StopPodSandbox", e.rt.StopPodSandbox(e.ctx, id), runtime.ErrNotFound)
	// Removal is idempotent: removing what is not there succeeds.
	if err := e.rt.RemoveContainer(e.ctx, id); err != nil {
		t.Fatalf("RemoveContainer of an unknown ID: %v", err)
	}
	if err := e.rt.RemovePodSandbox(e.ctx, id); err != nil {
		t.Fatalf("RemovePodSandbox of an unknown ID: %v", err)
	}
	if st, ok := e.rt.(runtime.Statser); ok {
		_, err := st.ContainerStats(e.ctx, id)
		wantErr(t, "ContainerStats", err, runtime.ErrNotFound)
	}
}

func (s *suite) missingImage(t *testing.T) {
	if s.images.Missing == "" {
		t.Skip("no missing image given")
	}
	e := s.setup(t)
	sb := e.sandbox("missing", nil)
	_, err := e.rt.CreateContainer(e.ctx, sb, e.config("missing", s.images.Missing))
	wantErr(t, "CreateContainer of a missing image", err, runtime.ErrImage)
}
