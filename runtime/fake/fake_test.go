package fake

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/runtimetest"
)

func TestConformance(t *testing.T) {
	runtimetest.Run(t, func(t *testing.T) runtime.Runtime { return New("") }, runtimetest.Images{
		ExitCode:     "fake://exit",
		Env:          "fake://env",
		SleepForever: "fake://run",
		BusyLoop:     "fake://run",
		Missing:      "fake://no-such-program",
	})
}

func waitExit(t *testing.T, r *Runtime, id string) runtime.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := r.ContainerStatus(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == runtime.StateExited {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("not exited: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestScripts(t *testing.T) {
	ctx := context.Background()
	r := New("sim")
	defer r.Close(ctx)
	if r.Name() != "sim" {
		t.Fatalf("name %q", r.Name())
	}
	sb, err := r.RunPodSandbox(ctx, runtime.PodSandboxConfig{Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		image  string
		code   int32
		reason string
		minRun time.Duration
	}{
		{"fake://exit/3", 3, runtime.ReasonError, 0},
		{"fake://exit/0", 0, runtime.ReasonCompleted, 0},
		{"fake://sleep/100ms", 0, runtime.ReasonCompleted, 100 * time.Millisecond},
		{"fake://oom", 137, runtime.ReasonOOMKilled, 0},
	} {
		id, err := r.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "c", Image: tc.image})
		if err != nil {
			t.Fatalf("%s: %v", tc.image, err)
		}
		if err := r.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		st := waitExit(t, r, id)
		if st.ExitCode != tc.code || st.Reason != tc.reason || st.FinishedAt.Sub(st.StartedAt) < tc.minRun {
			t.Fatalf("%s: %+v", tc.image, st)
		}
	}
	for _, bad := range []string{"fake://exit/x", "fake://sleep/soon", "fake://run/1", "/x.wasm"} {
		if _, err := r.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "c", Image: bad}); !errors.Is(err, runtime.ErrImage) {
			t.Fatalf("%s: err = %v, want ErrImage", bad, err)
		}
	}
}

func TestExec(t *testing.T) {
	ctx := context.Background()
	r := New("")
	defer r.Close(ctx)
	sb, err := r.RunPodSandbox(ctx, runtime.PodSandboxConfig{Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "c", Image: "fake://run"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Exec(ctx, id, runtime.ExecRequest{Cmd: []string{"true"}}); !errors.Is(err, runtime.ErrState) {
		t.Fatalf("exec in created container: err = %v, want ErrState", err)
	}
	if err := r.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	for _, tc := range []struct {
		cmd  []string
		code int
	}{{[]string{"true"}, 0}, {[]string{"false"}, 1}, {[]string{"exit", "7"}, 7}, {[]string{"echo", "a", "b"}, 0}, {[]string{"nope"}, 127}} {
		code, err := r.Exec(ctx, id, runtime.ExecRequest{Cmd: tc.cmd, Stdout: &out, Stderr: &errOut})
		if err != nil || code != tc.code {
			t.Fatalf("%v: code %d err %v, want %d", tc.cmd, code, err, tc.code)
		}
	}
	if out.String() != "a b\n" || errOut.String() != "nope: command not found\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errOut.String())
	}
	if _, err := r.Exec(ctx, "missing", runtime.ExecRequest{Cmd: []string{"true"}}); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("exec in missing container: %v", err)
	}
}
