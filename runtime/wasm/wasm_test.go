package wasm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/sys"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/logfile"
	"github.com/edgeorch/edgeorch/runtime/runtimetest"
	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// cacheDir is a compilation cache shared by the package's tests, so each
// module is compiled once.
var cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasm-cache-")
	if err != nil {
		panic(err)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newRuntime(t *testing.T) *Runtime {
	t.Helper()
	return newRuntimeWith(t, Options{})
}

// newRuntimeWith is newRuntime with opts (the shared cache added).
func newRuntimeWith(t *testing.T, opts Options) *Runtime {
	t.Helper()
	opts.CacheDir = cacheDir
	r, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func TestConformance(t *testing.T) {
	runtimetest.Run(t, func(t *testing.T) runtime.Runtime { return newRuntime(t) }, runtimetest.Images{
		ExitCode:     testmodules.Path(t, "exit"),
		Env:          testmodules.Path(t, "env"),
		SleepForever: testmodules.Path(t, "sleep"),
		BusyLoop:     testmodules.Path(t, "loop"),
		Missing:      filepath.Join(t.TempDir(), "missing.wasm"),
	})
}

// fixture is a runtime with one sandbox.
type fixture struct {
	t   *testing.T
	r   *Runtime
	ctx context.Context
	sb  string
	dir string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, Options{})
}

func newFixtureWith(t *testing.T, opts Options) *fixture {
	t.Helper()
	r := newRuntimeWith(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() {
		if err := r.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		cancel()
	})
	dir := t.TempDir()
	sb, err := r.RunPodSandbox(ctx, runtime.PodSandboxConfig{Name: "p", Namespace: "default", LogDirectory: dir})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, r: r, ctx: ctx, sb: sb, dir: dir}
}

func (f *fixture) start(cfg runtime.ContainerConfig) string {
	f.t.Helper()
	if cfg.LogPath == "" {
		cfg.LogPath = filepath.Join(f.dir, cfg.Name+".log")
	}
	id, err := f.r.CreateContainer(f.ctx, f.sb, cfg)
	if err != nil {
		f.t.Fatalf("create %s: %v", cfg.Name, err)
	}
	if err := f.r.StartContainer(f.ctx, id); err != nil {
		f.t.Fatalf("start %s: %v", cfg.Name, err)
	}
	return id
}

func (f *fixture) wait(id string, cond func(runtime.ContainerStatus) bool) runtime.ContainerStatus {
	f.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := f.r.ContainerStatus(f.ctx, id)
		if err != nil {
			f.t.Fatal(err)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out; status %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exited(st runtime.ContainerStatus) bool { return st.State == runtime.StateExited }

func (f *fixture) logs(id string) string {
	f.t.Helper()
	st, err := f.r.ContainerStatus(f.ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	var b bytes.Buffer
	if err := logfile.Read(f.ctx, st.LogPath, logfile.ReadOptions{}, &b); err != nil {
		f.t.Fatal(err)
	}
	return b.String()
}

func TestMemoryBombIsOOMKilledNeighbourRuns(t *testing.T) {
	f := newFixture(t)
	hello := f.start(runtime.ContainerConfig{
		Name: "hello", Image: testmodules.Path(t, "hello"), MemoryLimitBytes: 16 << 20,
		Env: []runtime.KeyValue{{Key: "GREETING", Value: "hi"}, {Key: "NODE_NAME", Value: "n1"}},
	})
	f.wait(hello, func(st runtime.ContainerStatus) bool { return strings.Contains(f.logs(hello), "hi from n1 #1") })
	bomb := f.start(runtime.ContainerConfig{Name: "bomb", Image: testmodules.Path(t, "membomb"), MemoryLimitBytes: 16 << 20})
	st := f.wait(bomb, exited)
	if st.Reason != runtime.ReasonOOMKilled || st.ExitCode != 137 {
		t.Fatalf("bomb: %+v, want OOMKilled 137", st)
	}
	text := f.logs(bomb)
	t.Logf("bomb: %s; log: %s", st.Message, text)
	if !strings.Contains(text, "MiB before malloc failed") {
		t.Fatalf("bomb log: %q", text)
	}
	if strings.Contains(text, "allocated 0 MiB") || strings.Contains(text, "allocated 16 MiB") {
		t.Fatalf("bomb got an implausible amount within 16 MiB: %q", text)
	}
	if hs, err := f.r.ContainerStatus(f.ctx, hello); err != nil || hs.State != runtime.StateRunning {
		t.Fatalf("neighbour: %+v %v", hs, err)
	}
	stats, err := f.r.ContainerStats(f.ctx, hello)
	if err != nil || stats.MemoryBytes == 0 || stats.MemoryBytes > 16<<20 {
		t.Fatalf("hello stats %+v %v", stats, err)
	}
	f.wait(hello, func(runtime.ContainerStatus) bool { return strings.Contains(f.logs(hello), "hi from n1 #2") })
}

func TestLimitBelowInitialMemory(t *testing.T) {
	f := newFixture(t)
	id := f.start(runtime.ContainerConfig{Name: "tiny", Image: testmodules.Path(t, "hello"), MemoryLimitBytes: 1})
	st := f.wait(id, exited)
	if st.Reason != runtime.ReasonOOMKilled || st.ExitCode != 137 {
		t.Fatalf("status %+v, want OOMKilled 137", st)
	}
	if text := f.logs(id); !strings.Contains(text, "initial memory, limit is 65536") {
		t.Fatalf("log does not explain: %q", text)
	}
}

func TestStopReportsKilled(t *testing.T) {
	f := newFixture(t)
	id := f.start(runtime.ContainerConfig{Name: "loop", Image: testmodules.Path(t, "loop")})
	f.wait(id, func(st runtime.ContainerStatus) bool { return st.State == runtime.StateRunning })
	start := time.Now()
	if err := f.r.StopContainer(f.ctx, id, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("stopping a busy loop took %v", took)
	}
	st := f.wait(id, exited)
	if st.ExitCode != 137 || st.Reason != runtime.ReasonKilled {
		t.Fatalf("status %+v, want 137 Killed", st)
	}
}

func TestReadOnlyMount(t *testing.T) {
	f := newFixture(t)
	ro, rw := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "present.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := f.start(runtime.ContainerConfig{
		Name: "files", Image: testmodules.Path(t, "files"), Args: []string{"/ro", "/rw"},
		Mounts: []runtime.Mount{{HostPath: ro, ContainerPath: "/ro", ReadOnly: true}, {HostPath: rw, ContainerPath: "/rw"}},
	})
	st := f.wait(id, exited)
	text := f.logs(id)
	if st.ExitCode != 2 {
		t.Fatalf("files exited %d, want 2 (one write refused):\n%s", st.ExitCode, text)
	}
	for _, want := range []string{"list /ro: present.txt", "write /ro/written-by-wasm.txt: error", "write /rw/written-by-wasm.txt: ok"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	if _, err := os.Stat(filepath.Join(ro, "written-by-wasm.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only dir was written: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(rw, "written-by-wasm.txt")); err != nil || string(data) != "hello from wasm\n" {
		t.Fatalf("rw file: %q %v", data, err)
	}
}

func TestStderrAndCommand(t *testing.T) {
	f := newFixture(t)
	id := f.start(runtime.ContainerConfig{Name: "err", Image: testmodules.Path(t, "stderr"), Args: []string{"2"}})
	f.wait(id, exited)
	st, _ := f.r.ContainerStatus(f.ctx, id)
	raw, err := os.ReadFile(st.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" stdout F to stdout\n", " stderr F error line 1\n", " stderr F error line 2\n"} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("log lacks %q:\n%s", want, raw)
		}
	}
	// argv[0] comes from Command when given, else the container name.
	env := f.start(runtime.ContainerConfig{Name: "named", Image: testmodules.Path(t, "env")})
	f.wait(env, exited)
	cmd := f.start(runtime.ContainerConfig{Name: "cmd", Image: testmodules.Path(t, "env"), Command: []string{"prog", "a"}, Args: []string{"b"}})
	f.wait(cmd, exited)
	if text := f.logs(env); !strings.Contains(text, "arg[0]=named\n") {
		t.Errorf("argv[0] without command: %s", text)
	}
	if text := f.logs(cmd); !strings.Contains(text, "arg[0]=prog\narg[1]=a\narg[2]=b\n") {
		t.Errorf("argv with command: %s", text)
	}
}

func TestInvalidModule(t *testing.T) {
	f := newFixture(t)
	bad := filepath.Join(t.TempDir(), "bad.wasm")
	if err := os.WriteFile(bad, []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := f.r.CreateContainer(f.ctx, f.sb, runtime.ContainerConfig{Name: "bad", Image: bad})
	if !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	text := filepath.Join(t.TempDir(), "text.wasm")
	if err := os.WriteFile(text, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = f.r.CreateContainer(f.ctx, f.sb, runtime.ContainerConfig{Name: "text", Image: text})
	if !errors.Is(err, runtime.ErrImage) {
		t.Fatalf("err = %v, want ErrImage", err)
	}
}

func TestMaxContainersAndClose(t *testing.T) {
	r, err := New(context.Background(), Options{MaxContainers: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sb, err := r.RunPodSandbox(ctx, runtime.PodSandboxConfig{Name: "p", LogDirectory: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "s", Image: testmodules.Path(t, "sleep")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "t", Image: testmodules.Path(t, "sleep")}); !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("second container: err = %v, want ErrUnavailable", err)
	}
	if err := r.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := r.ContainerStatus(ctx, id)
	if err != nil || st.State != runtime.StateExited {
		t.Fatalf("after Close: %+v %v", st, err)
	}
}

func TestClassify(t *testing.T) {
	trap := errors.New("module[x] function[_start] failed: wasm error: unreachable\nwasm stack trace: ...")
	for _, tc := range []struct {
		name             string
		err              error
		stopped, refused bool
		code             int32
		reason, message  string
	}{
		{"clean", nil, false, false, 0, runtime.ReasonCompleted, ""},
		{"exit 0", sys.NewExitError(0), false, false, 0, runtime.ReasonCompleted, ""},
		{"exit 3", sys.NewExitError(3), false, false, 3, runtime.ReasonError, ""},
		{"trap", trap, false, false, 1, runtime.ReasonError, "wasm error: unreachable"},
		{"oom trap", trap, false, true, 137, runtime.ReasonOOMKilled, "memory limit reached: wasm error: unreachable"},
		{"oom handled", nil, false, true, 0, runtime.ReasonCompleted, ""},
		{"stopped", sys.NewExitError(sys.ExitCodeContextCanceled), true, false, 137, runtime.ReasonKilled, "stopped"},
		{"exited before stop", sys.NewExitError(4), true, false, 4, runtime.ReasonError, ""},
	} {
		code, reason, msg := classify(tc.err, tc.stopped, tc.refused)
		if code != tc.code || reason != tc.reason || msg != tc.message {
			t.Errorf("%s: got %d %q %q, want %d %q %q", tc.name, code, reason, msg, tc.code, tc.reason, tc.message)
		}
	}
}
