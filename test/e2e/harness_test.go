package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeorch/edgeorch/wasm/testmodules"
)

// binDir holds the three binaries, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edge-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	if out, err := buildBinaries(dir); err != nil {
		fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildBinaries(dir string) ([]byte, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator),
		"./cmd/edgectl", "./cmd/edge-controlplane", "./cmd/edge-agent")
	cmd.Dir = root
	return cmd.CombinedOutput()
}

// proc is a daemon started by a test; its output is kept for failure reports.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startProcCmd(t, name, exec.Command(filepath.Join(binDir, name), args...))
}

// startProcCmd starts cmd (a daemon called name) and stops it at cleanup.
func startProcCmd(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	args := cmd.Args[1:]
	p := &proc{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.out
	cmd.Stdout = p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("--- output of %s %v:\n%s", name, args, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits; SIGKILL after 10 s.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not stop within 10s of SIGTERM; killing", p.name)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// controlPlane starts edge-controlplane on listen ("127.0.0.1:0" for a random
// port) and returns it with its client URL, read from its output. It runs in
// dev mode (plaintext NATS): these tests are not about security.
func controlPlane(t *testing.T, dataDir, listen string) (*proc, string) {
	t.Helper()
	p := startProc(t, "edge-controlplane", "--data-dir", dataDir, "--listen", listen, "--dev")
	var url string
	eventually(t, 20*time.Second, func() error {
		sc := bufio.NewScanner(strings.NewReader(p.out.String()))
		for sc.Scan() {
			for _, f := range strings.Fields(sc.Text()) {
				if strings.HasPrefix(f, "nats://") {
					url = f
					return nil
				}
			}
		}
		select {
		case <-p.done:
			t.Fatalf("control plane exited:\n%s", p.out.String())
		default:
		}
		return fmt.Errorf("no nats:// URL printed yet")
	})
	return p, url
}

func agent(t *testing.T, url, node, dataDir, labels string) *proc {
	t.Helper()
	return startProc(t, "edge-agent", "--server", url, "--node-name", node,
		"--data-dir", dataDir, "--labels", labels, "--heartbeat-interval", "1s")
}

// result of one edgectl run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// ctl runs edgectl against url with stdin (may be nil).
func ctl(t *testing.T, url string, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "edgectl"), append([]string{"--server", url}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, stdin
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("edgectl %v: %v", args, err)
	}
	return r
}

// mustCtl runs edgectl and fails the test on a non-zero exit.
func mustCtl(t *testing.T, url string, args ...string) string {
	t.Helper()
	r := ctl(t, url, nil, args...)
	if r.code != 0 {
		t.Fatalf("edgectl %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// eventually polls f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 20 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(wait)
		if wait < 500*time.Millisecond {
			wait *= 2
		}
	}
}

func module(t *testing.T, name string) string { return testmodules.Path(t, name) }
