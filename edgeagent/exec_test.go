package edgeagent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/client"
	"github.com/edgeorch/edgeorch/manifests"
	"github.com/edgeorch/edgeorch/runtime"
	"github.com/edgeorch/edgeorch/runtime/fake"
	"github.com/edgeorch/edgeorch/runtime/wasm"
	"github.com/nats-io/nats.go"
)

// startExecAgent runs an agent with a fake runtime (which can exec) under
// the handler "fake" and the wasm runtime (which cannot).
func startExecAgent(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wrt, err := wasm.New(ctx, wasm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	frt := fake.New("fake")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, nc, Config{
			NodeName: "node-1", DataDir: t.TempDir(), Address: "10.1.2.3",
			Runtimes:     map[string]runtime.Runtime{"fake": frt, "wasm": wrt},
			PollInterval: 20 * time.Millisecond, BackoffBase: 50 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		nc.Close()
		frt.Close(context.Background())
		wrt.Close(context.Background())
	})
}

func handlerPod(name, handler, image string) *manifests.Pod {
	return &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.PodSpec{
			RuntimeClassName: &handler,
			NodeName:         "node-1",
			Containers:       []manifests.Container{{Name: "main", Image: image}},
		},
	}
}

func TestExec(t *testing.T) {
	cp := startControlPlane(t)
	startExecAgent(t, cp.url)
	cp.assign(t, handlerPod("sleeper", "fake", "fake://sleep/1h"))
	eventually(t, 10*time.Second, func() error {
		if p := cp.pod(t, "sleeper"); p.Status.Phase != manifests.PodRunning {
			return fmt.Errorf("pod sleeper is %q", p.Status.Phase)
		}
		return nil
	})
	exec := func(pod, container string, cmd ...string) (int, string, string, error) {
		var out, errb bytes.Buffer
		code, err := cp.cl.Exec(ctxT(t), "node-1", client.ExecRequest{Namespace: "default", Pod: pod, Container: container, Command: cmd},
			client.ExecStreams{Stdout: &out, Stderr: &errb})
		return code, out.String(), errb.String(), err
	}

	code, out, errOut, err := exec("sleeper", "", "echo", "hello", "world")
	if err != nil || code != 0 || out != "hello world\n" || errOut != "" {
		t.Errorf("echo: code %d out %q stderr %q err %v", code, out, errOut, err)
	}
	code, _, _, err = exec("sleeper", "main", "exit", "7")
	if err != nil || code != 7 {
		t.Errorf("exit 7: code %d err %v", code, err)
	}
	code, out, errOut, err = exec("sleeper", "", "nosuch")
	if err != nil || code != 127 || out != "" || !strings.Contains(errOut, "nosuch: command not found") {
		t.Errorf("nosuch: code %d out %q stderr %q err %v", code, out, errOut, err)
	}

	for _, tc := range []struct {
		pod, container string
		cmd            []string
		code, msg      string
	}{
		{"ghost", "", []string{"true"}, client.CodeNotFound, `pod "ghost" not found on node node-1`},
		{"sleeper", "other", []string{"true"}, client.CodeInvalid, "container other is not valid for pod sleeper"},
		{"sleeper", "", nil, client.CodeInvalid, "at least one command"},
	} {
		_, _, _, err := exec(tc.pod, tc.container, tc.cmd...)
		if client.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("exec %s/%s %v: %v, want %s %q", tc.pod, tc.container, tc.cmd, err, tc.code, tc.msg)
		}
	}

	// A wasm pod cannot be exec'd into, whatever its state.
	cp.assign(t, handlerPod("module", "wasm", "missing:v1"))
	eventually(t, 10*time.Second, func() error {
		_, _, _, err := exec("module", "", "true")
		if err == nil || !strings.Contains(err.Error(), "exec is not supported for wasm containers") {
			return fmt.Errorf("exec in a wasm pod: %v", err)
		}
		return nil
	})
}
